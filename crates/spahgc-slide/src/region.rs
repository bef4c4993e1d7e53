//! Reading any level-0 rectangle at any output size, from the best pyramid level.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{Rgb, imageops};

use crate::{RgbImage, Slide, SlideError};

/// Largest image one request may build, in pixels (a 16k × 16k canvas, 768 MiB of RGB).
const MAX_CANVAS_PIXELS: u64 = 1 << 28;

/// A rectangle in level-0 pixels; it may extend past the slide's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub width: u64,
    pub height: u64,
}

/// Reads the part of `rect` that lies on the slide at full level-0 resolution: the pixels and
/// their top-left corner (what a host hands to a prediction of pixels it holds).
pub fn read_on_slide(slide: &dyn Slide, rect: Rect) -> Result<(RgbImage, (u64, u64)), SlideError> {
    let (slide_w, slide_h) = slide.dimensions();
    let part = part_on_slide(rect, (slide_w, slide_h));
    let size = part.map(|(x0, y0, x1, y1)| (u32::try_from(x1 - x0), u32::try_from(y1 - y0)));
    let (Some((x0, y0, _, _)), Some((Ok(width), Ok(height)))) = (part, size) else {
        return Err(SlideError::BadRegion(format!(
            "region {}×{} at {},{} holds no pixels of the {slide_w}×{slide_h} slide that one read can take",
            rect.width, rect.height, rect.x, rect.y
        )));
    };
    let on_slide = Rect { x: x0 as i64, y: y0 as i64, width: u64::from(width), height: u64::from(height) };
    Ok((read_region(slide, on_slide, width, height)?, (x0, y0)))
}

/// The part of `rect` on a slide of `dimensions`, as level-0 corners `(x0, y0, x1, y1)`, or
/// `None` when no pixel of it is.
fn part_on_slide(rect: Rect, (slide_w, slide_h): (u64, u64)) -> Option<(u64, u64, u64, u64)> {
    let x0 = rect.x.clamp(0, slide_w as i64) as u64;
    let y0 = rect.y.clamp(0, slide_h as i64) as u64;
    let x1 = rect.x.saturating_add(rect.width as i64).clamp(0, slide_w as i64) as u64;
    let y1 = rect.y.saturating_add(rect.height as i64).clamp(0, slide_h as i64) as u64;
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
}

/// Reads `rect` resampled to `out_width` × `out_height` pixels.
///
/// The read uses the coarsest pyramid level that is still at least as fine as the output, so a
/// downsampled request never decodes full-resolution tiles it does not need. Parts of `rect`
/// outside the slide are white (empty glass).
pub fn read_region(slide: &dyn Slide, rect: Rect, out_width: u32, out_height: u32) -> Result<RgbImage, SlideError> {
    if rect.width == 0 || rect.height == 0 || out_width == 0 || out_height == 0 {
        return Err(SlideError::BadRegion(format!(
            "region {}×{} read as {out_width}×{out_height}: sizes must be positive",
            rect.width, rect.height
        )));
    }
    let wanted = (rect.width as f64 / f64::from(out_width)).min(rect.height as f64 / f64::from(out_height));
    let downsamples = slide.level_downsamples();
    let (level, ds) =
        downsamples.iter().copied().enumerate().rfind(|&(_, ds)| ds <= wanted * (1.0 + 1e-6)).unwrap_or((0, 1.0));
    let canvas_w = (rect.width as f64 / ds).ceil() as u64;
    let canvas_h = (rect.height as f64 / ds).ceil() as u64;
    if canvas_w * canvas_h > MAX_CANVAS_PIXELS {
        return Err(SlideError::BadRegion(format!(
            "region {}×{} at level {level} needs a {canvas_w}×{canvas_h} image, more than the {MAX_CANVAS_PIXELS}-pixel limit",
            rect.width, rect.height
        )));
    }
    let canvas = if let Some((x0, y0, x1, y1)) = part_on_slide(rect, slide.dimensions()) {
        let read_w = (((x1 - x0) as f64 / ds).round() as u32).max(1);
        let read_h = (((y1 - y0) as f64 / ds).round() as u32).max(1);
        let part = slide.read_level(level, x0, y0, read_w, read_h)?;
        let dx = ((x0 as i64 - rect.x) as f64 / ds).round() as i64;
        let dy = ((y0 as i64 - rect.y) as f64 / ds).round() as i64;
        if (dx, dy) == (0, 0) && part.dimensions() == (canvas_w as u32, canvas_h as u32) {
            // The read covers the whole rectangle: no glass to add around it.
            part
        } else {
            let mut canvas = RgbImage::from_pixel(canvas_w as u32, canvas_h as u32, Rgb([255, 255, 255]));
            imageops::replace(&mut canvas, &part, dx, dy);
            canvas
        }
    } else {
        RgbImage::from_pixel(canvas_w as u32, canvas_h as u32, Rgb([255, 255, 255]))
    };
    if canvas.dimensions() == (out_width, out_height) {
        return Ok(canvas);
    }
    // Bilinear convolution whose support widens with the scale factor, so downsampling averages
    // every source pixel (no aliasing); SIMD, several times faster than `image`'s resize.
    let mut out = RgbImage::new(out_width, out_height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    Resizer::new().resize(&canvas, &mut out, &options).map_err(|e| {
        SlideError::BadRegion(format!(
            "resampling {}×{} to {out_width}×{out_height}: {e}",
            canvas.width(),
            canvas.height()
        ))
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageSlide;

    /// A 50×40 image whose pixel (x, y) is (x, y, 7).
    fn gradient() -> ImageSlide {
        let img = RgbImage::from_fn(50, 40, |x, y| Rgb([x as u8, y as u8, 7]));
        ImageSlide::from_pixels("gradient".into(), img)
    }

    #[test]
    fn an_inside_region_is_an_exact_crop() {
        let out = read_region(&gradient(), Rect { x: 10, y: 5, width: 8, height: 6 }, 8, 6).unwrap();
        assert_eq!(out.get_pixel(0, 0), &Rgb([10, 5, 7]));
        assert_eq!(out.get_pixel(7, 5), &Rgb([17, 10, 7]));
    }

    #[test]
    fn outside_the_slide_is_white() {
        let out = read_region(&gradient(), Rect { x: -2, y: 38, width: 4, height: 4 }, 4, 4).unwrap();
        assert_eq!(out.get_pixel(0, 0), &Rgb([255, 255, 255]));
        assert_eq!(out.get_pixel(2, 0), &Rgb([0, 38, 7]));
        assert_eq!(out.get_pixel(3, 1), &Rgb([1, 39, 7]));
        assert_eq!(out.get_pixel(3, 2), &Rgb([255, 255, 255]));
    }

    #[test]
    fn empty_and_huge_regions_are_refused() {
        let slide = gradient();
        assert!(read_region(&slide, Rect { x: 0, y: 0, width: 0, height: 4 }, 4, 4).is_err());
        let huge = Rect { x: 0, y: 0, width: 1 << 20, height: 1 << 20 };
        assert!(matches!(read_region(&slide, huge, 1 << 20, 1 << 20), Err(SlideError::BadRegion(_))));
    }
}
