//! What must hold for any input bytes, shared by the fuzz target and by
//! `../tests/decode_corpus.rs`, which replays the corpus the fuzzer found.

use imgsim_embed::{decode, decode_for_size, DecodeLimits};

/// Decoding returns Ok or an error, never panics, and an image it returns
/// fits the limits.
pub fn decode_input(data: &[u8]) {
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
        assert_eq!(
            image.pixels.dimensions(),
            (w.div_ceil(scale), h.div_ceil(scale))
        );
    }
}
