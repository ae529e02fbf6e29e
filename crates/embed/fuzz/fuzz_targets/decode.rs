//! Decoding arbitrary bytes must return Ok or an error, never panic, hang or exceed the
//! memory limits (see properties.rs).
//!
//! RUSTC_BOOTSTRAP=1 cargo fuzz run decode corpus/decode seeds -- -rss_limit_mb=2048 -max_len=65536
//! (seeds/: tiny images of every format and colour type, written with Pillow, and copies of
//! the progressive JPEGs in ../tests/data; corpus/decode: what the fuzzer found, replayed by
//! ../tests/decode_corpus.rs)
#![no_main]

mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::decode_input(data));
