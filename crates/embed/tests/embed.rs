//! The embedder with ONNX Runtime: the real EfficientNet-Lite0 model (models/) and the tiny
//! test model (tests/data/tiny.onnx, made by tests/data/make_tiny_model.py).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use image::{DynamicImage, ImageFormat, RgbImage};
use imgsim_embed::{decode_for_size, DecodeLimits, EmbedError, Embedder, Manifest};

const DIMS: usize = 2048;

/// The real model, loaded once for all tests of this file.
fn real() -> Option<&'static Embedder> {
    static EMBEDDER: OnceLock<Option<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let (lib, manifest) = (onnxruntime_lib()?, model_manifest()?);
            let manifest = Manifest::load(&manifest).unwrap();
            if !manifest.model_path().exists() {
                // The manifest is committed; the .onnx is generated.
                model_manifest_missing(&manifest.model_path());
                return None;
            }
            Some(Embedder::new(&manifest, &lib, 1, DIMS).unwrap())
        })
        .as_ref()
}

fn model_manifest_missing(model: &Path) {
    let msg = format!(
        "model {} missing: run models/convert_efficientnet_lite0.py",
        model.display()
    );
    assert!(
        std::env::var("IMGSIM_REQUIRE_TEST_DATA").map_or(true, |v| v != "1"),
        "{msg}"
    );
    eprintln!("SKIPPED: {msg}");
}

fn tiny_manifest() -> Manifest {
    Manifest::load(fixture("tiny.json")).unwrap()
}

fn tiny(lib: &Path) -> Embedder {
    Embedder::new(&tiny_manifest(), lib, 1, 256).unwrap()
}

fn photo(dir: &Path, name: &str) -> RgbImage {
    image::load_from_memory(&read(dir, name))
        .unwrap()
        .into_rgb8()
}

fn png(image: &RgbImage) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(image.clone()), ImageFormat::Png)
}

#[test]
fn same_bytes_give_the_same_unit_vector() {
    let (Some(e), Some(dir)) = (real(), photos_dir()) else {
        return;
    };
    let bytes = read(&dir, "astronaut.png");
    let a = e.embed(&bytes).unwrap();
    let b = e.embed(&bytes).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), DIMS);
    let norm = a.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
}

/// A JPEG q=50 copy and a half-size copy of each photo must be nearer to their original than
/// to any other test photo.
#[test]
fn copies_are_nearest_to_their_original() {
    let (Some(e), Some(dir)) = (real(), photos_dir()) else {
        return;
    };
    // chessboard_RGB.png is the same picture as chessboard_GRAY.png.
    let names: Vec<String> = photo_names(&dir)
        .into_iter()
        .filter(|n| n != "chessboard_RGB.png")
        .collect();
    let originals: Vec<Vec<f32>> = names
        .iter()
        .map(|n| e.embed(&read(&dir, n)).unwrap())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let img = photo(&dir, name);
        let half = image::imageops::resize(
            &img,
            img.width() / 2,
            img.height() / 2,
            image::imageops::Triangle,
        );
        for (what, bytes) in [
            ("jpeg q50", encode_jpeg(&img, 50, None)),
            ("half size", png(&half)),
        ] {
            let copy = e.embed(&bytes).unwrap();
            let sims: Vec<f32> = originals.iter().map(|o| cosine(&copy, o)).collect();
            let (best, _) = sims
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap();
            assert_eq!(
                names[best], *name,
                "{what} copy of {name}: {:.4} to its original, {:.4} to {}",
                sims[i], sims[best], names[best]
            );
        }
    }
}

#[test]
fn every_format_embeds_alike() {
    let (Some(e), Some(dir)) = (real(), photos_dir()) else {
        return;
    };
    let img = DynamicImage::ImageRgb8(photo(&dir, "coffee.png"));
    let reference = e.embed(&encode(&img, ImageFormat::Png)).unwrap();
    for (format, min_cosine) in [
        (ImageFormat::Bmp, 1.0),
        (ImageFormat::Tiff, 1.0),
        (ImageFormat::WebP, 1.0),
        (ImageFormat::Jpeg, 0.95), // quality 75
        (ImageFormat::Gif, 0.95),  // 256 colours
    ] {
        let c = cosine(&e.embed(&encode(&img, format)).unwrap(), &reference);
        println!("{format:?}: cosine {c}");
        assert!(c >= min_cosine - 1e-6, "{format:?}: cosine {c}");
    }
}

/// A JPEG stored sideways with an EXIF orientation tag embeds like the upright picture.
#[test]
fn exif_orientation_is_applied() {
    let (Some(e), Some(dir)) = (real(), photos_dir()) else {
        return;
    };
    let upright = photo(&dir, "chelsea.png");
    let reference = e.embed(&encode_jpeg(&upright, 95, None)).unwrap();
    use image::imageops::{flip_horizontal, flip_vertical, rotate180, rotate270, rotate90};
    // Stored pixels = the inverse transform of what the tag asks the viewer to do.
    let stored: [(u16, RgbImage); 7] = [
        (2, flip_horizontal(&upright)),
        (3, rotate180(&upright)),
        (4, flip_vertical(&upright)),
        (5, rotate270(&flip_horizontal(&upright))), // transpose
        (6, rotate270(&upright)),
        (7, rotate90(&flip_horizontal(&upright))), // transverse
        (8, rotate90(&upright)),
    ];
    for (tag, pixels) in stored {
        let jpeg = encode_jpeg(&pixels, 95, Some(exif_orientation(tag)));
        let c = cosine(&e.embed(&jpeg).unwrap(), &reference);
        assert!(c > 0.99, "orientation {tag}: cosine {c}");
        let ignored = cosine(
            &e.embed(&encode_jpeg(&pixels, 95, None)).unwrap(),
            &reference,
        );
        assert!(
            ignored < c,
            "orientation {tag}: without the tag {ignored}, with {c}"
        );
    }
}

fn top(logits: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(k);
    order
}

#[test]
fn classifies_sample_photos() {
    let (Some(e), Some(dir)) = (real(), photos_dir()) else {
        return;
    };
    let cat = top(&e.classify(&read(&dir, "chelsea.png")).unwrap(), 3);
    assert!(
        (281..=285).contains(&cat[0]),
        "chelsea top-3 classes {cat:?}"
    );
    let coffee = top(&e.classify(&read(&dir, "coffee.png")).unwrap(), 3);
    assert!(
        coffee.iter().any(|c| [967, 968, 504].contains(c)),
        "coffee top-3 classes {coffee:?}"
    );
}

#[test]
fn batch_matches_single_and_isolates_bad_images() {
    let (Some(e), Some(dir)) = (real(), photos_dir()) else {
        return;
    };
    let names = [
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "astronaut.png",
        "camera.png",
    ];
    let mut blobs: Vec<Vec<u8>> = names.iter().map(|n| read(&dir, n)).collect();
    blobs.insert(2, b"not an image".to_vec());
    blobs.push(Vec::new());
    let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let results = e.embed_batch(&refs);
    assert_eq!(results.len(), refs.len());
    for (bytes, result) in refs.iter().zip(&results) {
        match e.embed(bytes) {
            Ok(single) => {
                let batched = result.as_ref().unwrap();
                let max_diff = single
                    .iter()
                    .zip(batched)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    max_diff < 1e-5,
                    "batch vs single: max difference {max_diff}"
                );
            }
            Err(err) => assert_eq!(result.as_ref().unwrap_err(), &err),
        }
    }
}

/// Descriptors from `bench/embed_python.py --dump FILE.npy` (Pillow + onnxruntime) for the
/// same photos, given as IMGSIM_REFERENCE_DUMP=FILE.npy (file names in FILE.npy.txt). tools/test.sh
/// dumps the sample photos and the large JPEG copies tools/make_test_images.py makes.
///
/// The Python pipeline decodes every image at full size. Large progressive JPEGs we read at 1/8
/// scale from their DC coefficients, which smooths a little more before the resize (a box of
/// 8 pixels ahead of the triangle filter): on the 9 such photos of ../shared/data the cosine is
/// 0.981-0.998, as for libjpeg's own 1/8-scale decoding through Pillow (0.982 at the lowest),
/// so those have a lower floor.
#[test]
fn matches_python_reference() {
    let Some(dump) = std::env::var_os("IMGSIM_REFERENCE_DUMP").map(PathBuf::from) else {
        // tools/test.sh makes the dump, so CI (IMGSIM_REQUIRE_TEST_DATA=1) always compares.
        let msg =
            "IMGSIM_REFERENCE_DUMP not set: make it with bench/embed_python.py --dump FILE.npy";
        assert!(
            std::env::var("IMGSIM_REQUIRE_TEST_DATA").map_or(true, |v| v != "1"),
            "{msg}"
        );
        eprintln!("SKIPPED: {msg}");
        return;
    };
    let Some(e) = real() else { return };
    let files = std::fs::read_to_string(format!("{}.txt", dump.display())).unwrap();
    let rows = read_npy_f32(&dump, DIMS);
    let files: Vec<&str> = files.lines().collect();
    assert_eq!(files.len(), rows.len());
    let shorter_side = e.manifest().preprocess.resize_shorter_to;
    // Lowest cosine (and its file) and number of images, at full size and at 1/8 scale.
    let mut worst = [(1.0f32, ""); 2];
    let mut seen = [0usize; 2];
    for (file, reference) in files.iter().zip(&rows) {
        let bytes = std::fs::read(file).unwrap();
        let decoded = decode_for_size(&bytes, &DecodeLimits::default(), [0; 3], shorter_side);
        let scaled = usize::from(decoded.unwrap().downscale > 1);
        let c = cosine(&e.embed(&bytes).unwrap(), reference);
        seen[scaled] += 1;
        if c < worst[scaled].0 {
            worst[scaled] = (c, file);
        }
    }
    for (((c, file), n), (kind, floor)) in worst
        .into_iter()
        .zip(seen)
        .zip([("full size", 0.99), ("1/8 scale", 0.975)])
    {
        println!("{kind}: {n} images, lowest cosine to the Python reference {c:.5} ({file})");
        assert!(n > 0, "the dump has no image decoded at {kind}");
        assert!(c > floor, "{kind}: cosine {c} for {file}");
    }
}

/// Rows of a little-endian float32 C-order .npy file of shape (n, dims).
fn read_npy_f32(path: &Path, dims: usize) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'<f4'") && header.contains("False"),
        "{header}"
    );
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    values.chunks_exact(dims).map(<[f32]>::to_vec).collect()
}

// ---- tiny model: the embedder's mechanics, independent of the real model ----

#[test]
fn tiny_model_embeds_and_classifies() {
    let (Some(lib), Some(dir)) = (onnxruntime_lib(), photos_dir()) else {
        return;
    };
    let first = tiny(&lib);
    let second = tiny(&lib); // a second embedder in the same process
    let bytes = read(&dir, "coffee.png");
    let v = first.embed(&bytes).unwrap();
    assert_eq!(v.len(), 256);
    assert_eq!(v, second.embed(&bytes).unwrap());
    assert_eq!(first.classify(&bytes).unwrap().len(), 10);
    let (_, timings) = first.embed_timed(&bytes).unwrap();
    assert!(!timings.decode.is_zero() && !timings.resize.is_zero() && !timings.inference.is_zero());
}

#[test]
fn image_errors_come_through_embed() {
    let Some(lib) = onnxruntime_lib() else { return };
    let e = tiny(&lib);
    assert_eq!(e.embed(&[]), Err(EmbedError::Empty));
    assert!(matches!(
        e.embed(b"GIF89a"),
        Err(EmbedError::Corrupt { .. })
    ));
}

fn manifest_error(result: Result<Embedder, EmbedError>) -> String {
    match result {
        Err(EmbedError::Manifest { detail }) => detail,
        Err(other) => panic!("expected a manifest error, got {other}"),
        Ok(_) => panic!("expected a manifest error, the embedder was created"),
    }
}

#[test]
fn manifest_must_match_the_model_and_the_caller() {
    let Some(lib) = onnxruntime_lib() else { return };
    let detail = manifest_error(Embedder::new(&tiny_manifest(), &lib, 1, 2048));
    assert!(
        detail.contains("256") && detail.contains("2048"),
        "{detail}"
    );

    let json = std::fs::read_to_string(fixture("tiny.json")).unwrap();
    let dir = fixture("");
    let variant = |from: &str, to: &str| {
        assert!(json.contains(from));
        Manifest::parse(&json.replace(from, to), &dir)
    };
    let cases = [
        (
            r#""output": "colour""#,
            r#""output": "nope""#,
            "no output \"nope\"",
        ),
        (
            r#""output": "colour", "dims": 64"#,
            r#""output": "logits", "dims": 64"#,
            "10",
        ),
        (r#""name": "input""#, r#""name": "image""#, "\"image\""),
        (r#""width": 224"#, r#""width": 200"#, "[N, 3, 224, 200]"),
        (
            r#""model": "tiny.onnx""#,
            r#""model": "missing.onnx""#,
            "not found",
        ),
    ];
    for (from, to, expect) in cases {
        let manifest = variant(from, to).unwrap();
        let dims = manifest.descriptor.dims;
        let detail = manifest_error(Embedder::new(&manifest, &lib, 1, dims));
        assert!(detail.contains(expect), "{to}: {detail}");
    }
    // Refused by the manifest itself.
    let detail = |r: Result<Manifest, EmbedError>| match r {
        Err(EmbedError::Manifest { detail }) => detail,
        other => panic!("expected a manifest error, got {other:?}"),
    };
    assert!(detail(variant(r#""dims": 256"#, r#""dims": 300"#)).contains("add up to 256"));
    assert!(detail(variant(
        r#""resize_shorter_to": 256"#,
        r#""resize_shorter_to": 200"#
    ))
    .contains("crop size"));
    assert!(detail(variant(r#""crop": "center""#, r#""crop": "top""#)).contains("unknown variant"));
    assert!(detail(variant(r#""weight": 0.5"#, r#""weight": -1"#)).contains("weight"));
    let missing = Manifest::load(fixture("absent.json")).unwrap_err();
    assert!(missing.to_string().contains("absent.json"), "{missing}");
}

#[test]
fn onnxruntime_library_errors_are_clear() {
    let Some(lib) = onnxruntime_lib() else { return };
    let _loaded = tiny(&lib);
    let err = Embedder::new(
        &tiny_manifest(),
        Path::new("/nonexistent/libonnxruntime.so"),
        1,
        256,
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, EmbedError::Runtime { detail } if detail.contains("/nonexistent")),
        "{err}"
    );
    // Another existing file is not silently accepted once a library is loaded.
    let other = fixture("tiny.onnx");
    let err = Embedder::new(&tiny_manifest(), &other, 1, 256)
        .err()
        .unwrap();
    assert!(
        matches!(&err, EmbedError::Runtime { detail } if detail.contains("already loaded")),
        "{err}"
    );
}
