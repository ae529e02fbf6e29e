//! Memory of one process that has embedded: loads the model, embeds every file of DIR,
//! waits 3 s (so several copies started together overlap) and prints its smaps_rollup, with the
//! first value of the first descriptor to tell whether a session setting changed the vectors.
//!
//! cargo run --release --example embed_memory -- MANIFEST.json LIBONNXRUNTIME.so DIR
use std::path::Path;
use std::time::Instant;

use imgsim_embed::{Embedder, Manifest};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [manifest, lib, dir] = args.as_slice() else {
        eprintln!("usage: embed_memory MANIFEST.json LIBONNXRUNTIME.so DIR");
        std::process::exit(2);
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let manifest = Manifest::load(manifest).unwrap_or_else(|e| panic!("{e}"));
    let embedder = Embedder::new(&manifest, Path::new(lib), 1, manifest.descriptor.dims)
        .unwrap_or_else(|e| panic!("{e}"));
    let blobs: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("file"))
        .collect();
    let start = Instant::now();
    let mut first = 0.0;
    for (i, b) in blobs.iter().enumerate() {
        let d = embedder.embed(b).unwrap_or_else(|e| panic!("{e}"));
        if i == 0 {
            first = d[0];
        }
    }
    let rate = blobs.len() as f64 / start.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").expect("smaps_rollup");
    let kb = |k: &str| -> u64 {
        rollup
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    println!(
        "{rate:.1} img/s  rss {} kB pss {} kB private {} kB, first descriptor value {first:.6}",
        kb("Rss:"),
        kb("Pss:"),
        kb("Private_Clean:") + kb("Private_Dirty:")
    );
}
