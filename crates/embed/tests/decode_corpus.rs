//! Replays the decode fuzzer's seeds and the corpus it found (fuzz/seeds,
//! fuzz/corpus/decode) through the property the fuzz target checks, so CI
//! keeps them as regression inputs without a fuzzer.

#[path = "../fuzz/fuzz_targets/properties.rs"]
mod properties;

use std::path::Path;

#[test]
fn decode_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [fuzz.join("seeds"), fuzz.join("corpus/decode")] {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| properties::decode_input(&data)).is_err() {
                panic!("{} fails", path.display());
            }
            count += 1;
        }
    }
    println!("{count} inputs replayed");
    assert!(count > 100, "only {count} inputs: the corpus is missing");
}
