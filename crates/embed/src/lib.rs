//! Image embeddings for imgsim: decode an image (JPEG, PNG, WebP, GIF, BMP, TIFF), pre-process
//! it as the model's manifest says, run the CNN with ONNX Runtime (loaded at run time from a
//! `libonnxruntime.so`) and build a unit-length descriptor from the manifest's outputs.
//!
//! No pgrx here: the PostgreSQL glue maps [`EmbedError`] to SQLSTATEs.
#![deny(unsafe_op_in_unsafe_fn)]
#![forbid(unsafe_code)]

mod cache;
mod decode;
mod embedder;
mod error;
mod jpeg_dc;
pub mod manifest;
mod preprocess;
mod regions;

pub use cache::RecentInputs;
pub use decode::{
    decode, decode_for_size, DecodeLimits, DecodedImage, MAX_ALLOC, MAX_PIXELS, MAX_SIDE,
};
pub use embedder::{Embedder, Timings};
pub use error::EmbedError;
pub use manifest::Manifest;
pub use regions::{region_boxes, RegionBox, REGION_COUNT};
