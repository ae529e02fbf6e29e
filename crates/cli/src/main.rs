//! `imgsim`: load a photo collection into PostgreSQL and search it by example image.
//!
//! The heavy lifting happens in the `imgsim` extension; this client only moves bytes.
//!
//! # Why the client sends bytes and the server computes the embedding
//!
//! `load` runs, per file,
//!
//! ```sql
//! INSERT INTO t (path, image, emb) VALUES ($1, $2, image_embedding($2))
//! ON CONFLICT (path) DO NOTHING
//! ```
//!
//! with the file's bytes bound as a `bytea` parameter. The alternatives were worse:
//!
//! * Server-side file access (`pg_read_binary_file`, `COPY FROM` a server path) needs
//!   superuser or `pg_read_server_files`, and the files to be on the database host.
//!   Sending the bytes over the ordinary protocol works against any remote server,
//!   as any role that may insert into the table.
//! * Computing the embedding in the client would duplicate the model and its
//!   preprocessing outside the database, and a client-side model that drifts from
//!   the server's (other weights, other resize) silently poisons the index.
//!   `image_embedding` is the one definition of what an image's vector is; queries
//!   (`search`) go through the very same function.
//!
//! The image is stored as well (`image bytea`) so that results can be shown
//! (`search --html`, `serve`) without access to the loader's file system.
//!
//! # Resuming
//!
//! `load --jobs N` loads over N connections (N backends embed in parallel), each
//! taking the next file from one shared queue. Rows are committed in small
//! batches per connection, each image inside its own savepoint so a
//! refused image rolls back alone. A load that is interrupted (Ctrl-C, kill, lost
//! connection) loses at most its open batches, which the server rolls back; the
//! paths already in the table are read at start and skipped, so re-running the
//! same command loads only the rest. `ON CONFLICT (path) DO NOTHING` keeps two
//! concurrent loaders from duplicating rows. Paths are stored absolute
//! (canonicalised) so a re-run from another working directory still matches.

mod args;
mod db;
mod html;
mod load;
mod nearest;
mod progress;
mod search;
mod serve;
mod thumbnail;

use std::io::Write;
use std::process::ExitCode;

use args::{Cli, Command};
use clap::{CommandFactory, Parser};

/// Errors that end the run: connection failures, unreadable query file, I/O on the
/// output. Refused images during `load` are not errors, they are reported and counted.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    // Usage errors and --help exit here (status 2 and 0), worded by clap.
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Load(options) => load::run(options),
        Command::Search(options) => search::run(options),
        Command::Serve(options) => serve::run(options),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "imgsim", &mut script);
            std::io::stdout().write_all(&script).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("imgsim: {error}");
            ExitCode::FAILURE
        }
    }
}
