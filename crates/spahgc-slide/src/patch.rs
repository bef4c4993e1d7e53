//! Square patches around spot centres, at the resolution an encoder expects.

use crate::{Rect, RgbImage, Slide, SlideError, read_region};

/// What an encoder sees of a spot: a square of `field_of_view_um` µm around the spot centre,
/// resampled to `size_px` × `size_px` pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchGeometry {
    pub field_of_view_um: f64,
    pub size_px: u32,
}

impl PatchGeometry {
    /// The level-0 square a patch covers on a slide of `microns_per_pixel` µm/px.
    ///
    /// Its side is the field of view in slide pixels rounded to whole pixels, and it is centred
    /// on (`x`, `y`) to the nearest pixel. When that side equals `size_px` (an encoder trained at
    /// the slide's resolution) the patch is an exact crop, with no resampling.
    pub fn rect_around(&self, x: f64, y: f64, microns_per_pixel: f64) -> Result<Rect, SlideError> {
        if !(microns_per_pixel.is_finite() && microns_per_pixel > 0.0) {
            return Err(SlideError::BadRegion(format!(
                "resolution must be a positive number of µm per pixel, got {microns_per_pixel}"
            )));
        }
        if !(x.is_finite() && y.is_finite()) {
            return Err(SlideError::BadRegion(format!("patch centre ({x}, {y}) is not a finite point")));
        }
        let side = (self.field_of_view_um / microns_per_pixel).round().max(1.0);
        Ok(Rect {
            x: (x - side / 2.0).round() as i64,
            y: (y - side / 2.0).round() as i64,
            width: side as u64,
            height: side as u64,
        })
    }

    /// Cuts the patch centred on level-0 pixel (`x`, `y`).
    pub fn extract(&self, slide: &dyn Slide, microns_per_pixel: f64, x: f64, y: f64) -> Result<RgbImage, SlideError> {
        let rect = self.rect_around(x, y, microns_per_pixel)?;
        read_region(slide, rect, self.size_px, self.size_px)
    }

    /// Cuts the patches centred on `centres`, pixel for pixel what [`Self::extract`] gives.
    ///
    /// Neighbouring patches of a whole-slide image share tiles: when the patches are read from
    /// level 0 and their bounding box is not much larger than the patches themselves (a run of
    /// spots on a grid), the box is read once and the patches are cut from it in memory.
    pub fn extract_many(
        &self,
        slide: &dyn Slide,
        microns_per_pixel: f64,
        centres: &[(f64, f64)],
    ) -> Result<Vec<RgbImage>, SlideError> {
        let rects =
            centres.iter().map(|&(x, y)| self.rect_around(x, y, microns_per_pixel)).collect::<Result<Vec<_>, _>>()?;
        let block = match BlockSlide::around(slide, &rects, self.size_px)? {
            Some(block) => block,
            None => return rects.iter().map(|&r| read_region(slide, r, self.size_px, self.size_px)).collect(),
        };
        rects.iter().map(|&r| read_region(&block, r, self.size_px, self.size_px)).collect()
    }
}

/// A level-0 block of a slide held in memory, serving reads inside it and passing others on.
struct BlockSlide<'a> {
    slide: &'a dyn Slide,
    x: u64,
    y: u64,
    pixels: RgbImage,
}

impl<'a> BlockSlide<'a> {
    /// Reads the bounding box of `rects` (clipped to the slide) when the patches come from level
    /// 0, the slide is not held in memory anyway, and the box is at most four times their total
    /// area; `None` when that does not pay.
    fn around(slide: &'a dyn Slide, rects: &[Rect], size_px: u32) -> Result<Option<Self>, SlideError> {
        let Some(first) = rects.first() else { return Ok(None) };
        let downsamples = slide.level_downsamples();
        let wanted = first.width as f64 / f64::from(size_px);
        if rects.len() < 2
            || slide.reads_are_copies()
            || downsamples.get(1).is_some_and(|&ds| ds <= wanted * (1.0 + 1e-6))
        {
            return Ok(None);
        }
        let (w, h) = slide.dimensions();
        let clip = |v: i64, max: u64| v.clamp(0, max as i64) as u64;
        let x0 = clip(rects.iter().map(|r| r.x).min().unwrap_or(0), w);
        let y0 = clip(rects.iter().map(|r| r.y).min().unwrap_or(0), h);
        let x1 = clip(rects.iter().map(|r| r.x + r.width as i64).max().unwrap_or(0), w);
        let y1 = clip(rects.iter().map(|r| r.y + r.height as i64).max().unwrap_or(0), h);
        let area: u64 = rects.iter().map(|r| r.width * r.height).sum();
        let block = (x1.saturating_sub(x0)) * (y1.saturating_sub(y0));
        if block == 0 || block > 4 * area || block > 1 << 26 {
            return Ok(None);
        }
        let pixels = slide.read_level(0, x0, y0, (x1 - x0) as u32, (y1 - y0) as u32)?;
        Ok(Some(Self { slide, x: x0, y: y0, pixels }))
    }
}

impl Slide for BlockSlide<'_> {
    fn path(&self) -> &std::path::Path {
        self.slide.path()
    }

    fn dimensions(&self) -> (u64, u64) {
        self.slide.dimensions()
    }

    fn microns_per_pixel(&self) -> Option<f64> {
        self.slide.microns_per_pixel()
    }

    fn level_downsamples(&self) -> Vec<f64> {
        self.slide.level_downsamples()
    }

    fn read_level(&self, level: usize, x: u64, y: u64, width: u32, height: u32) -> Result<RgbImage, SlideError> {
        let inside = level == 0
            && x >= self.x
            && y >= self.y
            && x + u64::from(width) <= self.x + u64::from(self.pixels.width())
            && y + u64::from(height) <= self.y + u64::from(self.pixels.height());
        if !inside {
            return self.slide.read_level(level, x, y, width, height);
        }
        let (dx, dy) = ((x - self.x) as u32, (y - self.y) as u32);
        Ok(image::imageops::crop_imm(&self.pixels, dx, dy, width, height).to_image())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageSlide;
    use image::Rgb;

    fn slide() -> ImageSlide {
        let img = RgbImage::from_fn(600, 500, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, ((x / 256) * 16 + y / 256) as u8])
        });
        ImageSlide::from_pixels("synthetic".into(), img)
    }

    #[test]
    fn a_patch_at_native_resolution_is_the_crop_around_its_centre() {
        let geometry = PatchGeometry { field_of_view_um: 154.56, size_px: 224 };
        let patch = geometry.extract(&slide(), 0.69, 300.4, 250.0).unwrap();
        assert_eq!(patch.dimensions(), (224, 224));
        // Left edge at round(300.4 - 112) = 188, top at 138.
        assert_eq!(patch.get_pixel(0, 0), &Rgb([188, 138, 0]));
        assert_eq!(patch.get_pixel(223, 223), &Rgb([155, 105, 17]));
    }

    #[test]
    fn a_coarser_encoder_resolution_downsamples_the_same_field() {
        // 2 µm/px of field over a 1 µm/px slide: 100 slide px become 50 patch px.
        let geometry = PatchGeometry { field_of_view_um: 100.0, size_px: 50 };
        let patch = geometry.extract(&slide(), 1.0, 100.0, 100.0).unwrap();
        assert_eq!(patch.dimensions(), (50, 50));
        let red = patch.get_pixel(25, 10)[0];
        assert!((99..=102).contains(&red), "centre column averages slide x≈100..101, got {red}");
    }

    #[test]
    fn bad_resolutions_and_centres_are_errors() {
        let geometry = PatchGeometry { field_of_view_um: 100.0, size_px: 50 };
        assert!(geometry.rect_around(1.0, 1.0, 0.0).is_err());
        assert!(geometry.rect_around(1.0, 1.0, f64::NAN).is_err());
        assert!(geometry.rect_around(f64::INFINITY, 1.0, 1.0).is_err());
    }
}
