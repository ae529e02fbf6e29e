//! The vector2048 text input function on arbitrary bytes (see properties.rs).
//!
//! cargo +nightly fuzz run text_input corpus/text_input seeds/text -- -max_len=65536
#![no_main]

mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::text_input(data));
