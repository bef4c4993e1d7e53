//! The spots of a slide region: the bundle's slide-global grid (first centre half a pitch from
//! the slide's corner, so overlapping requests share spots and cached embeddings), a margin of
//! spots around the region that join its graph, a tissue mask that skips glass, and the tiles of
//! grid cells that are embedded and cached together.

use std::collections::HashMap;
use std::ops::Range;

use spahgc_slide::{Rect, TissueMask};

use crate::EngineError;

/// Grid spots beyond each edge of a region that join its graph (and are not returned), so that
/// a spot's neighbours do not depend on where the region ends.
pub(crate) const MARGIN_SPOTS: f64 = 2.0;
/// Share of a spot's square that must be tissue for the spot to be predicted.
const MIN_TISSUE: f64 = 0.25;
/// Grid cells per side of a tile: the unit of embedding and of the on-disk cache, so a request
/// next to an earlier one finds most of its spots already embedded.
const TILE: u64 = 4;
/// Grid cells per side of a block: a region larger than one block is predicted block by block,
/// each a graph of its own with its own margin, about the size of the sections the model trained
/// on (her2st sections hold 180–280 spots). Blocks start at the region's first cell.
const BLOCK: u64 = 16;

/// A rectangle in level-0 pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Region {
    fn of(rect: Rect) -> Self {
        Region { x: rect.x as f64, y: rect.y as f64, width: rect.width as f64, height: rect.height as f64 }
    }

    /// The whole pixels that cover this region (what a host reads for it).
    pub fn covering_pixels(self) -> Rect {
        let (x, y) = (self.x.floor(), self.y.floor());
        let (right, bottom) = ((self.x + self.width).ceil(), (self.y + self.height).ceil());
        Rect { x: x as i64, y: y as i64, width: (right - x).max(0.0) as u64, height: (bottom - y).max(0.0) as u64 }
    }

    /// This region grown by `by` pixels on every side.
    pub(crate) fn grown(self, by: f64) -> Self {
        Region { x: self.x - by, y: self.y - by, width: self.width + 2.0 * by, height: self.height + 2.0 * by }
    }

    /// The part of this region inside `other` (possibly empty).
    fn clipped_to(self, other: Region) -> Self {
        let (x, y) = (self.x.max(other.x), self.y.max(other.y));
        let right = (self.x + self.width).min(other.x + other.width);
        let bottom = (self.y + self.height).min(other.y + other.height);
        Region { x, y, width: (right - x).max(0.0), height: (bottom - y).max(0.0) }
    }

    /// Whether `inner` lies entirely in this region.
    fn holds(self, inner: Region) -> bool {
        inner.x >= self.x
            && inner.y >= self.y
            && inner.x + inner.width <= self.x + self.width
            && inner.y + inner.height <= self.y + self.height
    }

    fn contains(self, (x, y): (f64, f64)) -> bool {
        x >= self.x && x < self.x + self.width && y >= self.y && y < self.y + self.height
    }
}

/// The spots of a request on the grid of pitch `pitch` (level-0 pixels).
pub(crate) struct GridSpots {
    /// `<column>x<row>` of each spot.
    pub(crate) ids: Vec<String>,
    pub(crate) centres: Vec<(f64, f64)>,
    /// Whether each spot lies in the region (the others are margin).
    pub(crate) in_region: Vec<bool>,
    /// The tile each spot is embedded with, an index into `tiles`.
    pub(crate) tile_of: Vec<usize>,
    /// The eligible spot centres of each tile touched.
    pub(crate) tiles: Vec<Vec<(f64, f64)>>,
}

/// Lays the grid over a slide whose readable part is `bounds`.
pub(crate) struct Grid<'a> {
    pub(crate) bounds: Rect,
    pub(crate) pitch: f64,
    /// With a mask, spots on glass are skipped.
    pub(crate) mask: Option<&'a TissueMask>,
    /// Most grid cells one request may cover, margin included.
    pub(crate) max_cells: u64,
}

impl Grid<'_> {
    /// `region`, checked to be a non-empty part of `bounds`; `None`: all of `bounds`.
    fn checked(&self, region: Option<Region>, source: &str) -> Result<Region, EngineError> {
        let bounds = Region::of(self.bounds);
        let r = region.unwrap_or(bounds);
        let finite = [r.x, r.y, r.width, r.height].iter().all(|v| v.is_finite());
        if !(finite && r.width > 0.0 && r.height > 0.0 && bounds.holds(r)) {
            return Err(EngineError::Input(format!(
                "region {},{},{},{} is empty or outside {source} ({},{},{},{})",
                r.x, r.y, r.width, r.height, bounds.x, bounds.y, bounds.width, bounds.height
            )));
        }
        Ok(r)
    }

    /// The blocks of `region` (default: all of `bounds`) that hold spots, row by row, each with
    /// its number of spots: squares of [`BLOCK`] grid cells from the region's first cell, clipped
    /// to the region, so every spot of the region lies in exactly one block.
    pub(crate) fn blocks(&self, region: Option<Region>, source: &str) -> Result<Vec<(Region, usize)>, EngineError> {
        let r = self.checked(region, source)?;
        let (columns, rows) = (self.cells(r.x, r.width), self.cells(r.y, r.height));
        let starts = |cells: &Range<u64>| (cells.start..cells.end).step_by(BLOCK as usize);
        let mut blocks = Vec::new();
        for top in starts(&rows) {
            let bottom = (top + BLOCK).min(rows.end);
            for left in starts(&columns) {
                let right = (left + BLOCK).min(columns.end);
                let spots = (top..bottom).flat_map(|j| (left..right).map(move |i| (i, j)));
                let count = spots.filter(|&(i, j)| self.eligible(i, j).is_some()).count();
                if count > 0 {
                    let (x, y) = (left as f64 * self.pitch, top as f64 * self.pitch);
                    let (w, h) = ((right - left) as f64 * self.pitch, (bottom - top) as f64 * self.pitch);
                    blocks.push((Region { x, y, width: w, height: h }.clipped_to(r), count));
                }
            }
        }
        Ok(blocks)
    }

    /// The grid spots of `region` (default: all of `bounds`) and of its margin.
    pub(crate) fn spots(&self, region: Option<Region>, source: &str) -> Result<GridSpots, EngineError> {
        let bounds = Region::of(self.bounds);
        let r = self.checked(region, source)?;
        let with_margin = r.grown(MARGIN_SPOTS * self.pitch).clipped_to(bounds);
        let (columns, rows) =
            (self.cells(with_margin.x, with_margin.width), self.cells(with_margin.y, with_margin.height));
        let cells = (columns.end - columns.start).saturating_mul(rows.end - rows.start);
        if cells > self.max_cells {
            return Err(EngineError::Input(format!(
                "region {},{},{},{} of {source} covers {cells} grid cells with its margin, more than the \
                 {} one request may hold: ask for smaller regions",
                r.x, r.y, r.width, r.height, self.max_cells
            )));
        }
        let (all_columns, all_rows) = (self.cells(bounds.x, bounds.width), self.cells(bounds.y, bounds.height));
        let mut spots = GridSpots { ids: vec![], centres: vec![], in_region: vec![], tile_of: vec![], tiles: vec![] };
        let mut tile_index = HashMap::new();
        for j in rows {
            for i in columns.clone() {
                let Some(centre) = self.eligible(i, j) else { continue };
                let tile = *tile_index.entry((i / TILE, j / TILE)).or_insert_with(|| {
                    let cells = |all: &Range<u64>, t: u64| (t * TILE).max(all.start)..((t + 1) * TILE).min(all.end);
                    let tile = (cells(&all_rows, j / TILE))
                        .flat_map(|tj| cells(&all_columns, i / TILE).map(move |ti| (ti, tj)))
                        .filter_map(|(ti, tj)| self.eligible(ti, tj))
                        .collect();
                    spots.tiles.push(tile);
                    spots.tiles.len() - 1
                });
                spots.ids.push(format!("{i}x{j}"));
                spots.centres.push(centre);
                spots.in_region.push(r.contains(centre));
                spots.tile_of.push(tile);
            }
        }
        Ok(spots)
    }

    /// Indices of the grid cells whose centres `(i + 0.5) * pitch` fall in `[start, start + len)`.
    fn cells(&self, start: f64, len: f64) -> Range<u64> {
        let first = (start / self.pitch - 0.5).ceil().max(0.0) as u64;
        let end = ((start + len) / self.pitch - 0.5).ceil().max(0.0) as u64;
        first..end.max(first)
    }

    /// The centre of cell (`i`, `j`) unless the mask puts it on glass.
    fn eligible(&self, i: u64, j: u64) -> Option<(f64, f64)> {
        let centre = ((i as f64 + 0.5) * self.pitch, (j as f64 + 0.5) * self.pitch);
        let glass = self.mask.is_some_and(|m| !on_tissue(m, centre, self.pitch));
        (!glass).then_some(centre)
    }
}

/// Whether the spot at `centre` of a grid of pitch `pitch` is on tissue: enough of the square of
/// its diameter (half the pitch) is.
pub(crate) fn on_tissue(mask: &TissueMask, (x, y): (f64, f64), pitch: f64) -> bool {
    mask.tissue_fraction(x, y, pitch / 2.0) >= MIN_TISSUE
}
