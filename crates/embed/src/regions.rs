//! Region crops: windows of the picture, each cut out and run through the model on its own,
//! as the "region crops" options of `bench/descriptor_options.py` do. A stored picture's
//! regions find a query that is a part of it (a crop); a query's regions find a stored
//! picture pasted inside a larger one.

use image::imageops::crop_imm;
use image::DynamicImage;

use crate::decode::decode_for_size;
use crate::manifest::{Input, Preprocess};
use crate::preprocess::{normalise_into, resize_and_crop, swaps_axes};
use crate::{DecodedImage, EmbedError, Embedder, Timings};

/// A window of the (oriented) picture, as fractions of its width and height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// The whole picture plus the windows cropped by [`Embedder::embed_regions`].
pub const REGION_COUNT: usize = 14;

/// `REGIONS` of `bench/descriptor_options.py`: the whole picture, a 2x2 grid of windows of 2/3
/// of each side and a 3x3 grid of windows of 1/2 of each side (R-MAC's uniform sampling at
/// three scales), row by row.
pub fn region_boxes() -> [RegionBox; REGION_COUNT] {
    let mut boxes = [RegionBox {
        left: 0.0,
        top: 0.0,
        width: 1.0,
        height: 1.0,
    }; REGION_COUNT];
    let mut next = 1;
    for (grid, side) in [(2, 2.0 / 3.0), (3, 0.5)] {
        let step = (1.0 - side) / f64::from(grid - 1);
        for i in 0..grid {
            for j in 0..grid {
                boxes[next] = RegionBox {
                    left: f64::from(j) * step,
                    top: f64::from(i) * step,
                    width: side,
                    height: side,
                };
                next += 1;
            }
        }
    }
    boxes
}

/// The pixel rectangle (x0, y0, x1, y1) of `region` in a `width` x `height` picture, rounded as
/// the Python evaluation does (Python's `round`, ties to even; at least one pixel).
fn pixel_box(region: &RegionBox, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let round = |v: f64| v.round_ties_even() as u32;
    let (x0, y0) = (round(region.left * w), round(region.top * h));
    let x1 = round((region.left + region.width) * w).max(x0 + 1);
    let y1 = round((region.top + region.height) * h).max(y0 + 1);
    (x0, y0, x1.min(width), y1.min(height))
}

/// Each region of [`region_boxes`] but the first (the whole picture) cut out of the oriented
/// picture and pre-processed as a picture of its own: shorter side resized, centre crop.
pub(crate) fn region_inputs(
    image: &DecodedImage,
    pre: &Preprocess,
    input: &Input,
) -> Result<Vec<image::RgbImage>, EmbedError> {
    let mut oriented = DynamicImage::ImageRgb8(image.pixels.clone());
    oriented.apply_orientation(image.orientation);
    let pixels = oriented.into_rgb8();
    // Full-resolution size of the oriented picture; `pixels` may be 1/`downscale` of it.
    let (width, height) = if swaps_axes(image.orientation) {
        (image.size.1, image.size.0)
    } else {
        image.size
    };
    let scale = image.downscale;
    region_boxes()[1..]
        .iter()
        .map(|region| {
            let (x0, y0, x1, y1) = pixel_box(region, width, height);
            // The same rectangle in the decoded pixels (rounded outwards at 1/8 scale).
            let (px0, py0) = (x0 / scale, y0 / scale);
            let px1 = x1.div_ceil(scale).clamp(px0 + 1, pixels.width());
            let py1 = y1.div_ceil(scale).clamp(py0 + 1, pixels.height());
            let cut = DecodedImage {
                pixels: crop_imm(&pixels, px0, py0, px1 - px0, py1 - py0).to_image(),
                orientation: image::metadata::Orientation::NoTransforms,
                size: (x1 - x0, y1 - y0),
                downscale: scale,
            };
            resize_and_crop(&cut, pre, input)
        })
        .collect()
}

impl Embedder {
    /// Descriptors of the regions of [`region_boxes`] after the first, in that order: each
    /// region cut out of the picture and embedded like a picture of its own (13 model runs).
    /// The whole picture's descriptor is [`Embedder::embed`]'s.
    pub fn embed_regions(&self, bytes: &[u8]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let pre = &self.manifest().preprocess;
        let input = &self.manifest().input;
        // The smallest regions are half of each side: decode enough pixels for them.
        let image = decode_for_size(
            bytes,
            &self.limits,
            pre.alpha_background,
            pre.resize_shorter_to.saturating_mul(2),
        )?;
        let crops = region_inputs(&image, pre, input)?;
        drop(image);
        let mut timings = Timings::default();
        let mut tensor = vec![0.0; self.input_len()];
        crops
            .iter()
            .map(|crop| {
                normalise_into(crop, pre, &mut tensor);
                let rows = self.infer(&tensor, &self.descriptor_outputs(), &mut timings)?;
                self.descriptor(&rows)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::tests::{input, pre};
    use image::metadata::Orientation;
    use image::{Rgb, RgbImage};

    /// Each pixel says where it is, so a crop shows which part of the picture it came from.
    fn coordinates(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 0])
        })
    }

    fn decoded(pixels: RgbImage, orientation: Orientation) -> DecodedImage {
        let size = pixels.dimensions();
        DecodedImage {
            pixels,
            orientation,
            size,
            downscale: 1,
        }
    }

    #[test]
    fn boxes_are_the_python_evaluations_regions() {
        let boxes = region_boxes();
        assert_eq!(
            boxes[0],
            RegionBox {
                left: 0.0,
                top: 0.0,
                width: 1.0,
                height: 1.0
            }
        );
        // Python computes the step as (1 - 2/3) / 1 too: 0.33333333333333337.
        let third = 1.0 - 2.0 / 3.0;
        let expect_2x2 = [(0.0, 0.0), (third, 0.0), (0.0, third), (third, third)];
        for (b, (l, t)) in boxes[1..5].iter().zip(expect_2x2) {
            assert_eq!(
                (b.left, b.top, b.width, b.height),
                (l, t, 2.0 / 3.0, 2.0 / 3.0)
            );
        }
        for (k, b) in boxes[5..].iter().enumerate() {
            let (i, j) = (k / 3, k % 3);
            assert_eq!(
                (b.left, b.top),
                (j as f64 * 0.25, i as f64 * 0.25),
                "region {}",
                k + 5
            );
            assert_eq!((b.width, b.height), (0.5, 0.5));
        }
    }

    #[test]
    fn pixel_boxes_round_like_python_and_stay_inside() {
        let boxes = region_boxes();
        // Python: round(1/3 * 640) = 213, round(2/3 * 640) = 427.
        assert_eq!(pixel_box(&boxes[4], 640, 480), (213, 160, 640, 480));
        assert_eq!(pixel_box(&boxes[1], 640, 480), (0, 0, 427, 320));
        // 0.5 * 5 = 2.5 rounds to even (2), 0.25 * 5 = 1.25 to 1.
        assert_eq!(pixel_box(&boxes[9], 5, 5), (1, 1, 4, 4));
        for b in &boxes {
            let (x0, y0, x1, y1) = pixel_box(b, 1, 1);
            assert!(x0 < x1 && y0 < y1 && x1 <= 1 && y1 <= 1, "{b:?}");
        }
    }

    #[test]
    fn each_crop_comes_from_its_region() {
        let img = coordinates(600, 400);
        let crops = region_inputs(
            &decoded(img, Orientation::NoTransforms),
            &pre(64),
            &input(56, 56),
        )
        .unwrap();
        assert_eq!(crops.len(), REGION_COUNT - 1);
        for (crop, b) in crops.iter().zip(&region_boxes()[1..]) {
            assert_eq!(crop.dimensions(), (56, 56));
            // The crop's centre pixel encodes the region's centre (within the resize's blur).
            let centre = crop.get_pixel(28, 28);
            let (cx, cy) = (b.left + b.width / 2.0, b.top + b.height / 2.0);
            assert!(
                (f64::from(centre[0]) / 255.0 - cx).abs() < 0.02,
                "{b:?} {centre:?}"
            );
            assert!(
                (f64::from(centre[1]) / 255.0 - cy).abs() < 0.02,
                "{b:?} {centre:?}"
            );
        }
    }

    #[test]
    fn regions_are_taken_from_the_oriented_picture() {
        // Stored 400x600 with a 90-degree rotation: the picture is 600x400 once oriented.
        let upright = coordinates(600, 400);
        let mut stored = DynamicImage::ImageRgb8(upright.clone());
        stored.apply_orientation(Orientation::Rotate270);
        let stored = stored.into_rgb8();
        assert_eq!(stored.dimensions(), (400, 600));
        let rotated = region_inputs(
            &decoded(stored, Orientation::Rotate90),
            &pre(64),
            &input(56, 56),
        )
        .unwrap();
        let plain = region_inputs(
            &decoded(upright, Orientation::NoTransforms),
            &pre(64),
            &input(56, 56),
        )
        .unwrap();
        assert_eq!(rotated, plain);
    }

    #[test]
    fn a_downscaled_decode_gives_nearly_the_full_scale_crops() {
        let full = coordinates(1600, 1200);
        let mut small = RgbImage::new(200, 150);
        fast_image_resize::Resizer::new()
            .resize(&full, &mut small, &fast_image_resize::ResizeOptions::new())
            .unwrap();
        let at_eighth = DecodedImage {
            pixels: small,
            orientation: Orientation::NoTransforms,
            size: (1600, 1200),
            downscale: 8,
        };
        let a = region_inputs(&at_eighth, &pre(64), &input(56, 56)).unwrap();
        let b = region_inputs(
            &decoded(full, Orientation::NoTransforms),
            &pre(64),
            &input(56, 56),
        )
        .unwrap();
        for (x, y) in a.iter().zip(&b) {
            let worst = x
                .as_raw()
                .iter()
                .zip(y.as_raw())
                .map(|(p, q)| p.abs_diff(*q))
                .max()
                .unwrap();
            assert!(worst <= 12, "largest difference {worst}");
        }
    }

    #[test]
    fn a_one_pixel_picture_still_has_every_region() {
        let crops = region_inputs(
            &decoded(coordinates(1, 1), Orientation::NoTransforms),
            &pre(64),
            &input(56, 56),
        )
        .unwrap();
        assert_eq!(crops.len(), REGION_COUNT - 1);
        assert!(crops.iter().all(|c| c.dimensions() == (56, 56)));
    }
}
