//! Slides and the square patches cut from them around spot centres.
//!
//! A [`Slide`] is a level-0 pixel plane, possibly with a pyramid of downsampled levels. Plain
//! images (JPEG, PNG, TIFF) are held in memory (JPEGs with restart markers on block rows decoded
//! band by band as they are read, others at open); whole-slide images go through OpenSlide
//! (feature `openslide`, on by default) and are read region by region, never a whole level.
//! [`PatchGeometry`] turns a spot centre into the patch an encoder sees.

mod buffer;
mod error;
mod identity;
mod image_slide;
#[cfg(feature = "openslide")]
mod openslide_slide;
mod patch;
mod region;
mod restart_jpeg;
mod tissue;

use std::path::Path;

pub use buffer::{BufferError, BufferSlide, MAX_BUFFER_PIXELS, MAX_COORDINATE, PixelBuffer, PixelFormat};
pub use error::SlideError;
pub use identity::content_id;
pub use image_slide::ImageSlide;
#[cfg(feature = "openslide")]
pub use openslide_slide::WsiSlide;
pub use patch::PatchGeometry;
pub use region::{Rect, read_on_slide, read_region};
pub use tissue::TissueMask;

/// Pixels as the encoders take them: 8-bit RGB, row-major.
pub type RgbImage = image::RgbImage;

/// A readable slide: a level-0 image plus optional downsampled levels.
pub trait Slide: Send + Sync {
    /// The file the slide was opened from.
    fn path(&self) -> &Path;
    /// Level-0 width and height in pixels.
    fn dimensions(&self) -> (u64, u64);
    /// Level-0 resolution in µm per pixel, when the file records it.
    fn microns_per_pixel(&self) -> Option<f64>;
    /// Downsample factor of each level relative to level 0, level 0 first (always `1.0`).
    fn level_downsamples(&self) -> Vec<f64>;
    /// Reads `width` × `height` pixels of `level` whose top-left corner is at level-0 pixel
    /// (`x`, `y`). The caller keeps the request inside the slide; [`read_region`] does that.
    fn read_level(&self, level: usize, x: u64, y: u64, width: u32, height: u32) -> Result<RgbImage, SlideError>;
    /// Whether a read costs no more than copying its pixels (an image held in memory): then
    /// reading many patches in one block saves nothing.
    fn reads_are_copies(&self) -> bool {
        false
    }
    /// Says that these level-0 rectangles (possibly past the edges) are about to be read, so a
    /// slide that decodes lazily can decode them now, all at once and on several threads.
    fn prefetch(&self, rects: &[Rect]) -> Result<(), SlideError> {
        let _ = rects;
        Ok(())
    }
}

/// Opens a slide, choosing the reader by what the file is.
///
/// JPEG and PNG files are decoded with the `image` crate. Anything else is offered to OpenSlide
/// first (when built in), which recognises SVS, NDPI, MRXS, SCN, BIF and tiled TIFF; a file
/// OpenSlide does not recognise falls back to the `image` crate (plain TIFF, PNG, JPEG).
pub fn open(path: &Path) -> Result<Box<dyn Slide>, SlideError> {
    if !path.is_file() {
        return Err(SlideError::Open { path: path.into(), reason: "no such file".into() });
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    #[cfg(feature = "openslide")]
    if !matches!(ext.as_str(), "jpg" | "jpeg" | "png") && WsiSlide::recognises(path) {
        return Ok(Box::new(WsiSlide::open(path)?));
    }
    #[cfg(not(feature = "openslide"))]
    let _ = ext;
    Ok(Box::new(ImageSlide::open(path)?))
}
