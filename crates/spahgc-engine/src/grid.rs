//! The spots of a slide region: the bundle's slide-global grid (first centre half a pitch from
//! the slide's corner, so overlapping requests share spots and cached embeddings), the
//! slide-global blocks of grid cells that are predicted as one graph each, with a margin of spots
//! around them, a tissue mask that skips glass, and the tiles of grid cells that are embedded and
//! cached together.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use spahgc_slide::{Rect, TissueMask};

use crate::EngineError;

/// Grid spots beyond each edge of a block that join its graph (and are not returned), so that a
/// spot at a block's edge keeps its neighbours.
pub(crate) const MARGIN_SPOTS: u64 = 2;
/// Share of a spot's square that must be tissue for the spot to be predicted.
const MIN_TISSUE: f64 = 0.25;
/// Grid cells per side of a tile: the unit of embedding and of the on-disk cache, so a request
/// next to an earlier one finds most of its spots already embedded.
const TILE: u64 = 4;
/// Grid cells per side of a block, the unit of prediction: every region is predicted through the
/// slide-global blocks that hold its spots, each a graph of its own with its margin (16 × 16
/// spots with the margin, about the size of the sections the model trained on: her2st sections
/// hold 180–280 spots). A spot's value thus depends on its block alone, never on the region asked
/// for, and a block once predicted answers every later request over it. A multiple of [`TILE`].
const BLOCK: u64 = 12;
/// Grid cells in a block.
pub(crate) const BLOCK_SPOTS: usize = (BLOCK * BLOCK) as usize;

/// Grid cell (column, row).
pub(crate) type Cell = (u64, u64);

/// A block of the slide-global grid: its column and row among blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BlockIndex {
    pub(crate) row: u64,
    pub(crate) column: u64,
}

impl BlockIndex {
    fn of((i, j): Cell) -> Self {
        BlockIndex { row: j / BLOCK, column: i / BLOCK }
    }

    /// Cells (columns, rows) of this block.
    fn cells(self) -> (Range<u64>, Range<u64>) {
        let span = |b: u64| b * BLOCK..(b + 1).saturating_mul(BLOCK);
        (span(self.column), span(self.row))
    }
}

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
}

/// The spots of some blocks of the grid, margins included, each cell once.
#[derive(Default)]
pub(crate) struct GridSpots {
    pub(crate) cells: Vec<Cell>,
    /// Level-0 centre of each spot.
    pub(crate) centres: Vec<(f64, f64)>,
    /// The tile each spot is embedded with, an index into `tiles`.
    pub(crate) tile_of: Vec<usize>,
    /// The eligible spot centres of each tile touched.
    pub(crate) tiles: Vec<Vec<(f64, f64)>>,
    /// For each block asked for, the spots of its graph (indices into `cells`, row by row) and
    /// whether each lies in the block (the others are its margin).
    pub(crate) graphs: Vec<Vec<(usize, bool)>>,
}

/// Lays the grid over a slide whose readable part is `bounds`.
pub(crate) struct Grid<'a> {
    pub(crate) bounds: Rect,
    pub(crate) pitch: f64,
    /// With a mask, spots on glass are skipped.
    pub(crate) mask: Option<&'a TissueMask>,
    /// Most grid cells one request may cover.
    pub(crate) max_cells: u64,
}

impl Grid<'_> {
    /// `region`, checked to be a non-empty part of `bounds`; `None`: all of `bounds`.
    pub(crate) fn checked(&self, region: Option<Region>, source: &str) -> Result<Region, EngineError> {
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

    /// [`Grid::checked`], and refused when it covers more than `max_cells` grid cells.
    pub(crate) fn checked_size(&self, region: Option<Region>, source: &str) -> Result<Region, EngineError> {
        let r = self.checked(region, source)?;
        let (columns, rows) = (self.cells(r.x, r.width), self.cells(r.y, r.height));
        let cells = (columns.end - columns.start).saturating_mul(rows.end - rows.start);
        if cells > self.max_cells {
            return Err(EngineError::Input(format!(
                "region {},{},{},{} of {source} covers {cells} grid cells, more than the {} one request may \
                 hold: ask for smaller regions",
                r.x, r.y, r.width, r.height, self.max_cells
            )));
        }
        Ok(r)
    }

    /// The eligible spots whose centres lie in `region`, row by row, with the block of each.
    pub(crate) fn spots_in(&self, region: Region) -> Vec<(Cell, (f64, f64), BlockIndex)> {
        let (columns, rows) = (self.cells(region.x, region.width), self.cells(region.y, region.height));
        rows.flat_map(|j| columns.clone().map(move |i| (i, j)))
            .filter_map(|cell| self.eligible(cell.0, cell.1).map(|centre| (cell, centre, BlockIndex::of(cell))))
            .collect()
    }

    /// The parts of `region` (default: all of `bounds`) in each block that holds spots of it, row
    /// by row, each with its number of spots; every spot of the region lies in exactly one part.
    pub(crate) fn blocks(&self, region: Option<Region>, source: &str) -> Result<Vec<(Region, usize)>, EngineError> {
        let r = self.checked(region, source)?;
        let mut counts: BTreeMap<BlockIndex, usize> = BTreeMap::new();
        for (_, _, block) in self.spots_in(r) {
            *counts.entry(block).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|(block, spots)| {
                let (columns, rows) = block.cells();
                let (x, y) = (columns.start as f64 * self.pitch, rows.start as f64 * self.pitch);
                let side = BLOCK as f64 * self.pitch;
                (Region { x, y, width: side, height: side }.clipped_to(r), spots)
            })
            .collect())
    }

    /// The spots of the graphs of `blocks`: each block's cells and [`MARGIN_SPOTS`] rings around
    /// them, within `bounds` and off glass.
    pub(crate) fn spots_of_blocks(&self, blocks: &[BlockIndex]) -> GridSpots {
        let bounds = Region::of(self.bounds);
        let (all_columns, all_rows) = (self.cells(bounds.x, bounds.width), self.cells(bounds.y, bounds.height));
        let graph_cells = |block: &Range<u64>, all: &Range<u64>| {
            let grown = with_margin(block);
            let start = grown.start.max(all.start);
            start..grown.end.min(all.end).max(start)
        };
        let mut spots = GridSpots::default();
        let (mut cell_index, mut tile_index) = (HashMap::new(), HashMap::new());
        for &block in blocks {
            let (columns, rows) = block.cells();
            let mut graph = Vec::new();
            for j in graph_cells(&rows, &all_rows) {
                for i in graph_cells(&columns, &all_columns) {
                    let Some(centre) = self.eligible(i, j) else { continue };
                    let index = match cell_index.entry((i, j)) {
                        Entry::Occupied(e) => *e.get(),
                        Entry::Vacant(e) => {
                            let tile = *tile_index.entry((i / TILE, j / TILE)).or_insert_with(|| {
                                spots.tiles.push(self.tile(i / TILE, j / TILE, &all_columns, &all_rows));
                                spots.tiles.len() - 1
                            });
                            spots.cells.push((i, j));
                            spots.centres.push(centre);
                            spots.tile_of.push(tile);
                            *e.insert(spots.cells.len() - 1)
                        }
                    };
                    graph.push((index, columns.contains(&i) && rows.contains(&j)));
                }
            }
            spots.graphs.push(graph);
        }
        spots
    }

    /// The eligible spot centres of tile (`column`, `row`) within the grid's cells.
    fn tile(&self, column: u64, row: u64, all_columns: &Range<u64>, all_rows: &Range<u64>) -> Vec<(f64, f64)> {
        let cells = |all: &Range<u64>, t: u64| (t * TILE).max(all.start)..(t + 1).saturating_mul(TILE).min(all.end);
        cells(all_rows, row)
            .flat_map(|j| cells(all_columns, column).map(move |i| (i, j)))
            .filter_map(|(i, j)| self.eligible(i, j))
            .collect()
    }

    fn cells(&self, start: f64, len: f64) -> Range<u64> {
        cells(start, len, self.pitch)
    }

    /// The centre of cell (`i`, `j`) unless the mask puts it on glass.
    fn eligible(&self, i: u64, j: u64) -> Option<(f64, f64)> {
        let centre = ((i as f64 + 0.5) * self.pitch, (j as f64 + 0.5) * self.pitch);
        let glass = self.mask.is_some_and(|m| !on_tissue(m, centre, self.pitch));
        (!glass).then_some(centre)
    }
}

/// Indices of the grid cells whose centres `(i + 0.5) * pitch` fall in `[start, start + len)`.
fn cells(start: f64, len: f64, pitch: f64) -> Range<u64> {
    let first = (start / pitch - 0.5).ceil().max(0.0) as u64;
    let end = ((start + len) / pitch - 0.5).ceil().max(0.0) as u64;
    first..end.max(first)
}

/// Cells `cells` and [`MARGIN_SPOTS`] more on each side (saturating: a host may ask about any
/// rectangle, however far out).
fn with_margin(cells: &Range<u64>) -> Range<u64> {
    cells.start.saturating_sub(MARGIN_SPOTS)..cells.end.saturating_add(MARGIN_SPOTS)
}

/// The rectangle that holds the patches (`patch` level-0 pixels wide) of every spot in the graphs
/// of the blocks that hold `region`'s spots, on a grid of pitch `pitch`, one pixel to spare on
/// each side; not clipped to any slide.
pub(crate) fn blocks_context(region: Region, pitch: f64, patch: f64) -> Region {
    let span = |start: f64, len: f64| {
        let cells = cells(start, len, pitch);
        let last = cells.end.max(cells.start.saturating_add(1)) - 1;
        let blocks = (cells.start / BLOCK * BLOCK)..(last / BLOCK * BLOCK).saturating_add(BLOCK);
        let Range { start: first, end } = with_margin(&blocks);
        let from = (first as f64 + 0.5) * pitch - patch / 2.0 - 1.0;
        (from, (end as f64 - 0.5) * pitch + patch / 2.0 + 1.0 - from)
    };
    let ((x, width), (y, height)) = (span(region.x, region.width), span(region.y, region.height));
    Region { x, y, width, height }
}

/// Whether the spot at `centre` of a grid of pitch `pitch` is on tissue: enough of the square of
/// its diameter (half the pitch) is.
pub(crate) fn on_tissue(mask: &TissueMask, (x, y): (f64, f64), pitch: f64) -> bool {
    mask.tissue_fraction(x, y, pitch / 2.0) >= MIN_TISSUE
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn blocks_are_slide_global_and_graphs_share_cells_and_tiles() {
        // 30 x 25 cells of 10 px.
        let grid =
            Grid { bounds: Rect { x: 0, y: 0, width: 300, height: 250 }, pitch: 10.0, mask: None, max_cells: 1000 };
        // Centres 95..145 and 5..15: cells 9..14 of rows 0 and 1, across the first two blocks.
        let region = Region { x: 95.0, y: 5.0, width: 60.0, height: 20.0 };
        let spots = grid.spots_in(region);
        assert_eq!(spots.len(), 12);
        assert_eq!((spots[0].0, spots[11].0), ((9, 0), (14, 1)));
        let blocks: Vec<BlockIndex> = spots.iter().map(|s| s.2).collect::<BTreeSet<_>>().into_iter().collect();
        assert_eq!(blocks, [BlockIndex { row: 0, column: 0 }, BlockIndex { row: 0, column: 1 }]);
        let parts = grid.blocks(Some(region), "the test grid").unwrap();
        assert_eq!(parts.iter().map(|p| p.1).collect::<Vec<_>>(), [6, 6]);

        let layout = grid.spots_of_blocks(&blocks);
        // Block (0, 0) with two rings, clipped at the slide's corner: columns and rows 0..14.
        // Block (0, 1): columns 10..26, rows 0..14.
        assert_eq!(layout.graphs.iter().map(Vec::len).collect::<Vec<_>>(), [14 * 14, 16 * 14]);
        assert!(layout.graphs.iter().all(|g| g.iter().filter(|s| s.1).count() == BLOCK_SPOTS));
        // Every cell once (columns 0..26, rows 0..14), every tile of 4 x 4 cells once.
        assert_eq!(layout.cells.len(), 26 * 14);
        assert_eq!(layout.tiles.len(), 7 * 4);
        let inside: Vec<Cell> = layout.graphs[1].iter().filter(|s| s.1).map(|s| layout.cells[s.0]).collect();
        assert_eq!((inside[0], inside[143]), ((12, 0), (23, 11)));

        // A host reads from the first block's first patch to its margin's last.
        let context = blocks_context(region, 10.0, 8.0);
        assert_eq!((context.x, context.y), (0.5 * 10.0 - 4.0 - 1.0, 0.5 * 10.0 - 4.0 - 1.0));
        assert_eq!((context.x + context.width, context.y + context.height), (25.5 * 10.0 + 5.0, 13.5 * 10.0 + 5.0));
        // However far out or odd the rectangle, an answer that does not wrap around.
        for far in [f64::MAX, f64::INFINITY, f64::NAN, -f64::MAX, 1e300] {
            let context = blocks_context(Region { x: far, y: far, width: far, height: far }, 10.0, 8.0);
            assert!(context.width >= 0.0 && context.height >= 0.0, "{far}: {context:?}");
        }
    }
}
