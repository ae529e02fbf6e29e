//! `imgsim load`: walk directories, insert every image not yet in the table.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postgres::{Statement, Transaction};

use crate::args::LoadOptions;
use crate::db;

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// A batch is committed after this many rows or this much time, whichever comes
/// first: an interruption then costs at most a few seconds of embedding work.
const BATCH_ROWS: usize = 32;
const BATCH_MAX_AGE: Duration = Duration::from_secs(2);

const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

pub fn run(options: &LoadOptions) -> Result<(), crate::Error> {
    let files = find_images(&options.roots)?;
    let mut client = db::connect(&options.dsn)?;
    let table = db::quote_table(&options.table);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 id bigserial PRIMARY KEY,
                 path text UNIQUE NOT NULL,
                 image bytea NOT NULL,
                 emb vector2048 NOT NULL)"
        ))
        .map_err(|e| format!("cannot create table {table}: {}", db::describe(&e)))?;
    let stored_paths: HashSet<String> = client
        .query(&format!("SELECT path FROM {table}"), &[])
        .map_err(|e| {
            format!(
                "cannot read loaded paths from {table}: {}",
                db::describe(&e)
            )
        })?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let insert = client
        .prepare(&format!(
            "INSERT INTO {table} (path, image, emb) VALUES ($1, $2, image_embedding($2))
             ON CONFLICT (path) DO NOTHING"
        ))
        .map_err(|e| format!("cannot prepare insert into {table}: {}", db::describe(&e)))?;

    let (already_loaded, pending): (Vec<ImageFile>, Vec<ImageFile>) = files
        .into_iter()
        .partition(|file| stored_paths.contains(&file.key));
    eprintln!(
        "{} image files found, {} already loaded, {} to load",
        already_loaded.len() + pending.len(),
        already_loaded.len(),
        pending.len()
    );

    let mut counts = Counts {
        already_loaded: already_loaded.len(),
        ..Counts::default()
    };
    let mut progress = Progress::new(already_loaded.len() + pending.len(), already_loaded.len());
    let mut pending = pending.into_iter().peekable();
    while pending.peek().is_some() {
        let mut batch = client.transaction().map_err(|e| db::describe(&e))?;
        let batch_started = Instant::now();
        for (rows_in_batch, file) in (1..).zip(pending.by_ref()) {
            let outcome = load_image(&mut batch, &insert, &file)
                .map_err(|e| format!("{}: {}", file.key, db::describe(&e)))?;
            match outcome {
                Outcome::Loaded => counts.loaded += 1,
                Outcome::LoadedByOther => counts.already_loaded += 1,
                Outcome::Failed(reason) => {
                    eprintln!("failed: {}: {reason}", file.key);
                    counts.failed += 1;
                }
            }
            progress.advance();
            if rows_in_batch >= BATCH_ROWS || batch_started.elapsed() >= BATCH_MAX_AGE {
                break;
            }
        }
        batch
            .commit()
            .map_err(|e| format!("cannot commit: {}", db::describe(&e)))?;
    }
    progress.finish();
    eprintln!(
        "done: {} loaded, {} already loaded, {} failed",
        counts.loaded, counts.already_loaded, counts.failed
    );
    Ok(())
}

/// Inserts one file inside its own savepoint. `Err` only for failures that end the
/// load (connection lost, permission denied); a refused image is an `Outcome`.
fn load_image(
    batch: &mut Transaction,
    insert: &Statement,
    file: &ImageFile,
) -> Result<Outcome, postgres::Error> {
    let bytes = match fs::read(&file.path) {
        Ok(bytes) => bytes,
        Err(e) => return Ok(Outcome::Failed(format!("cannot read: {e}"))),
    };
    let mut savepoint = batch.transaction()?;
    match savepoint.execute(insert, &[&file.key, &bytes]) {
        Ok(inserted) => {
            savepoint.commit()?;
            Ok(if inserted == 1 {
                Outcome::Loaded
            } else {
                Outcome::LoadedByOther
            })
        }
        Err(e) if db::is_refused_image(&e) => {
            savepoint.rollback()?;
            Ok(Outcome::Failed(db::describe(&e)))
        }
        Err(e) => Err(e),
    }
}

struct ImageFile {
    path: PathBuf,
    /// The absolute path as text: the row's `path`, the key resuming matches on.
    key: String,
}

enum Outcome {
    Loaded,
    /// `ON CONFLICT DO NOTHING` fired: a concurrent loader stored this path first.
    LoadedByOther,
    Failed(String),
}

#[derive(Default)]
struct Counts {
    loaded: usize,
    already_loaded: usize,
    failed: usize,
}

/// Image files under `roots` (a root may also be a single file), in a stable
/// order: roots as given, each walked depth-first with entries sorted by name.
fn find_images(roots: &[PathBuf]) -> Result<Vec<ImageFile>, crate::Error> {
    let mut found = Vec::new();
    for root in roots {
        let root = fs::canonicalize(root).map_err(|e| format!("{}: {e}", root.display()))?;
        if root.is_dir() {
            walk(&root, &mut found);
        } else {
            found.push(root);
        }
    }
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for path in found {
        match path.to_str() {
            Some(key) if seen.insert(key.to_string()) => files.push(ImageFile {
                key: key.to_string(),
                path,
            }),
            Some(_) => {} // named twice, e.g. a directory and its parent
            None => eprintln!("skipped: {}: path is not valid UTF-8", path.display()),
        }
    }
    Ok(files)
}

/// Appends the image files below `dir`. Symlinked files are followed, symlinked
/// directories are not (they could loop). Unreadable directories are reported
/// and skipped: one bad subtree should not stop a large load.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("skipped: {}: {e}", dir.display());
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            walk(&path, found);
        } else if has_image_extension(&path) && path.is_file() {
            found.push(path);
        }
    }
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|known| ext.eq_ignore_ascii_case(known))
        })
}

/// Progress over all files found: a file counts as done once loaded, found
/// already loaded or failed. The rate and ETA count this run's work only.
struct Progress {
    total: usize,
    done: usize,
    done_at_start: usize,
    started: Instant,
    last_report: Option<(Instant, usize)>,
}

impl Progress {
    fn new(total: usize, done_at_start: usize) -> Self {
        Progress {
            total,
            done: done_at_start,
            done_at_start,
            started: Instant::now(),
            last_report: None,
        }
    }

    fn advance(&mut self) {
        self.done += 1;
        if self
            .last_report
            .is_none_or(|(at, _)| at.elapsed() >= PROGRESS_INTERVAL)
        {
            self.report();
        }
    }

    /// Reports the final state unless the last line already did.
    fn finish(&mut self) {
        if self.done > self.done_at_start
            && self.last_report.is_none_or(|(_, done)| done != self.done)
        {
            self.report();
        }
    }

    fn report(&mut self) {
        let processed = (self.done - self.done_at_start) as f64;
        let rate = processed / self.started.elapsed().as_secs_f64().max(1e-3);
        let remaining = (self.total - self.done) as f64;
        eprintln!(
            "loaded {}/{} ({:.1}%), {:.1} images/s, ETA {}",
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total as f64,
            rate,
            format_duration(remaining / rate)
        );
        self.last_report = Some((Instant::now(), self.done));
    }
}

/// `45s`, `1m43s`, `2h05m`.
fn format_duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}
