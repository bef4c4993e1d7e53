//! Plain images (JPEG, PNG, TIFF) held in memory as one level.

use std::path::{Path, PathBuf};

use std::io::Cursor;

use image::{ImageFormat, ImageReader};

use crate::{RgbImage, Slide, SlideError};

/// A plain image decoded once into memory (her2st H&E JPEGs, PNG crops, strip TIFFs).
#[derive(Debug)]
pub struct ImageSlide {
    path: PathBuf,
    pixels: RgbImage,
}

impl ImageSlide {
    /// Decodes the whole image; a truncated or corrupt file is an error, not a grey patch.
    pub fn open(path: &Path) -> Result<Self, SlideError> {
        let open_err = |reason: String| SlideError::Open { path: path.into(), reason };
        let bytes = std::fs::read(path).map_err(|e| open_err(e.to_string()))?;
        let reader =
            ImageReader::new(Cursor::new(&bytes)).with_guessed_format().map_err(|e| open_err(e.to_string()))?;
        match reader.format() {
            None => {
                return Err(open_err(
                    "not an image format spahgc reads (JPEG, PNG, TIFF) nor a whole-slide image".into(),
                ));
            }
            // The JPEG decoder fills a truncated scan with grey instead of failing, so check the
            // end-of-image marker: it cannot occur inside entropy-coded data (0xFF is stuffed there).
            Some(ImageFormat::Jpeg) if !has_jpeg_end_marker(&bytes) => {
                return Err(open_err(format!("truncated JPEG: {} bytes and no end-of-image marker", bytes.len())));
            }
            Some(_) => {}
        }
        let pixels = reader.decode().map_err(|e| open_err(e.to_string()))?.into_rgb8();
        Ok(Self { path: path.into(), pixels })
    }

    /// Wraps pixels the caller already holds.
    pub fn from_pixels(path: PathBuf, pixels: RgbImage) -> Self {
        Self { path, pixels }
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
        (u64::from(self.pixels.width()), u64::from(self.pixels.height()))
    }

    fn microns_per_pixel(&self) -> Option<f64> {
        None
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
        Ok(image::imageops::crop_imm(&self.pixels, x as u32, y as u32, width, height).to_image())
    }
}
