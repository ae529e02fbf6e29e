//! Test data lookup and image helpers shared by the integration tests.
//!
//! Data comes from `tests/fetch_test_data.sh` (PyPI wheels), found through:
//! - `IMGSIM_TEST_DATA`: folder with `skimage/` and `onnxruntime/` (default /tmp/imgsim-test-data);
//! - `IMGSIM_TEST_PHOTOS`: the photo folder (default `$IMGSIM_TEST_DATA/skimage`);
//! - `IMGSIM_ONNXRUNTIME`: libonnxruntime.so (default `$IMGSIM_TEST_DATA/onnxruntime/...`);
//! - `IMGSIM_MODEL_MANIFEST`: the real model (default `<repo>/models/efficientnet-lite0.json`).
//!
//! Tests whose data is missing say so and pass, unless `IMGSIM_REQUIRE_TEST_DATA=1` (CI), which
//! turns a missing file into a failure.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};

fn data_dir() -> PathBuf {
    std::env::var_os("IMGSIM_TEST_DATA")
        .map_or_else(|| "/tmp/imgsim-test-data".into(), PathBuf::from)
}

/// `path` if it exists; otherwise None after explaining how to get it (or a panic under
/// `IMGSIM_REQUIRE_TEST_DATA=1`).
fn present(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {}: run crates/embed/tests/fetch_test_data.sh (see tests/common/mod.rs)",
        path.display()
    );
    if std::env::var("IMGSIM_REQUIRE_TEST_DATA").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

pub fn photos_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("IMGSIM_TEST_PHOTOS")
        .map_or_else(|| data_dir().join("skimage"), PathBuf::from);
    present(dir, "test photos (scikit-image data)")
}

pub fn onnxruntime_lib() -> Option<PathBuf> {
    let lib = std::env::var_os("IMGSIM_ONNXRUNTIME").map_or_else(
        || data_dir().join("onnxruntime/libonnxruntime.so.1.23.2"),
        PathBuf::from,
    );
    present(lib, "ONNX Runtime library")
}

pub fn model_manifest() -> Option<PathBuf> {
    let path = std::env::var_os("IMGSIM_MODEL_MANIFEST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/efficientnet-lite0.json"),
        PathBuf::from,
    );
    present(
        path,
        "model manifest (models/convert_efficientnet_lite0.py makes it)",
    )
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

/// The photos used for nearest-neighbour tests: every sample photo in the folder, without the
/// `derived_*` copies and broken files that tools/make_test_images.py adds for the SQL tests.
pub fn photo_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| (n.ends_with(".png") || n.ends_with(".jpg")) && !n.starts_with("derived_"))
        .collect();
    names.sort();
    names
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub fn encode_jpeg(image: &RgbImage, quality: u8, exif: Option<Vec<u8>>) -> Vec<u8> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// A minimal little-endian EXIF (TIFF) block holding only the orientation tag.
pub fn exif_orientation(value: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes()); // IFD0 offset
    tiff.extend(1u16.to_le_bytes()); // one entry
    tiff.extend(0x0112u16.to_le_bytes()); // Orientation
    tiff.extend(3u16.to_le_bytes()); // SHORT
    tiff.extend(1u32.to_le_bytes()); // count
    tiff.extend(value.to_le_bytes());
    tiff.extend([0, 0]); // value padding
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    tiff
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}
