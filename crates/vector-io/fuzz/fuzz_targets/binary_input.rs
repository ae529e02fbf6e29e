//! The vector2048 binary receive function on arbitrary bytes (see properties.rs).
//!
//! cargo +nightly fuzz run binary_input corpus/binary_input seeds/binary -- -max_len=8192
#![no_main]

mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::binary_input(data));
