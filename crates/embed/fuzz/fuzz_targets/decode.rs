//! Decoding arbitrary bytes must return Ok or an error, never panic, hang or exceed the
//! memory limits.
//!
//! RUSTC_BOOTSTRAP=1 cargo fuzz run decode corpus/decode seeds -- -rss_limit_mb=2048 -max_len=65536
//! (seeds/: tiny images of every format and colour type, written with Pillow, and copies of
//! the progressive JPEGs in ../tests/data)
#![no_main]

use imgsim_embed::{decode, decode_for_size, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Lower limits than production keep each run fast; the code paths are the same.
    let limits = DecodeLimits {
        max_side: 4096,
        max_pixels: 4096 * 4096,
        max_alloc: 64 << 20,
    };
    if let Ok(image) = decode(data, &limits, [255, 255, 255]) {
        let (w, h) = image.pixels.dimensions();
        assert!(w > 0 && h > 0 && w <= 4096 && h <= 4096);
    }
    // Also the reader of progressive JPEGs' DC scans (1/8 scale), for images as small as 8x8.
    if let Ok(image) = decode_for_size(data, &limits, [255, 255, 255], 1) {
        let ((w, h), scale) = (image.size, image.downscale);
        assert_eq!(image.pixels.dimensions(), (w.div_ceil(scale), h.div_ceil(scale)));
    }
});
