//! The spots of a slide region: the bundle's slide-global grid (first centre half a pitch from
//! the slide's corner, so overlapping requests share spots and cached embeddings), a margin of
//! spots around the region that join its graph, and a tissue mask that skips glass.

use spahgc_slide::{Rect, Slide, TissueMask};

use crate::{EngineError, check_resolution};

/// Grid spots beyond each edge of a region that join its graph (and are not returned), so that
/// a spot's neighbours do not depend on where the region ends.
const MARGIN_SPOTS: f64 = 2.0;
/// Share of a spot's square that must be tissue for the spot to be predicted.
const MIN_TISSUE: f64 = 0.25;

/// A rectangle in level-0 pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// How a region becomes spots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionOptions {
    /// Level-0 resolution; `None`: from the slide's metadata.
    pub microns_per_pixel: Option<f64>,
    /// Skip spots on glass.
    pub tissue_only: bool,
}

/// Grid spots of a region and its margin.
pub(crate) struct GridSpots {
    pub(crate) ids: Vec<String>,
    pub(crate) centres: Vec<(f64, f64)>,
    /// Whether each spot lies in the region (the others are margin).
    pub(crate) in_region: Vec<bool>,
    pub(crate) microns_per_pixel: f64,
    pub(crate) diameter_px: f64,
}

/// The grid spots (pitch `pitch_um`) of `region` of `slide` (default: the whole slide) and of
/// its margin.
pub(crate) fn grid_spots(
    slide: &dyn Slide,
    region: Option<Region>,
    options: RegionOptions,
    pitch_um: f64,
) -> Result<GridSpots, EngineError> {
    let path = slide.path().display();
    let mpp = options
        .microns_per_pixel
        .or(slide.microns_per_pixel())
        .ok_or_else(|| EngineError::Input(format!("slide {path} records no resolution: give its µm per pixel")))?;
    check_resolution(slide.path(), mpp)?;
    let (width, height) = slide.dimensions();
    let r = region.unwrap_or(Region { x: 0.0, y: 0.0, width: width as f64, height: height as f64 });
    let fits = r.width > 0.0 && r.height > 0.0 && r.x >= 0.0 && r.y >= 0.0;
    if !(fits && r.x + r.width <= width as f64 && r.y + r.height <= height as f64) {
        return Err(EngineError::Input(format!(
            "region {},{},{},{} is empty or outside the {width} x {height} px slide {path}",
            r.x, r.y, r.width, r.height
        )));
    }
    let pitch = pitch_um / mpp;
    // Grid index range whose centres (i + 0.5) * pitch fall in [start, start + len).
    let indices = |start: f64, len: f64| {
        let first = (start / pitch - 0.5).ceil().max(0.0) as u64;
        let end = ((start + len) / pitch - 0.5).ceil().max(0.0) as u64;
        first..end
    };
    let margin = MARGIN_SPOTS * pitch;
    let (mx, my) = ((r.x - margin).max(0.0), (r.y - margin).max(0.0));
    let (mw, mh) = ((r.x + r.width + margin).min(width as f64) - mx, (r.y + r.height + margin).min(height as f64) - my);
    let mask = options
        .tissue_only
        .then(|| {
            let rect = Rect { x: mx as i64, y: my as i64, width: mw.ceil() as u64, height: mh.ceil() as u64 };
            TissueMask::of_region(slide, rect)
        })
        .transpose()?;
    let inside = |c: f64, start: f64, len: f64| c >= start && c < start + len;
    let mut spots = GridSpots {
        ids: Vec::new(),
        centres: Vec::new(),
        in_region: Vec::new(),
        microns_per_pixel: mpp,
        diameter_px: pitch / 2.0,
    };
    for j in indices(my, mh) {
        for i in indices(mx, mw) {
            let (x, y) = ((i as f64 + 0.5) * pitch, (j as f64 + 0.5) * pitch);
            if mask.as_ref().is_some_and(|m| m.tissue_fraction(x, y, pitch / 2.0) < MIN_TISSUE) {
                continue;
            }
            spots.ids.push(format!("{i}x{j}"));
            spots.centres.push((x, y));
            spots.in_region.push(inside(x, r.x, r.width) && inside(y, r.y, r.height));
        }
    }
    Ok(spots)
}
