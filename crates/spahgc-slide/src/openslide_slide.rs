//! Whole-slide images read region by region through OpenSlide.

use std::path::{Path, PathBuf};

use openslide_rs::{Address, OpenSlide, Region, Size};

use crate::{RgbImage, Slide, SlideError};

/// A whole-slide image (SVS, NDPI, MRXS, tiled TIFF, ...) opened with OpenSlide.
pub struct WsiSlide {
    path: PathBuf,
    slide: OpenSlide,
}

impl WsiSlide {
    /// Whether OpenSlide recognises the file's format.
    pub fn recognises(path: &Path) -> bool {
        OpenSlide::detect_vendor(path).is_ok()
    }

    /// Opens the slide; its tiles are decoded only when read.
    pub fn open(path: &Path) -> Result<Self, SlideError> {
        let slide = OpenSlide::new(path).map_err(|e| SlideError::Open { path: path.into(), reason: e.to_string() })?;
        Ok(Self { path: path.into(), slide })
    }
}

impl Slide for WsiSlide {
    fn path(&self) -> &Path {
        &self.path
    }

    fn dimensions(&self) -> (u64, u64) {
        let size = self.slide.all_level_dimensions()[0];
        (u64::from(size.w), u64::from(size.h))
    }

    fn microns_per_pixel(&self) -> Option<f64> {
        let mpp = |axis: &str| self.slide.property_value(&format!("openslide.mpp-{axis}")).ok()?.parse::<f64>().ok();
        // Square pixels are the norm; average the axes when a scanner records slightly different ones.
        match (mpp("x"), mpp("y")) {
            (Some(x), Some(y)) if x > 0.0 && y > 0.0 => Some((x + y) / 2.0),
            (Some(v), None) | (None, Some(v)) if v > 0.0 => Some(v),
            _ => None,
        }
    }

    fn level_downsamples(&self) -> Vec<f64> {
        self.slide.all_level_downsamples().to_vec()
    }

    fn read_level(&self, level: usize, x: u64, y: u64, width: u32, height: u32) -> Result<RgbImage, SlideError> {
        let read_err = |reason: String| SlideError::Read { path: self.path.clone(), reason };
        let coord =
            |v: u64| u32::try_from(v).map_err(|_| read_err(format!("coordinate {v} exceeds OpenSlide's range")));
        let region = Region {
            size: Size { w: width, h: height },
            level: level as u32,
            address: Address { x: coord(x)?, y: coord(y)? },
        };
        let bgra = self.slide.read_region(&region).map_err(|e| read_err(e.to_string()))?;
        // Premultiplied BGRA composited over white: the glass where no tissue was scanned.
        let mut rgb = Vec::with_capacity(bgra.len() / 4 * 3);
        for p in bgra.chunks_exact(4) {
            let clear = 255 - p[3];
            rgb.extend_from_slice(&[
                p[2].saturating_add(clear),
                p[1].saturating_add(clear),
                p[0].saturating_add(clear),
            ]);
        }
        RgbImage::from_raw(width, height, rgb).ok_or_else(|| read_err("OpenSlide returned a short buffer".into()))
    }
}
