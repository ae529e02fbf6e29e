//! Replays the fuzzers' seeds and the corpora they found (fuzz/seeds,
//! fuzz/corpus) through the properties the fuzz targets check, so CI keeps
//! them as regression inputs without a fuzzer.

#[path = "../fuzz/fuzz_targets/properties.rs"]
mod properties;

use std::path::Path;

/// Runs `check` on every file of the given folders; returns how many.
fn replay(target: &str, seeds: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [
        fuzz.join("seeds").join(seeds),
        fuzz.join("corpus").join(target),
    ] {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("{target}: {} fails", path.display());
            }
            count += 1;
        }
    }
    count
}

#[test]
fn text_input_corpus() {
    let n = replay("text_input", "text", properties::text_input);
    println!("{n} text inputs replayed");
    assert!(n > 100, "only {n} inputs: the corpus is missing");
}

#[test]
fn binary_input_corpus() {
    let n = replay("binary_input", "binary", properties::binary_input);
    println!("{n} binary inputs replayed");
    assert!(n > 10, "only {n} inputs: the corpus is missing");
}
