//! Command-line interface, declared with clap: help text, errors (exit status 2)
//! and shell completions come from the declarations below.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::db::TableName;

#[derive(Parser)]
#[command(
    name = "imgsim",
    version,
    about = "Load a photo collection into PostgreSQL and search it by example image",
    long_about = "Load a photo collection into PostgreSQL and search it by example image.\n\n\
        The database needs the imgsim extension (CREATE EXTENSION imgsim): the server \
        computes every embedding with image_embedding(), this client only sends bytes."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Insert every image file under the given directories that is not in TABLE yet.
    ///
    /// Walks the directories recursively in sorted order (jpg jpeg png webp gif bmp
    /// tif tiff), creates TABLE if needed and sends each file's bytes; the server
    /// computes the embedding. Rows are committed every 32 files or 2 seconds per
    /// connection, so re-running the same command resumes an interrupted load.
    Load(LoadArgs),
    /// Print the k stored images nearest to a query image.
    Search(SearchArgs),
    /// Serve a web page to search by picture (upload, drop or paste an image).
    Serve(ServeArgs),
    /// Print a shell completion script, e.g. `imgsim completions bash > /etc/bash_completion.d/imgsim`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
pub struct Connection {
    /// libpq-style connection string ("host=/tmp port=5432 user=postgres dbname=photos")
    /// or URL (postgresql://user@host:port/dbname)
    #[arg(long, value_name = "DSN", env = "IMGSIM_DB")]
    pub db: String,
}

#[derive(Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Table to load into, optionally schema-qualified (schema.table)
    #[arg(long, value_name = "TABLE")]
    pub table: TableName,
    /// Connections to load over [default: the server's CPU count, at most 8]
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<NonZeroUsize>,
    /// Directories (or single files) to load
    #[arg(required = true, value_name = "DIR")]
    pub roots: Vec<PathBuf>,
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Table to search, optionally schema-qualified (schema.table)
    #[arg(long, value_name = "TABLE")]
    pub table: TableName,
    /// The query image (any format image_embedding reads)
    #[arg(long, value_name = "FILE")]
    pub query: PathBuf,
    /// Number of matches
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..))]
    pub k: i64,
    /// Also write a self-contained HTML page with the query and the matches as thumbnails
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Table the page searches first; the page offers every table with
    /// id, path, image and emb columns as `load` creates them
    #[arg(long, value_name = "TABLE", default_value = "photos")]
    pub table: TableName,
    /// Address to listen on (use 0.0.0.0:PORT to accept other machines)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Database connections in the pool (concurrent searches)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,
    /// Largest upload accepted, in megabytes (larger ones get 413)
    #[arg(long, value_name = "MB", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_upload_mb: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn declarations_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn k_must_be_positive() {
        let parse = |k: &str| {
            Cli::try_parse_from([
                "imgsim", "search", "--db", "x", "--table", "t", "--query", "q", "-k", k,
            ])
        };
        assert!(parse("0").is_err());
        assert!(parse("-3").is_err());
        match parse("7").map(|cli| cli.command) {
            Ok(Command::Search(search)) => assert_eq!(search.k, 7),
            _ => panic!("-k 7 should parse"),
        }
    }

    #[test]
    fn load_needs_a_directory_and_a_positive_job_count() {
        let base = ["imgsim", "load", "--db", "x", "--table", "t"];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["--jobs", "0", "dir"])).is_err());
        match Cli::try_parse_from(base.iter().chain(&["-j", "2", "a", "b"])).map(|cli| cli.command)
        {
            Ok(Command::Load(load)) => {
                assert_eq!(load.jobs.map(NonZeroUsize::get), Some(2));
                assert_eq!(load.roots, [PathBuf::from("a"), PathBuf::from("b")]);
            }
            _ => panic!("load -j 2 a b should parse"),
        }
    }
}
