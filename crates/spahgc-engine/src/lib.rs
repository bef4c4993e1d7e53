//! The prediction engine: a model bundle opened once, then expression predicted for spots of
//! any slide — embedded through the caches, references retrieved from the bundle's bank, the
//! heterogeneous graph built, and the SpaHGC network run.
//!
//! Three requests share one path ([`Engine::predict_spots`] for given centres, as `spahgc eval`
//! scores them; [`Engine::predict_region`] for a slide file; [`Engine::predict_pixels`] for pixels
//! a host holds): spots are looked up in an in-memory cache (embedding and retrieved references),
//! the rest embedded through the on-disk cache, the graph built with [`GraphInputs`], the network
//! run with [`SpaHgc::predict`], and outputs turned back into expression units.
//!
//! Regions are laid out on a slide-global grid whose pitch the bundle fixes, embedded in tiles of
//! grid cells, and predicted through the slide-global blocks of cells that hold them, each block
//! one graph with a margin of spots around it: a spot's value depends on its block alone, never on
//! where a viewport ends, and panning over a slide reuses embedded spots and predicted blocks.

mod grid;
mod memory;
mod slides;

use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use spahgc_bank::Neighbour;
use spahgc_bundle::{Bundle, BundleError};
use spahgc_cache::{EmbeddingCache, Precision};
use spahgc_embed::{EmbedError, Origin, SpotEmbedder};
use spahgc_encoder::{EncoderOptions, ExternalEncoder, LazyEncoder};
use spahgc_model::{GraphInputs, SpaHgc};

pub use grid::Region;
pub use spahgc_bank::ReferenceBank;
pub use spahgc_model::ModelError;
pub use spahgc_slide::{BufferError, PixelBuffer, PixelFormat, SlideError};

use grid::{BLOCK_SPOTS, BlockIndex, Grid, blocks_context};
use memory::{BlockKey, BlockPrediction, Memory, SpotEntry, SpotKey};
use slides::{OpenSlides, SlideContext};

/// Errors of the engine, each naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Encoder(#[from] spahgc_encoder::EncoderError),
    #[error(transparent)]
    Embed(EmbedError),
    #[error(transparent)]
    Bank(#[from] spahgc_bank::BankError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Slide(#[from] SlideError),
    /// A request that cannot be answered as asked (bad region, resolution, gene, size).
    #[error("{0}")]
    Input(String),
    /// The request's cancellation flag was raised.
    #[error("cancelled")]
    Cancelled,
}

impl From<EmbedError> for EngineError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::Cancelled => EngineError::Cancelled,
            other => EngineError::Embed(other),
        }
    }
}

/// How the engine runs its encoder, where it caches embeddings, and how much one request may do.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Backend, device (CPU, CUDA, DirectML), batch size and threads of the encoder.
    pub encoder: EncoderOptions,
    /// The on-disk embedding cache; `None`: no disk cache.
    pub cache: Option<EmbeddingCache>,
    /// Precision of new disk-cache entries.
    pub precision: Precision,
    /// Spots kept in memory (embedding and retrieved references; about 5 KB each with a
    /// 1280-wide encoder), and as many spots' predictions (whole blocks of 144 spots; 1 KB per
    /// spot with 250 genes); 0 turns the memory caches off.
    pub memory_spots: usize,
    /// Most spots one request may predict (the grid cells a region covers, or the centres
    /// given): a larger request is refused before any work rather than run out of memory (a
    /// spot costs roughly 20 KB while it is predicted).
    pub max_spots: u64,
    /// Runs the bundle's encoder outside the engine (a WebAssembly host's native runtime)
    /// instead of the backend `encoder` names.
    pub external_encoder: Option<Arc<dyn ExternalEncoder>>,
    /// Retrieves from this reference bank (a bank file or shard list, with any index attached)
    /// instead of the bundle's own; the bundle's model must accept it.
    pub bank: Option<Arc<ReferenceBank>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            encoder: EncoderOptions::default(),
            cache: None,
            precision: Precision::default(),
            memory_spots: 16_384,
            max_spots: 50_000,
            external_encoder: None,
            bank: None,
        }
    }
}

/// How a region becomes spots.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegionOptions {
    /// The level-0 rectangle to predict; `None`: the whole slide (or the whole pixel buffer).
    pub region: Option<Region>,
    /// Level-0 resolution; `None`: from the slide's metadata (required for pixel buffers).
    pub microns_per_pixel: Option<f64>,
    /// Skip spots on glass.
    pub tissue_only: bool,
}

/// Per-request choices and controls.
#[derive(Clone, Copy, Default)]
pub struct Request<'a> {
    /// Genes to return, in this order; `None`: all the bundle's genes.
    pub genes: Option<&'a [String]>,
    /// Checked between encoder batches and between stages; raising it ends the request with
    /// [`EngineError::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
    /// Told `(spots embedded, spots to embed)` after each encoder batch, on the calling thread.
    pub progress: Option<&'a dyn Fn(usize, usize)>,
}

impl Request<'_> {
    fn check_cancelled(&self) -> Result<(), EngineError> {
        match self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            true => Err(EngineError::Cancelled),
            false => Ok(()),
        }
    }
}

/// Where a request's time went and where its spots came from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RequestStats {
    /// Spots in the graphs run (margins included).
    pub spots: usize,
    /// Graphs run: grid blocks predicted, or the one graph of given spots.
    pub blocks: usize,
    /// Blocks of the grid whose prediction was in memory.
    pub blocks_from_memory: usize,
    /// Graph spots found in the memory cache.
    pub from_memory: usize,
    /// Spots read from the disk cache (whole tiles).
    pub from_disk: usize,
    /// Spots run through the encoder (whole tiles).
    pub encoded: usize,
    /// Spots whose references were searched in the bank.
    pub retrieved: usize,
    /// Seconds embedding (memory, disk cache, cutting patches and the encoder).
    pub embed_s: f64,
    pub retrieval_s: f64,
    pub graph_s: f64,
    /// Seconds in the network and turning its output into expression.
    pub head_s: f64,
    pub total_s: f64,
}

/// Predicted expression for a list of spots.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Genes, in column order.
    pub genes: Vec<String>,
    /// ln(1 + counts per 10k) (at least 0), spots × genes, in request order.
    pub expression: Array2<f32>,
    pub stats: RequestStats,
}

/// Predicted expression for the grid spots of a slide region.
#[derive(Debug, Clone)]
pub struct RegionPrediction {
    /// Spot ids: `<column>x<row>` of the slide-global grid.
    pub ids: Vec<String>,
    /// Spot centres in level-0 pixels.
    pub centres: Vec<(f64, f64)>,
    /// Whether each spot is on tissue by the slide's tissue mask (always true with
    /// `tissue_only`, which leaves out the others).
    pub in_tissue: Vec<bool>,
    /// Spot diameter in level-0 pixels (half the grid pitch).
    pub diameter_px: f64,
    /// Level-0 resolution the grid was laid at.
    pub microns_per_pixel: f64,
    pub prediction: Prediction,
}

impl std::ops::AddAssign for RequestStats {
    fn add_assign(&mut self, other: Self) {
        self.spots += other.spots;
        self.blocks += other.blocks;
        self.blocks_from_memory += other.blocks_from_memory;
        self.from_memory += other.from_memory;
        self.from_disk += other.from_disk;
        self.encoded += other.encoded;
        self.retrieved += other.retrieved;
        self.embed_s += other.embed_s;
        self.retrieval_s += other.retrieval_s;
        self.graph_s += other.graph_s;
        self.head_s += other.head_s;
        self.total_s += other.total_s;
    }
}

impl RequestStats {
    /// Adds the graph and head seconds of graphs that ran side by side for `wall` seconds: the
    /// wall time, split between graph and head as their own times split.
    fn add_side_by_side<'a>(&mut self, parts: impl Iterator<Item = &'a RequestStats>, wall: f64) {
        let (graph, head) = parts.fold((0.0, 0.0), |(g, h), p| (g + p.graph_s, h + p.head_s));
        let busy = graph + head;
        if busy > 0.0 {
            self.graph_s += wall * graph / busy;
            self.head_s += wall * head / busy;
        }
    }
}

impl RegionPrediction {
    /// Adds the spots of `other`, a prediction of the same genes on the same grid, after these.
    fn append(&mut self, other: RegionPrediction) -> Result<(), EngineError> {
        let (mine, theirs) = (&mut self.prediction, other.prediction);
        mine.expression
            .append(Axis(0), theirs.expression.view())
            .map_err(|e| EngineError::Input(format!("joining the predictions of two blocks: {e} (an engine bug)")))?;
        mine.stats += theirs.stats;
        self.ids.extend(other.ids);
        self.centres.extend(other.centres);
        self.in_tissue.extend(other.in_tissue);
        Ok(())
    }
}

/// How [`Engine::predict_region_in_blocks`] splits a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPlan {
    /// Grid spots to predict.
    pub spots: usize,
    /// Blocks that hold them, each predicted as one graph.
    pub blocks: usize,
}

/// Part `index` (from 0) of `count` parts of a region predicted in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

impl Shard {
    /// The whole region as one part.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Part `index` of `count`; refused unless `index < count`.
    pub fn new(index: u64, count: u64) -> Result<Self, EngineError> {
        match (index, count) {
            (_, 0) => Err(EngineError::Input(format!("shard {index}/0: the number of shards must be at least 1"))),
            (i, n) if i >= n => Err(EngineError::Input(format!(
                "shard {i}/{n}: shards are numbered from 0, so the index must be below {n}"
            ))),
            (index, count) => Ok(Self { index, count }),
        }
    }

    pub fn index(self) -> u64 {
        self.index
    }

    pub fn count(self) -> u64 {
        self.count
    }

    /// This part's blocks: blocks keep their order, and a block goes to the part in which its
    /// first spot falls when the spots are cut into `count` equal runs.
    fn blocks(self, blocks: &[(Region, usize)]) -> Vec<Region> {
        let total = blocks.iter().map(|b| b.1 as u128).sum::<u128>().max(1);
        let mut before = 0u128;
        let mut mine = Vec::new();
        for &(region, spots) in blocks {
            if before * self.count as u128 / total == self.index as u128 {
                mine.push(region);
            }
            before += spots as u128;
        }
        mine
    }
}

impl std::str::FromStr for Shard {
    type Err = EngineError;

    /// `I/N`: part `I` (from 0) of `N`.
    fn from_str(text: &str) -> Result<Self, EngineError> {
        let bad = || EngineError::Input(format!("shard {text:?}: expected I/N, part I (from 0) of N, as 0/3"));
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        Shard::new(index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?)
    }
}

/// A region of an open slide cut into blocks.
struct RegionBlocks {
    context: Arc<SlideContext>,
    /// Names the slide in errors.
    source: String,
    mpp: f64,
    /// The blocks that hold spots, and how many each holds.
    blocks: Vec<(Region, usize)>,
}

/// Refuses a resolution that is not a positive number of µm per pixel.
fn check_resolution(source: &str, microns_per_pixel: f64) -> Result<(), EngineError> {
    if microns_per_pixel.is_finite() && microns_per_pixel > 0.0 {
        return Ok(());
    }
    Err(EngineError::Input(format!("{source}: µm per pixel must be positive, got {microns_per_pixel}")))
}

/// Spots to predict and the groups they are embedded in.
struct Spots<'a> {
    centres: &'a [(f64, f64)],
    /// The group of each spot.
    group_of: &'a [usize],
    /// Spots embedded (and cached on disk) together; a group may hold spots not predicted.
    groups: &'a [Vec<(f64, f64)>],
}

/// A model bundle ready to predict; `Send + Sync`, shareable across threads.
pub struct Engine {
    bundle: Bundle,
    encoder: LazyEncoder,
    cache: Option<EmbeddingCache>,
    precision: Precision,
    memory: Memory<SpotKey, SpotEntry>,
    blocks: Memory<BlockKey, BlockPrediction>,
    slides: OpenSlides,
    max_spots: u64,
}

impl Engine {
    /// Opens and verifies the bundle in `dir`; the encoder loads on first use.
    pub fn open(dir: &Path, options: EngineOptions) -> Result<Self, EngineError> {
        let mut bundle = Bundle::open(dir)?;
        if let Some(bank) = options.bank {
            bundle = bundle.with_bank(bank)?;
        }
        let encoder = match options.external_encoder {
            Some(external) => LazyEncoder::external(&bundle.encoder_dir(), external, options.encoder.batch_size)?,
            None => LazyEncoder::open(&bundle.encoder_dir(), options.encoder)?,
        };
        let config = bundle.model().config();
        if encoder.manifest().embedding_dim != config.embedding_dim {
            return Err(EngineError::Input(format!(
                "bundle {}: the encoder embeds into {} dimensions, the model takes {}",
                dir.display(),
                encoder.manifest().embedding_dim,
                config.embedding_dim
            )));
        }
        Ok(Self {
            bundle,
            encoder,
            cache: options.cache,
            precision: options.precision,
            memory: Memory::new(options.memory_spots),
            blocks: Memory::new(options.memory_spots.div_ceil(BLOCK_SPOTS)),
            slides: OpenSlides::default(),
            max_spots: options.max_spots,
        })
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The genes predicted, in column order.
    pub fn genes(&self) -> &[String] {
        &self.bundle.model().config().genes
    }

    /// The columns of `genes` in a prediction; a gene the bundle does not predict is an error
    /// naming it.
    pub fn gene_columns(&self, genes: &[String]) -> Result<Vec<usize>, EngineError> {
        let all = self.genes();
        genes
            .iter()
            .map(|g| {
                all.iter().position(|x| x == g).ok_or_else(|| {
                    EngineError::Input(format!(
                        "gene {g} is not among the {} genes of {}",
                        all.len(),
                        self.bundle.dir().display()
                    ))
                })
            })
            .collect()
    }

    /// Forgets what is held in memory (spots' embeddings and retrieved references, blocks'
    /// predictions); open slides and the disk cache stay.
    pub fn clear_memory(&self) {
        self.memory.clear();
        self.blocks.clear();
    }

    /// The genes a request asks for (default: all) and their columns, each checked against the
    /// bundle's.
    fn requested_genes(&self, request: &Request) -> Result<(Vec<String>, Vec<usize>), EngineError> {
        let genes = request.genes.map_or_else(|| self.genes().to_vec(), <[String]>::to_vec);
        let columns = self.gene_columns(&genes)?;
        Ok((genes, columns))
    }

    /// The grid pitch at `microns_per_pixel`, in level-0 pixels.
    fn pitch(&self, microns_per_pixel: f64) -> f64 {
        self.bundle.manifest().grid.spot_pitch_um / microns_per_pixel
    }

    /// The rectangle a host should read for [`Engine::predict_pixels`] of `region` to equal
    /// [`Engine::predict_region`] of it: the grid blocks that hold the region's spots, their
    /// margin spots and all their patches, in whole pixels and clipped at the slide's top-left
    /// corner (the host clips the far edges to the slide, whose size the engine does not know).
    pub fn pixel_context(&self, region: Region, microns_per_pixel: f64) -> Region {
        let patch = self.encoder.manifest().field_of_view_um / microns_per_pixel;
        let grown = blocks_context(region, self.pitch(microns_per_pixel), patch);
        let (x, y) = (grown.x.floor().max(0.0), grown.y.floor().max(0.0));
        let (right, bottom) = ((grown.x + grown.width).ceil(), (grown.y + grown.height).ceil());
        Region { x, y, width: right - x, height: bottom - y }
    }

    /// Expression predicted for the grid spots of a region of the slide file at `slide`: each
    /// spot as the graph of its grid block (the block's spots and their margin) predicts it.
    /// Spots come block by block (blocks row by row), row by row within a block.
    pub fn predict_region(
        &self,
        slide: &Path,
        options: &RegionOptions,
        request: &Request,
    ) -> Result<RegionPrediction, EngineError> {
        let (context, mpp) = self.open_slide(slide, options.microns_per_pixel)?;
        self.predict_grid(&context, &format!("slide {}", slide.display()), mpp, options, request)
    }

    /// The open slide at `slide` and its level-0 resolution: `given`, else the slide's metadata.
    /// A given resolution is checked before the slide is opened (decoding can take a while).
    fn open_slide(&self, slide: &Path, given: Option<f64>) -> Result<(Arc<SlideContext>, f64), EngineError> {
        let source = format!("slide {}", slide.display());
        if let Some(mpp) = given {
            check_resolution(&source, mpp)?;
        }
        let context = self.slides.get(slide)?;
        let mpp = given
            .or(context.slide.microns_per_pixel())
            .ok_or_else(|| EngineError::Input(format!("{source} records no resolution: give its µm per pixel")))?;
        Ok((context, mpp))
    }

    /// Expression predicted for the grid spots of pixels a host holds, whose top-left corner is
    /// at `origin` (level-0 pixels). `options.region` defaults to the whole buffer;
    /// `options.microns_per_pixel` is required. Only the buffer's pixels are seen: read
    /// [`Engine::pixel_context`] of a region to predict it as [`Engine::predict_region`] would.
    pub fn predict_pixels(
        &self,
        pixels: &PixelBuffer,
        origin: (u64, u64),
        options: &RegionOptions,
        request: &Request,
    ) -> Result<RegionPrediction, EngineError> {
        let source = format!("the {} x {} pixel buffer at {},{}", pixels.width, pixels.height, origin.0, origin.1);
        let mpp =
            options.microns_per_pixel.ok_or_else(|| EngineError::Input(format!("{source}: give its µm per pixel")))?;
        check_resolution(&source, mpp)?;
        let context = SlideContext::of_buffer(pixels, origin)?;
        self.predict_grid(&context, &source, mpp, options, request)
    }

    fn predict_grid(
        &self,
        context: &SlideContext,
        source: &str,
        mpp: f64,
        options: &RegionOptions,
        request: &Request,
    ) -> Result<RegionPrediction, EngineError> {
        let mask = context.mask()?;
        let grid = self.grid(context, mpp, options.tissue_only)?;
        let region = grid.checked_size(options.region, source)?;
        let (genes, columns) = self.requested_genes(request)?;
        let mut wanted = grid.spots_in(region);
        // Grid block by grid block, as predict_region_in_blocks lists them; row by row within one.
        wanted.sort_by_key(|&((i, j), _, block)| (block, j, i));
        let blocks: Vec<BlockIndex> = wanted.iter().map(|w| w.2).collect::<BTreeSet<_>>().into_iter().collect();
        let (predicted, stats) =
            self.predict_blocks(context, &grid, (source, mpp), options.tissue_only, &blocks, request)?;
        let of_block: HashMap<BlockIndex, &BlockPrediction> =
            blocks.iter().copied().zip(predicted.iter().map(|p| &**p)).collect();
        let mut expression = Array2::zeros((wanted.len(), columns.len()));
        for (mut row, &(cell, _, block)) in expression.rows_mut().into_iter().zip(&wanted) {
            let in_block = of_block.get(&block).and_then(|p| Some((*p, p.row_of(cell)?)));
            let (predicted, at) = in_block.ok_or_else(|| {
                EngineError::Input(format!("spot {cell:?} is missing from its block's prediction (an engine bug)"))
            })?;
            for (value, &column) in row.iter_mut().zip(&columns) {
                *value = predicted.expression[[at, column]];
            }
        }
        Ok(RegionPrediction {
            ids: wanted.iter().map(|((i, j), ..)| format!("{i}x{j}")).collect(),
            centres: wanted.iter().map(|w| w.1).collect(),
            in_tissue: wanted.iter().map(|w| grid::on_tissue(mask, w.1, grid.pitch)).collect(),
            diameter_px: grid.pitch / 2.0,
            microns_per_pixel: mpp,
            prediction: Prediction { genes, expression, stats },
        })
    }

    /// The predictions of `blocks` of a slide's grid (its resolution `mpp`; `source` names it in
    /// errors): from memory, else their graphs' spots embedded in one pass (each tile once, one
    /// progress count), references retrieved, and the blocks' graphs run side by side.
    fn predict_blocks(
        &self,
        context: &SlideContext,
        grid: &Grid,
        (source, mpp): (&str, f64),
        tissue_only: bool,
        blocks: &[BlockIndex],
        request: &Request,
    ) -> Result<(Vec<Arc<BlockPrediction>>, RequestStats), EngineError> {
        request.check_cancelled()?;
        let start = Instant::now();
        let keys: Vec<BlockKey> = blocks.iter().map(|&b| BlockKey::new(&context.id, mpp, tissue_only, b)).collect();
        let mut found: Vec<Option<Arc<BlockPrediction>>> = keys.iter().map(|k| self.blocks.get(k)).collect();
        let missing: Vec<usize> = (0..blocks.len()).filter(|&i| found[i].is_none()).collect();
        let mut stats = RequestStats { blocks_from_memory: blocks.len() - missing.len(), ..Default::default() };
        if !missing.is_empty() {
            let layout = grid.spots_of_blocks(&missing.iter().map(|&i| blocks[i]).collect::<Vec<_>>());
            if let Some(k) = layout.graphs.iter().position(|g| g.len() < 2) {
                let BlockIndex { row, column } = blocks[missing[k]];
                return Err(EngineError::Input(format!(
                    "block {column}x{row} of the grid of {source} holds {} spot with its margin; a graph needs at least two",
                    layout.graphs[k].len()
                )));
            }
            stats.blocks = missing.len();
            stats.spots = layout.graphs.iter().map(Vec::len).sum();
            let spots = Spots { centres: &layout.centres, group_of: &layout.tile_of, groups: &layout.tiles };
            let (embeddings, hits) = self.embed_and_retrieve(context, mpp, &spots, None, request, &mut stats)?;
            // The blocks' graphs run side by side, one per core: a network on one graph of a
            // few hundred nodes keeps two cores only partly busy.
            // (Cancellation is checked on every thread; progress is told on the calling one.)
            let cancel = request.cancel;
            let started = Instant::now();
            let predicted: Vec<(Arc<BlockPrediction>, RequestStats)> = layout
                .graphs
                .par_iter()
                .map(|graph| {
                    Request { cancel, ..Request::default() }.check_cancelled()?;
                    let mut block_stats = RequestStats::default();
                    let members: Vec<usize> = graph.iter().map(|g| g.0).collect();
                    let centres: Vec<(f64, f64)> = members.iter().map(|&m| layout.centres[m]).collect();
                    let hits: Vec<Vec<Neighbour>> = members.iter().map(|&m| hits[m].clone()).collect();
                    let embeddings = embeddings.select(Axis(0), &members);
                    let expression = self.expression(&centres, embeddings.view(), &hits, &mut block_stats)?;
                    let inside: Vec<usize> = (0..graph.len()).filter(|&k| graph[k].1).collect();
                    let prediction = BlockPrediction {
                        cells: inside.iter().map(|&k| layout.cells[graph[k].0]).collect(),
                        expression: expression.select(Axis(0), &inside),
                    };
                    Ok((Arc::new(prediction), block_stats))
                })
                .collect::<Result<_, EngineError>>()?;
            stats.add_side_by_side(predicted.iter().map(|p| &p.1), started.elapsed().as_secs_f64());
            for (&at, (prediction, _)) in missing.iter().zip(predicted) {
                self.blocks.insert(keys[at].clone(), prediction.clone());
                found[at] = Some(prediction);
            }
        }
        stats.total_s = start.elapsed().as_secs_f64();
        let predicted = found.into_iter().flatten().collect();
        Ok((predicted, stats))
    }

    /// How [`Engine::predict_region_in_blocks`] splits a region of the slide at `slide`.
    pub fn plan_region(&self, slide: &Path, options: &RegionOptions) -> Result<BlockPlan, EngineError> {
        let blocks = self.region_blocks(slide, options)?.blocks;
        Ok(BlockPlan { spots: blocks.iter().map(|b| b.1).sum(), blocks: blocks.len() })
    }

    /// Expression predicted for the grid spots of a region of any size, block by block: the
    /// region's part in each grid block that holds spots of it, predicted as
    /// [`Engine::predict_region`] predicts it (so the values are the same). Spots come block by
    /// block, row by row. `shard` picks a contiguous run of blocks holding about
    /// `1 / count` of the spots: the parts `0..count` of one region, concatenated in order, are
    /// the whole region's prediction exactly.
    pub fn predict_region_in_blocks(
        &self,
        slide: &Path,
        options: &RegionOptions,
        shard: Shard,
        request: &Request,
    ) -> Result<RegionPrediction, EngineError> {
        let RegionBlocks { context, source, mpp, blocks } = self.region_blocks(slide, options)?;
        let mut whole = RegionPrediction {
            ids: vec![],
            centres: vec![],
            in_tissue: vec![],
            diameter_px: self.pitch(mpp) / 2.0,
            microns_per_pixel: mpp,
            prediction: self.no_prediction(request)?,
        };
        for region in shard.blocks(&blocks) {
            let options = RegionOptions { region: Some(region), ..*options };
            whole.append(self.predict_grid(&context, &source, mpp, &options, request)?)?;
        }
        Ok(whole)
    }

    /// The open slide at `slide` and the blocks of a region of it that hold spots.
    fn region_blocks(&self, slide: &Path, options: &RegionOptions) -> Result<RegionBlocks, EngineError> {
        let (context, mpp) = self.open_slide(slide, options.microns_per_pixel)?;
        let source = format!("slide {}", slide.display());
        let blocks = self.grid(&context, mpp, options.tissue_only)?.blocks(options.region, &source)?;
        Ok(RegionBlocks { context, source, mpp, blocks })
    }

    /// The grid of a slide at `mpp`, skipping glass when `tissue_only`.
    fn grid<'a>(&self, context: &'a SlideContext, mpp: f64, tissue_only: bool) -> Result<Grid<'a>, EngineError> {
        Ok(Grid {
            bounds: context.bounds,
            pitch: self.pitch(mpp),
            mask: if tissue_only { Some(context.mask()?) } else { None },
            max_cells: self.max_spots,
        })
    }

    /// A prediction for no spots, with the genes a request asks for.
    fn no_prediction(&self, request: &Request) -> Result<Prediction, EngineError> {
        let (genes, _) = self.requested_genes(request)?;
        let expression = Array2::zeros((0, genes.len()));
        Ok(Prediction { genes, expression, stats: RequestStats::default() })
    }

    /// Expression predicted for spots centred at `centres` (level-0 pixels) of `slide`, at
    /// `microns_per_pixel` (`None`: from the slide's metadata). References from the bank's
    /// section named `exclude_section`, if any, are not used (a bank section predicting itself).
    pub fn predict_spots(
        &self,
        slide: &Path,
        microns_per_pixel: Option<f64>,
        centres: &[(f64, f64)],
        exclude_section: Option<&str>,
        request: &Request,
    ) -> Result<Prediction, EngineError> {
        let source = format!("slide {}", slide.display());
        if centres.len() as u64 > self.max_spots {
            return Err(EngineError::Input(format!(
                "{} spots of {source} requested, more than the {} one request may hold",
                centres.len(),
                self.max_spots
            )));
        }
        let start = Instant::now();
        let genes = self.requested_genes(request)?;
        let (context, mpp) = self.open_slide(slide, microns_per_pixel)?;
        let groups = [centres.to_vec()];
        let spots = Spots { centres, group_of: &vec![0; centres.len()], groups: &groups };
        let mut stats = RequestStats { spots: centres.len(), blocks: 1, ..Default::default() };
        let (embeddings, hits) =
            self.embed_and_retrieve(&context, mpp, &spots, exclude_section, request, &mut stats)?;
        self.finish(centres, embeddings.view(), &hits, genes, request, (start, stats))
    }

    /// The spots' embeddings through the caches and their retrieved references (through the
    /// memory cache unless a section is excluded), with the time each took in `stats`.
    fn embed_and_retrieve(
        &self,
        context: &SlideContext,
        mpp: f64,
        spots: &Spots,
        exclude_section: Option<&str>,
        request: &Request,
        stats: &mut RequestStats,
    ) -> Result<(Array2<f32>, Vec<Vec<Neighbour>>), EngineError> {
        let t = Instant::now();
        let config = self.bundle.model().config();
        let entries = self.embed(context, mpp, spots, request, stats)?;
        stats.embed_s += t.elapsed().as_secs_f64();
        request.check_cancelled()?;

        let t = Instant::now();
        let dim = config.embedding_dim;
        let mut embeddings = Array2::zeros((entries.len(), dim));
        for (mut row, entry) in embeddings.rows_mut().into_iter().zip(&entries) {
            row.assign(&ndarray::ArrayView1::from(&entry.embedding[..]));
        }
        let bank = self.bundle.bank();
        let hits: Vec<Vec<Neighbour>> = match exclude_section {
            Some(_) => {
                stats.retrieved = entries.len();
                bank.top_k(embeddings.view(), config.graph.top_k, exclude_section)?
            }
            None => {
                let needed: Vec<usize> =
                    (0..entries.len()).filter(|&i| entries[i].neighbours.get().is_none()).collect();
                stats.retrieved = needed.len();
                let found = bank.top_k(embeddings.select(Axis(0), &needed).view(), config.graph.top_k, None)?;
                for (&i, neighbours) in needed.iter().zip(found) {
                    // Another request may have stored the same result meanwhile.
                    let _ = entries[i].neighbours.set(neighbours);
                }
                entries.iter().map(|e| e.neighbours.get().cloned().unwrap_or_default()).collect()
            }
        };
        stats.retrieval_s += t.elapsed().as_secs_f64();
        Ok((embeddings, hits))
    }

    /// Expression predicted for spots centred at `centres` whose embeddings a host computed
    /// with the bundle's encoder (spots × its embedding dimension, row `i` for centre `i`).
    /// Centres may be in any unit of length: only their layout shapes the graph. Nothing is
    /// cached.
    pub fn predict_embeddings(
        &self,
        centres: &[(f64, f64)],
        embeddings: ArrayView2<f32>,
        request: &Request,
    ) -> Result<Prediction, EngineError> {
        let start = Instant::now();
        let config = self.bundle.model().config();
        let (n, dim) = embeddings.dim();
        if (n, dim) != (centres.len(), config.embedding_dim) {
            return Err(EngineError::Input(format!(
                "embeddings of {n} spots x {dim} dimensions given for {} centres; the bundle's encoder embeds into {} dimensions",
                centres.len(),
                config.embedding_dim
            )));
        }
        if !(2..=self.max_spots).contains(&(n as u64)) {
            return Err(EngineError::Input(format!(
                "embeddings of {n} spots given; a graph needs at least 2 and one request may hold at most {}",
                self.max_spots
            )));
        }
        if let Some(bad) = centres.iter().position(|&(x, y)| !(x.is_finite() && y.is_finite())) {
            return Err(EngineError::Input(format!("centre {bad} is {:?}, not a finite position", centres[bad])));
        }
        let genes = self.requested_genes(request)?;
        let hits = self.bundle.bank().top_k(embeddings, config.graph.top_k, None)?;
        let stats = RequestStats {
            spots: n,
            blocks: 1,
            retrieved: n,
            retrieval_s: start.elapsed().as_secs_f64(),
            ..Default::default()
        };
        self.finish(centres, embeddings, &hits, genes, request, (start, stats))
    }

    /// The prediction of one graph of embedded spots and their retrieved references, in the
    /// requested genes; `started` is when the request began and what it has done so far.
    fn finish(
        &self,
        centres: &[(f64, f64)],
        embeddings: ArrayView2<f32>,
        hits: &[Vec<Neighbour>],
        (genes, columns): (Vec<String>, Vec<usize>),
        request: &Request,
        (start, mut stats): (Instant, RequestStats),
    ) -> Result<Prediction, EngineError> {
        request.check_cancelled()?;
        let expression = self.expression(centres, embeddings, hits, &mut stats)?.select(Axis(1), &columns);
        stats.total_s = start.elapsed().as_secs_f64();
        Ok(Prediction { genes, expression, stats })
    }

    /// Builds the graph of embedded spots and their retrieved references, runs the network and
    /// returns every gene in expression units, adding the time each step took to `stats`.
    fn expression(
        &self,
        centres: &[(f64, f64)],
        embeddings: ArrayView2<f32>,
        hits: &[Vec<Neighbour>],
        stats: &mut RequestStats,
    ) -> Result<Array2<f32>, EngineError> {
        let model: &SpaHgc = self.bundle.model();
        let config = model.config();
        let t = Instant::now();
        let graph = GraphInputs::build_from_hits(centres, embeddings, hits, self.bundle.bank(), config.graph)?;
        stats.graph_s += t.elapsed().as_secs_f64();

        let t = Instant::now();
        let mut expression = model.predict(&graph)?;
        config.normalisation.invert(&mut expression).map_err(|e| EngineError::Input(e.to_string()))?;
        // ln(1 + counts per 10k) is never negative; a scaled output below the training minimum
        // can map below zero.
        expression.mapv_inplace(|v| v.max(0.0));
        stats.head_s += t.elapsed().as_secs_f64();
        Ok(expression)
    }

    /// Each spot's cache entry: from memory, else its group from the disk cache or the encoder.
    fn embed(
        &self,
        context: &SlideContext,
        mpp: f64,
        spots: &Spots,
        request: &Request,
        stats: &mut RequestStats,
    ) -> Result<Vec<Arc<SpotEntry>>, EngineError> {
        let keys: Vec<SpotKey> = spots.centres.iter().map(|&c| SpotKey::new(&context.id, mpp, c)).collect();
        let mut entries: Vec<Option<Arc<SpotEntry>>> = keys.iter().map(|k| self.memory.get(k)).collect();
        stats.from_memory = entries.iter().flatten().count();
        let missing: BTreeSet<usize> =
            (0..keys.len()).filter(|&i| entries[i].is_none()).map(|i| spots.group_of[i]).collect();
        if missing.is_empty() {
            return Ok(entries.into_iter().flatten().collect());
        }
        let groups: Vec<&[(f64, f64)]> = missing.iter().map(|&g| spots.groups[g].as_slice()).collect();
        let disk = if context.on_disk { self.cache.as_ref() } else { None };
        let embedder = SpotEmbedder { encoder: &self.encoder, cache: disk, precision: self.precision };
        let progress = |done, total| {
            if let Some(report) = request.progress {
                report(done, total);
            }
            match request.check_cancelled() {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        };
        let slide_id = disk.map(|_| &*context.id);
        let embedded = embedder.embed_groups(context.slide.as_ref(), slide_id, mpp, &groups, &progress)?;
        let mut fresh = HashMap::new();
        for (group, found) in groups.iter().zip(embedded) {
            match found.origin {
                Origin::Cache => stats.from_disk += group.len(),
                Origin::Computed => stats.encoded += group.len(),
            }
            for (&centre, row) in group.iter().zip(found.embeddings.rows()) {
                let entry = Arc::new(SpotEntry { embedding: row.to_vec().into(), neighbours: Default::default() });
                let key = SpotKey::new(&context.id, mpp, centre);
                self.memory.insert(key.clone(), entry.clone());
                fresh.insert(key, entry);
            }
        }
        keys.iter()
            .zip(entries.iter_mut())
            .map(|(key, entry)| {
                entry
                    .take()
                    .or_else(|| fresh.get(key).cloned())
                    .ok_or_else(|| EngineError::Input(format!("spot {key:?} is in no group embedded (an engine bug)")))
            })
            .collect()
    }
}
