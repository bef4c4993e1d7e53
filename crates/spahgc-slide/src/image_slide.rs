//! Plain images (JPEG, PNG, TIFF) held in memory as one level.

use std::io::Cursor;
use std::ops::Range;
use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader};

use crate::restart_jpeg::BandedJpeg;
use crate::{Rect, RgbImage, Slide, SlideError};

/// A plain image in memory (her2st H&E JPEGs, PNG crops, strip TIFFs).
#[derive(Debug)]
pub struct ImageSlide {
    path: PathBuf,
    pixels: Pixels,
}

/// An image decoded at open, or a JPEG decoded band by band as reads reach it.
#[derive(Debug)]
enum Pixels {
    Decoded(RgbImage),
    Banded(BandedJpeg),
}

impl ImageSlide {
    /// Opens an image: a JPEG with a restart marker on every row of blocks is indexed and its
    /// rows decoded when first read; anything else is decoded whole. A truncated or corrupt file
    /// is an error (at open, or at the read of a damaged band), not a grey patch.
    pub fn open(path: &Path) -> Result<Self, SlideError> {
        let open_err = |reason: String| SlideError::Open { path: path.into(), reason };
        let mut bytes = std::fs::read(path).map_err(|e| open_err(e.to_string()))?;
        let format = ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| open_err(e.to_string()))?
            .format()
            .ok_or_else(|| {
                open_err("not an image format spahgc reads (JPEG, PNG, TIFF) nor a whole-slide image".into())
            })?;
        if format == ImageFormat::Jpeg {
            // The JPEG decoder fills a truncated scan with grey instead of failing, so check the
            // end-of-image marker: it cannot occur inside entropy-coded data (0xFF is stuffed there).
            if !has_jpeg_end_marker(&bytes) {
                return Err(open_err(format!("truncated JPEG: {} bytes and no end-of-image marker", bytes.len())));
            }
            bytes = match BandedJpeg::new(path, bytes) {
                Ok(banded) => return Ok(Self { path: path.into(), pixels: Pixels::Banded(banded) }),
                Err(bytes) => bytes,
            };
        }
        let pixels = image::load_from_memory_with_format(&bytes, format).map_err(|e| open_err(e.to_string()))?;
        Ok(Self::from_pixels(path.into(), pixels.into_rgb8()))
    }

    /// Wraps pixels the caller already holds.
    pub fn from_pixels(path: PathBuf, pixels: RgbImage) -> Self {
        Self { path, pixels: Pixels::Decoded(pixels) }
    }
}

/// Whether a JPEG ends with its end-of-image marker (trailing zero padding allowed).
fn has_jpeg_end_marker(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

impl Slide for ImageSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn dimensions(&self) -> (u64, u64) {
        let (w, h) = match &self.pixels {
            Pixels::Decoded(image) => image.dimensions(),
            Pixels::Banded(jpeg) => jpeg.dimensions(),
        };
        (u64::from(w), u64::from(h))
    }

    fn microns_per_pixel(&self) -> Option<f64> {
        None
    }

    fn reads_are_copies(&self) -> bool {
        true
    }

    fn level_downsamples(&self) -> Vec<f64> {
        vec![1.0]
    }

    fn read_level(&self, level: usize, x: u64, y: u64, width: u32, height: u32) -> Result<RgbImage, SlideError> {
        let (w, h) = self.dimensions();
        if level != 0 || x + u64::from(width) > w || y + u64::from(height) > h {
            return Err(SlideError::BadRegion(format!(
                "level {level} ({x}, {y}) {width}×{height} is outside the {w}×{h} image {}",
                self.path.display()
            )));
        }
        match &self.pixels {
            Pixels::Decoded(image) => {
                Ok(image::imageops::crop_imm(image, x as u32, y as u32, width, height).to_image())
            }
            Pixels::Banded(jpeg) => jpeg.read(x as u32, y as u32, width, height),
        }
    }

    fn prefetch(&self, rects: &[Rect]) -> Result<(), SlideError> {
        let Pixels::Banded(jpeg) = &self.pixels else { return Ok(()) };
        let height = jpeg.dimensions().1;
        let rows: Vec<Range<u32>> = rects
            .iter()
            .map(|r| {
                let row = |y: i64| y.clamp(0, i64::from(height)) as u32;
                row(r.y)..row(r.y.saturating_add(r.height as i64))
            })
            .collect();
        jpeg.decode_rows(&rows)
    }
}
