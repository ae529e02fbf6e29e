//! Decoded pixels -> normalised NCHW float input, as `bench/embed_python.py` (the Python
//! reference pipeline, Pillow) does it: resize the shorter side, centre crop, normalise.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use crate::manifest::{Input, Preprocess};
use crate::{DecodedImage, EmbedError};

/// Pillow's antialiased bilinear filter (fast_image_resize reproduces Pillow's convolution):
/// the kernel widens with the downscale factor, so large photos are averaged, not aliased.
const FILTER: ResizeAlg = ResizeAlg::Convolution(FilterType::Bilinear);

/// Region of the stored (un-oriented) image to resample, and the size to resample it to.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    dst_width: u32,
    dst_height: u32,
}

pub(crate) fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Size after scaling the shorter side to `shorter`: the longer side is rounded half up.
fn scaled_size(width: u32, height: u32, shorter: u32) -> (u32, u32) {
    let (short, long) = (u64::from(width.min(height)), u64::from(width.max(height)));
    let scaled = ((long * u64::from(shorter) + short / 2) / short).clamp(1, u32::MAX.into()) as u32;
    if width <= height {
        (shorter, scaled)
    } else {
        (scaled, shorter)
    }
}

/// Works out which source rectangle ends up in the crop. Resizing the whole image and then
/// cropping samples exactly the same points as resampling only the crop's source rectangle
/// (the filter may still read pixels just outside it), so only the crop is computed. The
/// rectangle is computed in oriented coordinates and mapped back to stored coordinates, so
/// that the orientation is applied to the small result.
fn plan(stored: (u32, u32), orientation: Orientation, shorter: u32, crop: (u32, u32)) -> Plan {
    let (sw, sh) = (f64::from(stored.0), f64::from(stored.1));
    let (ow, oh) = if swaps_axes(orientation) {
        (stored.1, stored.0)
    } else {
        stored
    };
    let (cw, ch) = crop;
    let (nw, nh) = scaled_size(ow, oh, shorter);
    let (sx, sy) = (f64::from(ow) / f64::from(nw), f64::from(oh) / f64::from(nh));
    let u0 = f64::from(nw.saturating_sub(cw) / 2) * sx;
    let v0 = f64::from(nh.saturating_sub(ch) / 2) * sy;
    let (w, h) = (f64::from(cw) * sx, f64::from(ch) * sy);

    // (left, top, width, height) of the oriented rectangle [u0, u0+w] x [v0, v0+h] in stored
    // coordinates, following image's definitions of the eight EXIF orientations.
    let (left, top, width, height) = match orientation {
        Orientation::NoTransforms => (u0, v0, w, h),
        Orientation::FlipHorizontal => (sw - u0 - w, v0, w, h),
        Orientation::FlipVertical => (u0, sh - v0 - h, w, h),
        Orientation::Rotate180 => (sw - u0 - w, sh - v0 - h, w, h),
        Orientation::Rotate90 => (v0, sh - u0 - w, h, w),
        Orientation::Rotate270 => (sw - v0 - h, u0, h, w),
        Orientation::Rotate90FlipH => (v0, u0, h, w),
        Orientation::Rotate270FlipH => (sw - v0 - h, sh - u0 - w, h, w),
    };
    // Keep float rounding from pushing the rectangle a hair outside the image.
    let (left, top) = (left.clamp(0.0, sw), top.clamp(0.0, sh));
    let (dst_width, dst_height) = if swaps_axes(orientation) {
        (ch, cw)
    } else {
        (cw, ch)
    };
    Plan {
        left,
        top,
        width: width.min(sw - left),
        height: height.min(sh - top),
        dst_width,
        dst_height,
    }
}

/// Resizes, orients and crops `image` to the model's input size.
pub(crate) fn resize_and_crop(
    image: &DecodedImage,
    pre: &Preprocess,
    input: &Input,
) -> Result<RgbImage, EmbedError> {
    let p = plan(
        image.size,
        image.orientation,
        pre.resize_shorter_to,
        (input.width, input.height),
    );
    // The same rectangle in the (possibly 1/8-scale) decoded pixels.
    let scale = f64::from(image.downscale);
    let (pw, ph) = image.pixels.dimensions();
    let (left, top) = (p.left / scale, p.top / scale);
    let (width, height) = (
        (p.width / scale).min(f64::from(pw) - left),
        (p.height / scale).min(f64::from(ph) - top),
    );
    let mut out = RgbImage::new(p.dst_width, p.dst_height);
    let options = ResizeOptions::new()
        .resize_alg(FILTER)
        .crop(left, top, width, height);
    Resizer::new()
        .resize(&image.pixels, &mut out, &options)
        .map_err(|e| EmbedError::runtime(format!("resize failed: {e}")))?;
    if image.orientation == Orientation::NoTransforms {
        return Ok(out);
    }
    let mut oriented = DynamicImage::ImageRgb8(out);
    oriented.apply_orientation(image.orientation);
    Ok(oriented.into_rgb8())
}

/// Writes `crop` (exactly input-sized) into `out` as CHW floats: `(v / 255 - mean) / std`.
pub(crate) fn normalise_into(crop: &RgbImage, pre: &Preprocess, out: &mut [f32]) {
    let plane = crop.width() as usize * crop.height() as usize;
    assert_eq!(out.len(), 3 * plane, "output slice must hold one CHW image");
    let lut: [[f32; 256]; 3] = std::array::from_fn(|c| {
        std::array::from_fn(|v| (v as f32 / 255.0 - pre.mean[c]) / pre.std[c])
    });
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in crop.as_raw().chunks_exact(3).enumerate() {
        r[i] = lut[0][usize::from(px[0])];
        g[i] = lut[1][usize::from(px[1])];
        b[i] = lut[2][usize::from(px[2])];
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const ALL: [Orientation; 8] = [
        Orientation::NoTransforms,
        Orientation::Rotate90,
        Orientation::Rotate180,
        Orientation::Rotate270,
        Orientation::FlipHorizontal,
        Orientation::FlipVertical,
        Orientation::Rotate90FlipH,
        Orientation::Rotate270FlipH,
    ];

    pub(crate) fn pre(shorter: u32) -> Preprocess {
        Preprocess {
            resize_shorter_to: shorter,
            crop: crate::manifest::Crop::Center,
            mean: [0.5; 3],
            std: [0.25; 3],
            alpha_background: [0; 3],
        }
    }

    pub(crate) fn input(width: u32, height: u32) -> Input {
        Input {
            name: "input".into(),
            width,
            height,
        }
    }

    /// A smooth but asymmetric test pattern, so that every orientation looks different.
    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x * 7 + y * 3) % 256) as u8,
            ])
        })
    }

    /// The straightforward pipeline: orient, resize everything, crop.
    fn reference(img: &RgbImage, o: Orientation, shorter: u32, cw: u32, ch: u32) -> RgbImage {
        let mut d = DynamicImage::ImageRgb8(img.clone());
        d.apply_orientation(o);
        let full = d.into_rgb8();
        let (w, h) = full.dimensions();
        let (nw, nh) = scaled_size(w, h, shorter);
        let mut resized = RgbImage::new(nw, nh);
        Resizer::new()
            .resize(
                &full,
                &mut resized,
                &ResizeOptions::new().resize_alg(FILTER),
            )
            .unwrap();
        let (l, t) = ((nw - cw) / 2, (nh - ch) / 2);
        image::imageops::crop_imm(&resized, l, t, cw, ch).to_image()
    }

    #[test]
    fn crop_plan_matches_resize_then_crop_for_every_orientation() {
        for (w, h) in [(640, 427), (300, 900), (257, 256), (100, 100)] {
            let img = pattern(w, h);
            for o in ALL {
                for (cw, ch) in [(224, 224), (224, 160)] {
                    let fast = resize_and_crop(
                        &DecodedImage {
                            pixels: img.clone(),
                            orientation: o,
                            size: (w, h),
                            downscale: 1,
                        },
                        &pre(256),
                        &input(cw, ch),
                    )
                    .unwrap();
                    let slow = reference(&img, o, 256, cw, ch);
                    assert_eq!(fast.dimensions(), slow.dimensions(), "{w}x{h} {o:?}");
                    let max_diff = fast
                        .as_raw()
                        .iter()
                        .zip(slow.as_raw())
                        .map(|(a, b)| a.abs_diff(*b))
                        .max()
                        .unwrap();
                    assert!(
                        max_diff <= 1,
                        "{w}x{h} {o:?} crop {cw}x{ch}: max diff {max_diff}"
                    );
                }
            }
        }
    }

    /// A 1/8-scale image (each pixel the mean of an 8x8 block, as decoded from a progressive
    /// JPEG's DC scans) gives the same crop as the full image, for every orientation: the crop
    /// rectangle is mapped into block units, partial edge blocks included. (Measured: mean
    /// difference at most 0.19, max 1; half a block off gives 0.95 and 5.)
    #[test]
    fn one_eighth_scale_image_gives_the_same_crop() {
        for (w, h) in [(1203, 803), (805, 1601)] {
            let full = RgbImage::from_fn(w, h, |x, y| {
                let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
                let wave = 127.0 + 120.0 * (7.0 * u).sin() * (5.0 * v).cos();
                image::Rgb([(255.0 * u) as u8, (255.0 * v) as u8, wave as u8])
            });
            let blocks = crate::jpeg_dc::block_means(&full);
            for o in ALL {
                let crop = |pixels: &RgbImage, downscale| {
                    let image = DecodedImage {
                        pixels: pixels.clone(),
                        orientation: o,
                        size: (w, h),
                        downscale,
                    };
                    resize_and_crop(&image, &pre(64), &input(56, 48)).unwrap()
                };
                let (a, b) = (crop(&full, 1), crop(&blocks, 8));
                assert_eq!(a.dimensions(), b.dimensions(), "{w}x{h} {o:?}");
                let (mean, max) = crate::jpeg_dc::differences(&a, &b);
                assert!(
                    mean < 0.4 && max <= 2,
                    "{w}x{h} {o:?}: mean {mean:.2}, max {max}"
                );
            }
        }
    }

    #[test]
    fn extreme_aspect_ratio_stays_small() {
        let img = DecodedImage {
            pixels: pattern(1, 16_000),
            orientation: Orientation::Rotate90,
            size: (1, 16_000),
            downscale: 1,
        };
        let out = resize_and_crop(&img, &pre(256), &input(224, 224)).unwrap();
        assert_eq!(out.dimensions(), (224, 224));
    }

    #[test]
    fn longer_side_rounds_half_up() {
        assert_eq!(scaled_size(512, 342, 256), (383, 256)); // 383.25
        assert_eq!(scaled_size(342, 513, 256), (256, 384)); // 383.99
        assert_eq!(scaled_size(200, 300, 256), (256, 384));
        assert_eq!(scaled_size(2, 3, 256), (256, 384));
        assert_eq!(scaled_size(4, 5, 2), (2, 3)); // 2.5 -> 3
    }

    #[test]
    fn normalises_to_chw() {
        let crop = RgbImage::from_fn(2, 1, |x, _| image::Rgb([255 * x as u8, 0, 128]));
        let mut out = vec![0.0; 6];
        normalise_into(&crop, &pre(256), &mut out);
        let v128 = (128.0 / 255.0 - 0.5) / 0.25;
        assert_eq!(out, vec![-2.0, 2.0, -2.0, -2.0, v128, v128]);
    }
}
