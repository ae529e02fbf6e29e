//! Command-line parsing: two subcommands, a handful of `--name value` options.

use std::collections::HashMap;
use std::path::PathBuf;

pub const USAGE: &str = "\
usage:
  imgsim load   --db DSN --table TABLE DIR...
  imgsim search --db DSN --table TABLE --query FILE [-k N] [--html OUT.html]

  DSN is a libpq-style connection string, e.g.
      \"host=/tmp port=55499 user=postgres dbname=photos\"
  or a URL: postgresql://user@host:port/dbname
  TABLE may be schema-qualified (schema.table).

load    walks the directories recursively and inserts every image file
        (jpg jpeg png webp gif bmp tif tiff) that is not in TABLE yet;
        the server computes the embedding. Re-running resumes.
search  prints the k (default 10) stored images nearest to FILE; with --html
        also writes a self-contained page with thumbnails.
";

pub struct LoadOptions {
    pub dsn: String,
    pub table: String,
    pub roots: Vec<PathBuf>,
}

pub struct SearchOptions {
    pub dsn: String,
    pub table: String,
    pub query: PathBuf,
    pub k: i64,
    pub html: Option<PathBuf>,
}

pub enum Command {
    Help,
    Load(LoadOptions),
    Search(SearchOptions),
}

pub fn parse(argv: &[String]) -> Result<Command, String> {
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    let Some((subcommand, rest)) = argv.split_first() else {
        return Err("missing subcommand".into());
    };
    match subcommand.as_str() {
        "load" => {
            let mut parsed = Parsed::new(rest, &["--db", "--table"])?;
            let roots: Vec<PathBuf> = parsed.positional.drain(..).map(PathBuf::from).collect();
            if roots.is_empty() {
                return Err("load: no directory given".into());
            }
            Ok(Command::Load(LoadOptions {
                dsn: parsed.required("--db")?,
                table: parsed.required("--table")?,
                roots,
            }))
        }
        "search" => {
            let mut parsed = Parsed::new(rest, &["--db", "--table", "--query", "-k", "--html"])?;
            if let Some(extra) = parsed.positional.first() {
                return Err(format!("search: unexpected argument {extra:?}"));
            }
            let k = match parsed.options.remove("-k") {
                None => 10,
                Some(text) => match text.parse::<i64>() {
                    Ok(k) if k >= 1 => k,
                    _ => return Err(format!("-k: expected a positive integer, got {text:?}")),
                },
            };
            Ok(Command::Search(SearchOptions {
                dsn: parsed.required("--db")?,
                table: parsed.required("--table")?,
                query: parsed.required("--query")?.into(),
                k,
                html: parsed.options.remove("--html").map(PathBuf::from),
            }))
        }
        other => Err(format!("unknown subcommand {other:?}")),
    }
}

/// Options (every one takes a value, as `--name value` or `--name=value`) and
/// positional arguments; `--` ends the options.
struct Parsed {
    options: HashMap<&'static str, String>,
    positional: Vec<String>,
}

impl Parsed {
    fn new(args: &[String], known: &[&'static str]) -> Result<Self, String> {
        let mut parsed = Parsed {
            options: HashMap::new(),
            positional: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--" {
                parsed.positional.extend(args.cloned());
                break;
            }
            if !arg.starts_with('-') || arg == "-" {
                parsed.positional.push(arg.clone());
                continue;
            }
            let (name, inline_value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            let Some(&name) = known.iter().find(|&&k| k == name) else {
                return Err(format!("unknown option {name}"));
            };
            let value = match inline_value {
                Some(value) => value,
                None => args
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            if parsed.options.insert(name, value).is_some() {
                return Err(format!("{name} given twice"));
            }
        }
        Ok(parsed)
    }

    fn required(&mut self, name: &str) -> Result<String, String> {
        self.options
            .remove(name)
            .ok_or_else(|| format!("missing {name}"))
    }
}
