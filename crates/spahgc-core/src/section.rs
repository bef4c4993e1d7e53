//! A section: spots with centres on an image and their measured counts.

use std::path::PathBuf;

use crate::CountMatrix;

/// One measured spot.
#[derive(Debug, Clone, PartialEq)]
pub struct Spot {
    /// Identifier unique within its section (her2st: `"{x}x{y}"`, Visium: the barcode).
    pub id: String,
    /// Spot centre in level-0 pixels of the section's image (x to the right, y down).
    pub x: f64,
    pub y: f64,
}

/// A spatial-transcriptomics section: spots, their counts, and the image they sit on.
#[derive(Debug, Clone)]
pub struct Section {
    /// Section name (her2st: `"C3"`; Visium: the directory name).
    pub name: String,
    pub spots: Vec<Spot>,
    /// Raw counts, one row per entry of `spots`.
    pub counts: CountMatrix,
    /// The H&E image the spot centres refer to, if known.
    pub image: Option<PathBuf>,
    /// Resolution of `image` in µm per pixel, if known.
    pub microns_per_pixel: Option<f64>,
    /// Spot diameter in pixels of `image`, if known.
    pub spot_diameter_px: Option<f64>,
}

impl Section {
    /// Spot centres `(x, y)` in pixels of `image`, in spot order.
    pub fn centres(&self) -> Vec<(f64, f64)> {
        self.spots.iter().map(|s| (s.x, s.y)).collect()
    }
}
