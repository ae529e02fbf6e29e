//! Connection, identifier quoting and error wording shared by the subcommands.

use postgres::error::SqlState;
use postgres::{Client, NoTls};

pub fn connect(dsn: &str) -> Result<Client, crate::Error> {
    Client::connect(dsn, NoTls)
        .map_err(|e| format!("cannot connect to {dsn:?}: {}", describe(&e)).into())
}

/// A table name as the user typed it, `name` or `schema.name`, checked and
/// quoted as an SQL identifier (so `My Photos` or `a"b` name exactly that table).
#[derive(Clone, Debug, PartialEq)]
pub struct TableName {
    quoted: String,
}

impl TableName {
    /// The name as it goes into SQL text: every part in double quotes.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }
}

impl std::str::FromStr for TableName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() > 2 {
            return Err(format!("{text:?}: expected TABLE or SCHEMA.TABLE"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(format!("{text:?}: empty name"));
            }
            // PostgreSQL truncates longer names silently, which would name another table.
            if part.len() > 63 {
                return Err(format!("{text:?}: a name has at most 63 bytes"));
            }
            if part.contains('\0') {
                return Err(format!("{text:?}: a name cannot contain a NUL byte"));
            }
        }
        let quoted = parts
            .iter()
            .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(".");
        Ok(TableName { quoted })
    }
}

/// The server's message and SQLSTATE for errors the server raised, the client
/// library's wording for the rest (I/O, protocol).
pub fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    // The library's own wording ("error connecting to server") omits the cause.
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::TableName;

    fn quoted(text: &str) -> Result<String, String> {
        text.parse::<TableName>().map(|t| t.quoted().to_string())
    }

    #[test]
    fn table_names_are_quoted_as_identifiers() {
        assert_eq!(quoted("photos").unwrap(), "\"photos\"");
        assert_eq!(quoted("Art.My Photos").unwrap(), "\"Art\".\"My Photos\"");
        assert_eq!(
            quoted("x\"; DROP TABLE y; --").unwrap(),
            "\"x\"\"; DROP TABLE y; --\""
        );
    }

    #[test]
    fn malformed_table_names_are_refused() {
        for bad in ["", ".t", "s.", "a.b.c", "t\0", &"n".repeat(64)] {
            assert!(quoted(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(quoted(&"n".repeat(63)).is_ok());
    }
}
