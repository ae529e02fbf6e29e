//! Image bytes -> 8-bit RGB pixels, within memory limits.

use std::io::{Cursor, ErrorKind};

use image::error::{ImageError, ImageFormatHint, LimitErrorKind, UnsupportedErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::jpeg_dc::{decode_dc, BLOCK};
use crate::EmbedError;

/// Largest accepted width or height.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted pixel count (8192 x 8192, about 67 megapixels).
pub const MAX_PIXELS: u64 = 8192 * 8192;
/// Most memory the decoder may allocate for one image (decoded pixels plus decoder buffers).
/// At 256 MiB a 67 MP 8-bit RGBA image fits; 16-bit colour images fit up to ~22-33 MP.
pub const MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// Limits checked before any pixel memory is allocated, so that a small file declaring a
/// huge image (a decompression bomb) is refused in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_pixels: u64,
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: MAX_SIDE,
            max_pixels: MAX_PIXELS,
            max_alloc: MAX_ALLOC,
        }
    }
}

/// A decoded image: 8-bit RGB pixels as stored in the file, plus the EXIF orientation that
/// still has to be applied to them (pre-processing applies it after downscaling, which is
/// cheaper and gives the same result).
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub pixels: RgbImage,
    pub orientation: Orientation,
    /// Width and height of the image as stored in the file.
    pub size: (u32, u32),
    /// 1 if `pixels` is the whole image; 8 if each pixel is the mean of an 8x8 block of it (the
    /// last row and column of blocks may be partly outside the image).
    pub downscale: u32,
}

/// Decodes JPEG, PNG, WebP, GIF (first frame), BMP or TIFF bytes at full size. Transparent
/// pixels are composited onto `background`; grey, 16-bit, float and CMYK (JPEG) images are
/// converted.
pub fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
    background: [u8; 3],
) -> Result<DecodedImage, EmbedError> {
    decode_inner(bytes, limits, background, None)
}

/// Like [`decode`], but a progressive JPEG whose shorter side is at least 8 x `shorter_side`
/// pixels comes back at 1/8 scale, read from its DC scans alone (12-25x faster on 6-13 MP
/// photos). The result is still at least `shorter_side` pixels on its shorter side.
pub fn decode_for_size(
    bytes: &[u8],
    limits: &DecodeLimits,
    background: [u8; 3],
    shorter_side: u32,
) -> Result<DecodedImage, EmbedError> {
    decode_inner(bytes, limits, background, Some(shorter_side))
}

fn decode_inner(
    bytes: &[u8],
    limits: &DecodeLimits,
    background: [u8; 3],
    shorter_side: Option<u32>,
) -> Result<DecodedImage, EmbedError> {
    if bytes.is_empty() {
        return Err(EmbedError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .expect("reading from a slice cannot fail");
    let format = reader.format();
    match format {
        None => return Err(EmbedError::UnknownFormat),
        Some(ImageFormat::Jpeg) if jpeg_lacks_end(bytes) => {
            return Err(EmbedError::Corrupt {
                detail: "JPEG data is truncated (no end marker)".into(),
            })
        }
        Some(_) => {}
    }
    // Only the allocation limit goes to the decoder: constructing it parses the header
    // without allocating pixels, and the size limits are checked right after, by us, so that
    // the error can say how large the image claims to be.
    let mut image_limits = image::Limits::default();
    image_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(image_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_error(e, (0, 0), limits))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, decoder.total_bytes(), limits)?;

    // A malformed EXIF block should not make an otherwise fine image unusable.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // Baseline JPEGs are decoded at full size: DCT-domain downscaling (jpeg-decoder 0.3's
    // `Decoder::scale`) was measured on 1.4-13 MP photos and was no faster than zune-jpeg at
    // full size, because Huffman decoding of all coefficients, which it cannot skip, dominates.
    // A progressive JPEG's DC scans can be read without touching the rest.
    let dc_only_fits = shorter_side.is_some_and(|s| width.min(height).div_ceil(BLOCK) >= s);
    if format == Some(ImageFormat::Jpeg) && dc_only_fits {
        let size = (width.div_ceil(BLOCK), height.div_ceil(BLOCK));
        if let Some(pixels) = decode_dc(bytes, (width, height)).filter(|p| p.dimensions() == size) {
            return Ok(DecodedImage {
                pixels,
                orientation,
                size: (width, height),
                downscale: BLOCK,
            });
        }
    }
    let image =
        DynamicImage::from_decoder(decoder).map_err(|e| map_error(e, (width, height), limits))?;
    Ok(DecodedImage {
        pixels: into_rgb8(image, background),
        orientation,
        size: (width, height),
        downscale: 1,
    })
}

/// The JPEG decoder pads a truncated scan with grey instead of failing (as browsers do), so
/// a cut-off upload would embed as a half-grey picture. Like Pillow, we refuse it: after the
/// first scan header there must be an end-of-image marker. (Entropy-coded data never holds
/// `FF D9`, and a thumbnail's markers live inside an APP segment, which is skipped.)
fn jpeg_lacks_end(bytes: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xff {
            return false; // malformed: leave it to the decoder
        }
        let marker = bytes[pos + 1];
        if marker == 0xff {
            pos += 1; // fill byte
            continue;
        }
        if marker == 0xda {
            return memchr::memmem::find(&bytes[pos..], &[0xff, 0xd9]).is_none();
        }
        pos += 2 + usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
    }
    false
}

fn check_size(
    width: u32,
    height: u32,
    bytes: u64,
    limits: &DecodeLimits,
) -> Result<(), EmbedError> {
    let too_large = |limit: String| {
        Err(EmbedError::TooLarge {
            width,
            height,
            limit,
        })
    };
    if width == 0 || height == 0 {
        return Err(EmbedError::Corrupt {
            detail: format!("image has zero size {width}x{height}"),
        });
    }
    if width > limits.max_side || height > limits.max_side {
        return too_large(format!("the limit of {} pixels per side", limits.max_side));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return too_large(format!("the limit of {} pixels", limits.max_pixels));
    }
    if bytes > limits.max_alloc {
        return too_large(alloc_limit(limits));
    }
    Ok(())
}

fn alloc_limit(limits: &DecodeLimits) -> String {
    format!(
        "the decoder memory limit of {} MiB",
        limits.max_alloc / (1024 * 1024)
    )
}

fn map_error(error: ImageError, (width, height): (u32, u32), limits: &DecodeLimits) -> EmbedError {
    match error {
        ImageError::Limits(e) => match e.kind() {
            LimitErrorKind::DimensionError => EmbedError::TooLarge {
                width,
                height,
                limit: format!("the limit of {} pixels per side", limits.max_side),
            },
            LimitErrorKind::InsufficientMemory => EmbedError::TooLarge {
                width,
                height,
                limit: alloc_limit(limits),
            },
            _ => EmbedError::Unsupported {
                what: e.to_string(),
            },
        },
        ImageError::Unsupported(e) => match e.kind() {
            UnsupportedErrorKind::Format(ImageFormatHint::Unknown) => EmbedError::UnknownFormat,
            UnsupportedErrorKind::Format(hint) => EmbedError::Unsupported {
                what: format!("{hint} images are not supported"),
            },
            _ => EmbedError::Unsupported {
                what: e.to_string(),
            },
        },
        ImageError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => EmbedError::Corrupt {
            detail: "data is truncated".into(),
        },
        other => EmbedError::Corrupt {
            detail: other.to_string(),
        },
    }
}

/// Converts any colour type to 8-bit RGB, compositing alpha onto `background`.
///
/// 8-bit grey and RGBA, the common cases, are converted here: `image` turns grey into RGB
/// through float colour-space arithmetic per pixel, which made a 640x480 grey JPEG take longer
/// to convert than to decode. Repeating the grey value gives the same bytes.
fn into_rgb8(image: DynamicImage, background: [u8; 3]) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => return rgb,
        DynamicImage::ImageLuma8(grey) => grey.as_raw().iter().flat_map(|&v| [v; 3]).collect(),
        DynamicImage::ImageLumaA8(grey) => composite::<2>(grey.as_raw(), background),
        DynamicImage::ImageRgba8(rgba) => composite::<4>(rgba.as_raw(), background),
        other if !other.color().has_alpha() => return other.into_rgb8(),
        other => composite::<4>(other.into_rgba8().as_raw(), background),
    };
    RgbImage::from_raw(width, height, rgb).expect("buffer has width * height * 3 bytes")
}

/// Composites 8-bit pixels of `CHANNELS` values (grey + alpha or RGB + alpha) onto
/// `background`: c * a/255 + bg * (1 - a/255), rounded half up like the Python reference.
fn composite<const CHANNELS: usize>(pixels: &[u8], background: [u8; 3]) -> Vec<u8> {
    let mut rgb = vec![0; pixels.len() / CHANNELS * 3];
    for (px, out) in pixels.chunks_exact(CHANNELS).zip(rgb.chunks_exact_mut(3)) {
        let a = u32::from(px[CHANNELS - 1]);
        for c in 0..3 {
            let colour = u32::from(px[if CHANNELS == 2 { 0 } else { c }]);
            let v = colour * a + u32::from(background[c]) * (255 - a);
            out[c] = ((2 * v + 255) / 510) as u8;
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayAlphaImage, GrayImage, RgbaImage};

    /// Every value of every channel, and every alpha against two backgrounds.
    #[test]
    fn colour_conversion_matches_image_and_the_compositing_formula() {
        let grey = GrayImage::from_fn(256, 1, |x, _| image::Luma([x as u8]));
        let expected = DynamicImage::ImageLuma8(grey.clone()).to_rgb8();
        assert_eq!(into_rgb8(DynamicImage::ImageLuma8(grey), [9; 3]), expected);

        let reference = |c: u8, a: u8, bg: u8| {
            let (c, a, bg) = (f64::from(c), f64::from(a) / 255.0, f64::from(bg));
            (c * a + bg * (1.0 - a) + 0.5).floor() as u8
        };
        for background in [[255, 255, 255], [0, 128, 37]] {
            let rgba = RgbaImage::from_fn(256, 256, |x, y| {
                image::Rgba([x as u8, (255 - x) as u8, (x * 7 % 256) as u8, y as u8])
            });
            let out = into_rgb8(DynamicImage::ImageRgba8(rgba.clone()), background);
            for (px, got) in rgba.pixels().zip(out.pixels()) {
                let want: [u8; 3] = std::array::from_fn(|c| reference(px[c], px[3], background[c]));
                assert_eq!(got.0, want, "{px:?} on {background:?}");
            }
            let grey_alpha =
                GrayAlphaImage::from_fn(256, 256, |x, y| image::LumaA([x as u8, y as u8]));
            let out = into_rgb8(DynamicImage::ImageLumaA8(grey_alpha.clone()), background);
            for (px, got) in grey_alpha.pixels().zip(out.pixels()) {
                let want: [u8; 3] = std::array::from_fn(|c| reference(px[0], px[1], background[c]));
                assert_eq!(got.0, want, "{px:?} on {background:?}");
            }
        }
    }
}
