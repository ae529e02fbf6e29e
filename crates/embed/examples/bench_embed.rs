//! Throughput of the embedding pipeline over image files, one ONNX Runtime thread by default.
//!
//! cargo run --release --example bench_embed -- MANIFEST.json LIBONNXRUNTIME.so DIR_OR_FILE... [--threads N]
//!
//! Files are read into memory first. Prints images/s and the decode / resize / inference split
//! (median of 3 passes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use imgsim_embed::{Embedder, Manifest, Timings};

const RUNS: usize = 3;
const EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp"];

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("readable directory") {
            collect(&entry.expect("directory entry").path(), files);
        }
    } else if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
    {
        files.push(path.to_path_buf());
    }
}

fn ms_per_image(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1000.0 / n as f64
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut threads = 1;
    if let Some(i) = args.iter().position(|a| a == "--threads") {
        threads = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .expect("--threads N");
        args.drain(i..i + 2);
    }
    let [manifest, lib, paths @ ..] = args.as_slice() else {
        eprintln!(
            "usage: bench_embed MANIFEST.json LIBONNXRUNTIME.so DIR_OR_FILE... [--threads N]"
        );
        std::process::exit(2);
    };
    let mut files = Vec::new();
    paths.iter().for_each(|p| collect(Path::new(p), &mut files));
    files.sort();
    let blobs: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("readable file"))
        .collect();
    let n = blobs.len();
    assert!(n > 0, "no images found");

    let manifest = Manifest::load(manifest).unwrap_or_else(|e| panic!("{e}"));
    let embedder = Embedder::new(&manifest, Path::new(lib), threads, manifest.descriptor.dims)
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = embedder.embed(&blobs[0]); // warm-up

    let mut passes: Vec<Timings> = (0..RUNS)
        .map(|_| {
            let mut sum = Timings::default();
            for blob in &blobs {
                match embedder.embed_timed(blob) {
                    Ok((_, t)) => {
                        sum.decode += t.decode;
                        sum.resize += t.resize;
                        sum.inference += t.inference;
                    }
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            sum
        })
        .collect();
    passes.sort_by_key(|t| t.decode + t.resize + t.inference);
    let median = passes[RUNS / 2];
    let total = median.decode + median.resize + median.inference;
    println!("images: {n}  threads: {threads}  runs: {RUNS} (median shown)");
    println!(
        "{:.1} images/s ({:.2} ms/image)",
        n as f64 / total.as_secs_f64(),
        ms_per_image(total, n)
    );
    for (stage, d) in [
        ("decode", median.decode),
        ("resize", median.resize),
        ("inference", median.inference),
    ] {
        println!(
            "  {stage:<10} {:8.2} ms/image {:5.1} %",
            ms_per_image(d, n),
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
}
