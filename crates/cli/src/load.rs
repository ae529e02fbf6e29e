//! `imgsim load`: walk directories, insert every image not yet in the table.

use std::collections::HashSet;
use std::fs;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postgres::{Client, Statement, Transaction};

use crate::args::LoadArgs;
use crate::db;
use crate::progress::Progress;

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// A batch is committed after this many rows or this much time, whichever comes
/// first: an interruption then costs at most a few seconds of embedding work
/// per connection.
const BATCH_ROWS: usize = 32;
const BATCH_MAX_AGE: Duration = Duration::from_secs(2);

/// The default job count follows the server's CPUs (each job is a backend
/// running the model on one core), but no more than this many connections.
const MAX_DEFAULT_JOBS: usize = 8;

pub fn run(options: &LoadArgs) -> Result<(), crate::Error> {
    let dsn = &options.connection.db;
    let files = find_images(&options.roots)?;
    let mut client = db::connect(dsn)?;
    let table = options.table.quoted();
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

    let (already_loaded, pending): (Vec<ImageFile>, Vec<ImageFile>) = files
        .into_iter()
        .partition(|file| stored_paths.contains(&file.key));
    let jobs = match options.jobs {
        Some(jobs) => jobs.get(),
        None => server_cpus(&mut client).min(MAX_DEFAULT_JOBS),
    }
    .clamp(1, pending.len().max(1));
    let total = already_loaded.len() + pending.len();
    eprintln!(
        "{total} image files found, {} already loaded, {} to load over {jobs} connection{}",
        already_loaded.len(),
        pending.len(),
        if jobs == 1 { "" } else { "s" }
    );

    let mut clients = vec![client];
    for _ in 1..jobs {
        clients.push(db::connect(dsn)?);
    }
    let shared = Shared {
        queue: Mutex::new(pending.into_iter()),
        stop: AtomicBool::new(false),
        loaded: AtomicUsize::new(0),
        loaded_by_other: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        progress: Progress::new(total, already_loaded.len()),
    };
    let errors: Vec<crate::Error> = std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .into_iter()
            .map(|client| scope.spawn(|| load_worker(client, table, &shared)))
            .collect();
        workers
            .into_iter()
            .filter_map(|worker| worker.join().expect("a loader thread panicked").err())
            .collect()
    });
    shared.progress.finish();
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    eprintln!(
        "done: {} loaded, {} already loaded, {} failed",
        shared.loaded.into_inner(),
        already_loaded.len() + shared.loaded_by_other.into_inner(),
        shared.failed.into_inner()
    );
    Ok(())
}

/// What the loader's threads share: the files still to load, and the counts.
struct Shared {
    queue: Mutex<std::vec::IntoIter<ImageFile>>,
    /// Set by the first thread that fails for good, so the others stop too.
    stop: AtomicBool,
    loaded: AtomicUsize,
    loaded_by_other: AtomicUsize,
    failed: AtomicUsize,
    progress: Progress,
}

impl Shared {
    fn next_file(&self) -> Option<ImageFile> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.queue.lock().unwrap().next()
    }
}

/// One connection's share of the load: takes files off the queue until it is
/// empty, committing a batch every `BATCH_ROWS` rows or `BATCH_MAX_AGE`.
fn load_worker(mut client: Client, table: &str, shared: &Shared) -> Result<(), crate::Error> {
    let result = (|| {
        let insert = client
            .prepare(&format!(
                "INSERT INTO {table} (path, image, emb) VALUES ($1, $2, image_embedding($2))
                 ON CONFLICT (path) DO NOTHING"
            ))
            .map_err(|e| format!("cannot prepare insert into {table}: {}", db::describe(&e)))?;
        let mut queue_empty = false;
        while !queue_empty {
            let mut batch = client.transaction().map_err(|e| db::describe(&e))?;
            let batch_started = Instant::now();
            let mut rows_in_batch = 0;
            loop {
                let Some(file) = shared.next_file() else {
                    queue_empty = true;
                    break;
                };
                let outcome = load_image(&mut batch, &insert, &file)
                    .map_err(|e| format!("{}: {}", file.key, db::describe(&e)))?;
                match outcome {
                    Outcome::Loaded => shared.loaded.fetch_add(1, Ordering::Relaxed),
                    Outcome::LoadedByOther => {
                        shared.loaded_by_other.fetch_add(1, Ordering::Relaxed)
                    }
                    Outcome::Failed(reason) => {
                        shared
                            .progress
                            .println(&format!("failed: {}: {reason}", file.key));
                        shared.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                shared.progress.advance();
                rows_in_batch += 1;
                if rows_in_batch >= BATCH_ROWS || batch_started.elapsed() >= BATCH_MAX_AGE {
                    break;
                }
            }
            batch
                .commit()
                .map_err(|e| format!("cannot commit: {}", db::describe(&e)))?;
        }
        Ok(())
    })();
    if result.is_err() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    result
}

/// The server's CPU count, read from the server's `/sys` when this role may
/// (superuser or pg_read_server_files); otherwise this machine's, which is the
/// server's when both run on one host.
fn server_cpus(client: &mut Client) -> usize {
    let local = || std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    // A failed statement outside a transaction leaves the session usable.
    match client.query_one("SELECT pg_read_file('/sys/devices/system/cpu/online')", &[]) {
        Ok(row) => count_cpu_list(row.get(0)).unwrap_or_else(local),
        Err(_) => local(),
    }
}

/// Counts the CPUs in a kernel CPU list such as `0-1` or `0,2-5,8`.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut count = 0;
    for range in list.trim().split(',') {
        count += match range.split_once('-') {
            Some((first, last)) => {
                last.parse::<usize>()
                    .ok()?
                    .checked_sub(first.parse().ok()?)?
                    + 1
            }
            None => {
                range.parse::<usize>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
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

#[cfg(test)]
mod tests {
    use super::count_cpu_list;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0,2-5,8"), Some(6));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }
}
