//! Small JPEG previews of stored images, for the results page and `serve`.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageReader, Rgb, RgbImage};

pub const MAX_SIDE: u32 = 256;
const JPEG_QUALITY: u8 = 85;

/// Decodes, turns upright per EXIF, shrinks to at most 256 px a side, re-encodes
/// as JPEG (which has no alpha: transparency is flattened onto white).
pub fn jpeg(image_bytes: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let mut decoder = ImageReader::new(Cursor::new(image_bytes))
        .with_guessed_format()?
        .into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    if image.width() > MAX_SIDE || image.height() > MAX_SIDE {
        image = image.thumbnail(MAX_SIDE, MAX_SIDE);
    }
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(&flatten_onto_white(&image))?;
    Ok(jpeg)
}

fn flatten_onto_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white = |c: u8| ((c as u32 * a as u32 + 255 * (255 - a as u32) + 127) / 255) as u8;
        Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

#[cfg(test)]
mod tests {
    use image::{ImageFormat, RgbaImage};

    #[test]
    fn thumbnails_are_small_upright_jpegs_flattened_on_white() {
        // 600x300, left half opaque red, right half fully transparent.
        let source = RgbaImage::from_fn(600, 300, |x, _| {
            if x < 300 {
                image::Rgba([255, 0, 0, 255])
            } else {
                image::Rgba([0, 0, 255, 0])
            }
        });
        let mut png = Vec::new();
        source
            .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let thumbnail = image::load_from_memory(&super::jpeg(&png).unwrap()).unwrap();
        assert_eq!((thumbnail.width(), thumbnail.height()), (256, 128));
        let rgb = thumbnail.to_rgb8();
        let [r, g, b] = rgb.get_pixel(64, 64).0;
        assert!(
            r > 240 && g < 20 && b < 20,
            "left half stays red: {r} {g} {b}"
        );
        let [r, g, b] = rgb.get_pixel(192, 64).0;
        assert!(
            r > 240 && g > 240 && b > 240,
            "transparent becomes white: {r} {g} {b}"
        );
    }

    #[test]
    fn corrupt_bytes_are_an_error() {
        assert!(super::jpeg(b"this is not an image").is_err());
    }
}
