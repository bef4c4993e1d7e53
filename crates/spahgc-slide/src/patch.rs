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
