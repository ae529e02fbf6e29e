//! Connection, identifier quoting and error wording shared by the subcommands.

use postgres::error::SqlState;
use postgres::{Client, NoTls};

pub fn connect(dsn: &str) -> Result<Client, crate::Error> {
    Client::connect(dsn, NoTls)
        .map_err(|e| format!("cannot connect to {dsn:?}: {}", describe(&e)).into())
}

/// `name` or `schema.name`, each part quoted as an SQL identifier.
pub fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The server's message and SQLSTATE for errors the server raised, the client
/// library's wording for the rest (I/O, protocol).
pub fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            // The library's own wording ("error connecting to server") omits the cause.
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                text = format!("{text}: {inner}");
                cause = inner.source();
            }
            text
        }
    }
}

/// Whether the server refused this one image (the load goes on) rather than
/// failing in a way every following image would fail too (the load stops).
/// `image_embedding` raises 22xxx for corrupt/empty input, 0A000 for unsupported
/// formats and 54000 for oversized images; running out of memory, a statement
/// timeout or an internal error (a decoder bug) are also specific to the image.
pub fn is_refused_image(error: &postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        return false;
    };
    let code = db.code();
    matches!(&code.code()[..2], "22" | "0A" | "54")
        || [
            SqlState::OUT_OF_MEMORY,
            SqlState::QUERY_CANCELED,
            SqlState::INTERNAL_ERROR,
        ]
        .contains(code)
}
