//! Decoding: formats, colour types, orientation, limits and errors. No model needed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, RgbImage};
use imgsim_embed::{decode, decode_for_size, DecodeLimits, EmbedError};

const WHITE: [u8; 3] = [255, 255, 255];

fn chelsea() -> Option<RgbImage> {
    let dir = photos_dir()?;
    Some(
        image::load_from_memory(&read(&dir, "chelsea.png"))
            .unwrap()
            .into_rgb8(),
    )
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// A small deterministic pseudo-random generator (xorshift64) for damaging files.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn decode_ok(bytes: &[u8]) -> RgbImage {
    decode(bytes, &DecodeLimits::default(), WHITE)
        .unwrap()
        .pixels
}

fn decode_err(bytes: &[u8]) -> EmbedError {
    match decode(bytes, &DecodeLimits::default(), WHITE) {
        Ok(image) => panic!(
            "expected an error, decoded a {:?} image",
            image.pixels.dimensions()
        ),
        Err(e) => e,
    }
}

#[test]
fn every_format_decodes() {
    let Some(photo) = chelsea() else { return };
    let photo_dyn = DynamicImage::ImageRgb8(photo.clone());
    // (format, largest mean difference per channel value): lossless formats are exact.
    for (format, tolerance) in [
        (ImageFormat::Png, 0.0),
        (ImageFormat::Bmp, 0.0),
        (ImageFormat::Tiff, 0.0),
        (ImageFormat::WebP, 0.0),
        (ImageFormat::Jpeg, 4.0),
        (ImageFormat::Gif, 12.0),
    ] {
        let decoded = decode_ok(&encode(&photo_dyn, format));
        let diff = mean_abs_diff(&decoded, &photo);
        assert!(diff <= tolerance, "{format:?}: mean difference {diff}");
    }
}

#[test]
fn colour_types_are_converted() {
    let Some(photo) = chelsea() else { return };
    let photo = DynamicImage::ImageRgb8(photo);

    let grey = photo.to_luma8();
    let decoded = decode_ok(&encode(
        &DynamicImage::ImageLuma8(grey.clone()),
        ImageFormat::Png,
    ));
    assert!(decoded
        .pixels()
        .zip(grey.pixels())
        .all(|(rgb, l)| rgb.0 == [l.0[0]; 3]));

    let rgb16 = photo.to_rgb16();
    let decoded = decode_ok(&encode(&DynamicImage::ImageRgb16(rgb16), ImageFormat::Png));
    assert_eq!(decoded, photo.to_rgb8(), "16-bit RGB");

    let grey16 = DynamicImage::ImageLuma16(photo.to_luma16());
    let decoded = decode_ok(&encode(&grey16, ImageFormat::Png));
    assert!(
        mean_abs_diff(&decoded, &DynamicImage::ImageLuma8(grey).to_rgb8()) < 0.6,
        "16-bit grey"
    );
}

#[test]
fn alpha_is_composited_onto_the_background() {
    // Alpha 0, 128 and 255 over a red pixel, and a grey+alpha image.
    let rgba = image::RgbaImage::from_fn(3, 1, |x, _| {
        image::Rgba([200, 0, 0, [0, 128, 255][x as usize]])
    });
    let png = encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
    let out = decode(&png, &DecodeLimits::default(), [10, 20, 30])
        .unwrap()
        .pixels;
    // 200 * 128/255 + 10 * 127/255 = 105.4; 20 * 127/255 = 9.96; 30 * 127/255 = 14.9
    assert_eq!(out.as_raw(), &[10, 20, 30, 105, 10, 15, 200, 0, 0]);

    let la = image::GrayAlphaImage::from_fn(2, 1, |x, _| image::LumaA([100, [0, 255][x as usize]]));
    let png = encode(&DynamicImage::ImageLumaA8(la), ImageFormat::Png);
    assert_eq!(decode_ok(&png).as_raw(), &[255, 255, 255, 100, 100, 100]);
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    let cmyk = std::fs::read(fixture("cmyk.jpg")).unwrap();
    let expected = image::open(fixture("cmyk_rgb.png")).unwrap().into_rgb8();
    let diff = mean_abs_diff(&decode_ok(&cmyk), &expected);
    assert!(
        diff < 6.0,
        "CMYK JPEG differs from its RGB original by {diff} on average"
    );
}

#[test]
fn exif_orientation_is_reported() {
    let image = RgbImage::from_fn(32, 16, |x, y| image::Rgb([x as u8 * 8, y as u8 * 16, 0]));
    for tag in 1..=8u8 {
        let jpeg = encode_jpeg(&image, 90, Some(exif_orientation(tag.into())));
        let decoded = decode(&jpeg, &DecodeLimits::default(), WHITE).unwrap();
        assert_eq!(
            decoded.orientation,
            Orientation::from_exif(tag).unwrap(),
            "tag {tag}"
        );
        assert_eq!(
            decoded.pixels.dimensions(),
            (32, 16),
            "pixels are as stored"
        );
    }
}

#[test]
fn empty_input() {
    assert_eq!(decode_err(&[]), EmbedError::Empty);
}

#[test]
fn random_bytes_are_not_an_image() {
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let noise: Vec<u8> = (0..4096).map(|_| next() as u8).collect();
    assert_eq!(decode_err(&noise), EmbedError::UnknownFormat);
    assert_eq!(
        decode_err(b"definitely not an image"),
        EmbedError::UnknownFormat
    );
}

#[test]
fn recognised_but_unsupported_format() {
    // A QOI header: a format the image crate knows but we do not enable.
    let mut qoi = b"qoif".to_vec();
    qoi.extend(4u32.to_be_bytes());
    qoi.extend(4u32.to_be_bytes());
    qoi.extend([3, 0]);
    qoi.extend([0u8; 64]);
    assert!(
        matches!(decode_err(&qoi), EmbedError::Unsupported { ref what } if what.contains("Qoi")),
        "{:?}",
        decode_err(&qoi)
    );
}

#[test]
fn truncated_files_are_corrupt() {
    let Some(photo) = chelsea() else { return };
    let photo = DynamicImage::ImageRgb8(photo);
    for format in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Gif,
    ] {
        let bytes = encode(&photo, format);
        let err = decode_err(&bytes[..bytes.len() / 2]);
        assert!(
            matches!(err, EmbedError::Corrupt { .. }),
            "{format:?}: {err:?}"
        );
    }
}

/// PNG chunk with its CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = 0xffff_ffffu32;
    for &byte in kind.iter().chain(data) {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    out.extend((!crc).to_be_bytes());
    out
}

/// A PNG header declaring `width` x `height` (colour type 2 = RGB, 6 = RGBA) followed by a
/// little compressed data.
fn png_bomb(width: u32, height: u32, colour_type: u8, bit_depth: u8) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([bit_depth, colour_type, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // zlib stream of a few thousand zero bytes (filter 0, black pixels).
    png.extend(chunk(
        b"IDAT",
        &[
            0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x0c, 0x77, 0x00, 0x00,
        ],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

fn assert_too_large(bytes: &[u8], width: u32, height: u32, limit_text: &str) {
    let start = Instant::now();
    let err = decode_err(bytes);
    let took = start.elapsed();
    match &err {
        EmbedError::TooLarge {
            width: w,
            height: h,
            limit,
        } => {
            assert_eq!((*w, *h), (width, height));
            assert!(limit.contains(limit_text), "{limit}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(took < Duration::from_millis(50), "refusing took {took:?}");
    println!(
        "{} bytes declaring {width}x{height}: refused in {took:?}: {err}",
        bytes.len()
    );
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    assert_too_large(
        &png_bomb(100_000, 100_000, 2, 8),
        100_000,
        100_000,
        "per side",
    );
    assert_too_large(&png_bomb(12_000, 12_000, 2, 8), 12_000, 12_000, "pixels");
    // 64 MP fits the pixel limit, but 16-bit RGBA needs 512 MB.
    assert_too_large(&png_bomb(8000, 8000, 6, 16), 8000, 8000, "memory");

    // A real JPEG whose frame header claims 65000 x 65000.
    let small = RgbImage::from_pixel(16, 16, image::Rgb([90, 120, 200]));
    let mut jpeg = encode_jpeg(&small, 90, None);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("baseline SOF0");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xfd, 0xe8, 0xfd, 0xe8]);
    assert_too_large(&jpeg, 65_000, 65_000, "per side");
}

#[test]
fn custom_limits_apply() {
    let image = DynamicImage::ImageRgb8(RgbImage::new(300, 200));
    let png = encode(&image, ImageFormat::Png);
    let limits = DecodeLimits {
        max_side: 256,
        ..DecodeLimits::default()
    };
    let err = decode(&png, &limits, WHITE).unwrap_err();
    assert!(
        matches!(
            err,
            EmbedError::TooLarge {
                width: 300,
                height: 200,
                ..
            }
        ),
        "{err:?}"
    );
}

/// Quick regression guard next to the fuzz target: damaged files must give errors, not panics.
#[test]
fn damaged_files_never_panic() {
    let Some(photo) = chelsea() else { return };
    let small = DynamicImage::ImageRgb8(image::imageops::thumbnail(&photo, 48, 32));
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    for format in [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
    ] {
        let original = encode(&small, format);
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            if next().is_multiple_of(4) {
                bytes.truncate((next() % bytes.len() as u64) as usize);
            }
            let _ = decode(&bytes, &DecodeLimits::default(), WHITE);
        }
    }
}

/// Progressive JPEGs come back at 1/8 scale when that is still large enough (the pixels are
/// checked in jpeg_dc.rs's tests); otherwise, or when the file cannot be read that way, at full
/// size.
#[test]
fn one_eighth_scale_only_when_large_enough_and_possible() {
    let progressive = std::fs::read(fixture("progressive_420.jpg")).unwrap();
    // 131 pixels high: 1/8 scale is 17 rows, enough for 17 and one short of 18.
    let image = decode_for_size(&progressive, &DecodeLimits::default(), WHITE, 17).unwrap();
    assert_eq!((image.downscale, image.size), (8, (203, 131)));
    assert_eq!(image.pixels.dimensions(), (26, 17));
    let image = decode_for_size(&progressive, &DecodeLimits::default(), WHITE, 18).unwrap();
    assert_eq!(
        (image.downscale, image.pixels.dimensions()),
        (1, (203, 131))
    );
    // CMYK is left to the full decoder, which converts it.
    let cmyk = std::fs::read(fixture("progressive_cmyk.jpg")).unwrap();
    let image = decode_for_size(&cmyk, &DecodeLimits::default(), WHITE, 1).unwrap();
    assert_eq!(image.downscale, 1);
    assert_eq!(image.pixels, decode_ok(&cmyk));
    // Baseline JPEGs interleave DC and AC codes; nothing is gained by reading only the DC.
    let Some(photo) = chelsea() else { return };
    let baseline = encode_jpeg(&photo, 90, None);
    let image = decode_for_size(&baseline, &DecodeLimits::default(), WHITE, 1).unwrap();
    assert_eq!(image.downscale, 1);
}

/// A progressive JPEG damaged inside its DC scans never panics, and a file cut off inside them
/// is still refused as truncated.
#[test]
fn damaged_progressive_jpeg_never_panics() {
    let original = std::fs::read(fixture("progressive_422_restart.jpg")).unwrap();
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for _ in 0..2000 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 4 {
            // Mostly the headers and the first (DC) scan, where the DC reader looks.
            let at = (next() % 1500) as usize;
            bytes[at] = next() as u8;
        }
        if let Ok(image) = decode_for_size(&bytes, &DecodeLimits::default(), WHITE, 8) {
            let (w, h) = image.size;
            let scale = image.downscale;
            assert_eq!(
                image.pixels.dimensions(),
                (w.div_ceil(scale), h.div_ceil(scale))
            );
        }
    }
    let truncated = &original[..1200];
    assert!(matches!(
        decode_for_size(truncated, &DecodeLimits::default(), WHITE, 8),
        Err(EmbedError::Corrupt { .. })
    ));
}
