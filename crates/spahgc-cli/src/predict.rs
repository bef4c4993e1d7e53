//! `spahgc predict`: expression for the spots of a her2st section or a region of a slide.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use sha2::{Digest, Sha256};
use spahgc_anndata::{AnnData, Column};
use spahgc_core::Section;
use spahgc_datasets::her2st;
use spahgc_engine::{
    BlockPlan, Engine, EngineOptions, Prediction, ReferenceBank, Region, RegionOptions, Request, Shard,
};

use crate::embed::{CacheArgs, EncoderArgs};
use crate::failure::{BadInput, bad_input};
use crate::heatmap::{SpotLayout, thumbnail, write_heatmap};
use crate::output::Output;

/// Where the default bundle lives inside the setup directory (`.spahgc/`).
const DEFAULT_BUNDLE: &str = "bundles/default";
/// Files of the predictions inside the output directory.
const EXPRESSION_FILE: &str = "expression.csv";
const DETECTIONS_FILE: &str = "detections.geojson";
const ANNDATA_FILE: &str = "expression.h5ad";
/// The request's identity and the run's summary, written last.
const RUN_FILE: &str = "run.json";
/// What the predicted values are.
const UNITS: &str = "ln(1 + counts per 10k), predicted by SpaHGC";
/// Heatmaps drawn when no genes are requested: the genes whose predictions vary most.
const DEFAULT_HEATMAPS: usize = 3;
/// Vertices of the polygon that draws a spot's circle.
const CIRCLE_VERTICES: usize = 24;

#[derive(Args)]
pub struct PredictArgs {
    /// Model bundle (from `spahgc train`); default: the one the demo builds in .spahgc/bundles.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Retrieve references from this bank (a bank file or a shard list from `spahgc bank join`)
    /// instead of the bundle's own; it must match the bundle's genes, normalisation and encoder.
    /// An approximate index beside a bank file is searched from 100,000 spots on.
    #[arg(long, value_name = "BANK")]
    bank: Option<PathBuf>,
    /// her2st data set directory, with --section: predict that section's measured spots (or,
    /// with --region, the grid spots of a region of its image).
    #[arg(long, requires = "section", conflicts_with = "slide")]
    her2st: Option<PathBuf>,
    #[arg(long, requires = "her2st")]
    section: Option<String>,
    /// A slide: predict the spots of the bundle's grid that lie in --region.
    #[arg(long, required_unless_present = "her2st")]
    slide: Option<PathBuf>,
    /// Region x,y,width,height in level-0 pixels (default: the whole slide). Its spots are
    /// predicted block by block: slide-global blocks of 12 × 12 grid spots, each a graph with a
    /// margin of two rings of spots.
    #[arg(long, value_delimiter = ',', value_name = "X,Y,W,H")]
    region: Option<Vec<f64>>,
    /// Resolution of --slide in µm/px, when its metadata lacks it.
    #[arg(long, requires = "slide")]
    mpp: Option<f64>,
    /// Keep grid spots on glass too (default: a tissue mask skips them).
    #[arg(long)]
    keep_background: bool,
    /// Genes to write (comma-separated); default: every gene of the bundle.
    #[arg(long, value_delimiter = ',')]
    genes: Option<Vec<String>>,
    /// Predict part I (from 0) of N of the region's blocks, about 1/N of its spots: the outputs
    /// of parts 0..N, rows concatenated in order, are the unsplit prediction exactly.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Print how the region splits (spots, blocks) and write nothing.
    #[arg(long)]
    plan: bool,
    /// Output directory (expression.csv, expression.h5ad, detections.geojson, heatmap-<gene>.png
    /// for the genes asked for, or the three most variable, and run.json). It appears complete
    /// or not at all; one left by the same request (bundle, slide, region, resolution, genes,
    /// shard) is kept as it is, any other replaced.
    #[arg(long, required_unless_present = "plan")]
    out: Option<PathBuf>,
    /// Predict again even when --out holds this request's outputs.
    #[arg(long)]
    force: bool,
    /// Most grid cells one region may cover; a larger region is refused up front.
    #[arg(long, default_value_t = EngineOptions::default().max_spots)]
    max_spots: u64,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

/// What to predict.
enum Target {
    /// A her2st section's measured spots.
    Section(Section),
    /// The grid spots of a region of a slide (or of a section's image).
    Grid { slide: PathBuf, options: RegionOptions },
}

impl Target {
    fn slide(&self) -> anyhow::Result<&Path> {
        match self {
            Target::Section(section) => section.image.as_deref().context("her2st sections have images"),
            Target::Grid { slide, .. } => Ok(slide),
        }
    }
}

/// Predicted spots: the slide, ids, centres and diameter in level-0 pixels, tissue flags.
pub(crate) struct Spots {
    pub slide: PathBuf,
    pub ids: Vec<String>,
    pub centres: Vec<(f64, f64)>,
    pub diameter_px: f64,
    pub in_tissue: Vec<bool>,
}

pub fn run(args: PredictArgs, out: &Output) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.encoder.encoder.is_some() {
        bad_input!("predict runs the bundle's own encoder: drop --encoder");
    }
    args.encoder.limit_threads()?;
    let bundle = bundle_dir(args.bundle.as_ref())?;
    let bank = args.bank.as_deref().map(open_bank).transpose()?;
    let options = EngineOptions {
        encoder: args.encoder.options(),
        cache: args.cache.open()?,
        precision: args.cache.precision(),
        max_spots: args.max_spots,
        bank: bank.clone(),
        ..Default::default()
    };
    let engine = Engine::open(&bundle, options).with_context(|| format!("opening the bundle {}", bundle.display()))?;
    let target = target(&args)?;
    if args.plan {
        return plan(&engine, &target, out);
    }
    let Some(out_dir) = &args.out else { bad_input!("give --out DIR") };
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let mut files = serde_json::to_value(&engine.bundle().manifest().files)?;
    if let Some(bank) = &bank {
        let checksums: Vec<String> = bank.files().map(|f| f.checksum()).collect();
        files = serde_json::json!({ "bundle": files, "bank": checksums });
    }
    let run = Run {
        bundle: &bundle,
        bank: args.bank.as_deref(),
        out_dir,
        request_id: request_identity(files, target.slide()?, spots_asked(&target, &args, shard), &args.genes)?,
        shard,
        genes: args.genes.as_deref(),
        started,
    };
    if !args.force && run.skipped(out)? {
        return Ok(());
    }
    let request = Request { genes: args.genes.as_deref(), ..Default::default() };
    let (spots, prediction) = predict(&engine, &target, shard, &request)?;
    run.write(out, &spots, &prediction)
}

/// Opens a reference bank given on the command line, with the indexes built beside its files.
fn open_bank(path: &Path) -> anyhow::Result<Arc<ReferenceBank>> {
    let mut bank = ReferenceBank::open(path)?;
    spahgc_ann::attach_beside(&mut bank, None)?;
    Ok(Arc::new(bank))
}

/// One run of a prediction into an output directory.
pub(crate) struct Run<'a> {
    pub bundle: &'a Path,
    /// The bank searched instead of the bundle's own, if any.
    pub bank: Option<&'a Path>,
    pub out_dir: &'a Path,
    /// The SHA-256 of what was asked ([`request_identity`]).
    pub request_id: String,
    pub shard: Shard,
    /// Genes asked for (heatmaps of these; default: the most variable).
    pub genes: Option<&'a [String]>,
    pub started: Instant,
}

impl Run<'_> {
    /// Whether the output directory holds this request's complete outputs already (reported
    /// as skipped).
    pub(crate) fn skipped(&self, out: &Output) -> anyhow::Result<bool> {
        let Some(mut summary) = finished_run(&self.out_dir.join(RUN_FILE), &self.request_id) else {
            return Ok(false);
        };
        summary["skipped"] = true.into();
        let human = format!("{} holds this request's predictions already: nothing to do", self.out_dir.display());
        out.report(&human, summary)?;
        Ok(true)
    }

    /// Writes the outputs (all or none appear) and reports them.
    pub(crate) fn write(&self, out: &Output, spots: &Spots, prediction: &Prediction) -> anyhow::Result<()> {
        let (out_dir, shard) = (self.out_dir, self.shard);
        let drawn: Vec<usize> = match (self.genes, spots.ids.is_empty()) {
            (_, true) => vec![],
            (Some(genes), false) => (0..genes.len()).collect(),
            (None, false) => most_variable(&prediction.expression, DEFAULT_HEATMAPS),
        };
        let bank = self.bank.map_or(String::new(), |bank| format!(", bank {}", bank.display()));
        let provenance = format!("bundle {}{bank}, slide {}", self.bundle.display(), spots.slide.display());
        let mut heatmaps = Vec::new();
        let mut summary = serde_json::Value::Null;
        spahgc_core::write_dir_atomically(out_dir, |dir| -> anyhow::Result<()> {
            write_csv(&dir.join(EXPRESSION_FILE), spots, prediction)?;
            let geojson = serde_json::to_vec(&qupath_detections(spots, prediction))?;
            std::fs::write(dir.join(DETECTIONS_FILE), geojson)?;
            write_anndata(&dir.join(ANNDATA_FILE), spots, prediction, &provenance)?;
            if !drawn.is_empty() {
                let slide = spahgc_slide::open(&spots.slide)?;
                let layout = SpotLayout { centres: &spots.centres, diameter_px: spots.diameter_px };
                let (base, rect) = thumbnail(slide.as_ref(), &layout)?;
                for &g in &drawn {
                    let column = prediction.expression.column(g);
                    heatmaps.push(write_heatmap(&base, rect, &layout, &prediction.genes[g], column, dir)?);
                }
            }
            let files: Vec<PathBuf> = [EXPRESSION_FILE, ANNDATA_FILE, DETECTIONS_FILE]
                .iter()
                .map(|f| out_dir.join(f))
                .chain(heatmaps.iter().map(|h| out_dir.join(&h.file)))
                .collect();
            summary = serde_json::json!({
                "status": "ok", "skipped": false, "bundle": self.bundle, "slide": spots.slide,
                "shard": format!("{}/{}", shard.index(), shard.count()), "spots": spots.ids.len(),
                "in_tissue": spots.in_tissue.iter().filter(|&&t| t).count(), "genes": prediction.genes.len(),
                "seconds": self.started.elapsed().as_secs_f64(), "out": out_dir, "files": files,
            });
            let run = serde_json::json!({"request": self.request_id, "summary": summary});
            std::fs::write(dir.join(RUN_FILE), serde_json::to_vec_pretty(&run)?)?;
            Ok(())
        })
        .with_context(|| format!("writing the predictions to {}", out_dir.display()))?;
        let scales: Vec<String> = heatmaps.iter().map(|h| format!("{} {:.2}–{:.2}", h.gene, h.min, h.max)).collect();
        let human = format!(
            "predicted {} genes for {} spots of {}; wrote {EXPRESSION_FILE}, {ANNDATA_FILE}, {DETECTIONS_FILE} and {} \
             heatmaps ({}) in {}",
            prediction.genes.len(),
            spots.centres.len(),
            spots.slide.display(),
            heatmaps.len(),
            scales.join(", "),
            out_dir.display()
        );
        out.report(&human, summary)
    }
}

/// What the arguments ask to predict.
fn target(args: &PredictArgs) -> anyhow::Result<Target> {
    let region = match args.region.as_deref() {
        Some(&[x, y, width, height]) => Some(Region { x, y, width, height }),
        Some(other) => bad_input!("--region takes x,y,width,height; got {} values", other.len()),
        None => None,
    };
    let tissue_only = !args.keep_background;
    match (&args.her2st, &args.section, &args.slide) {
        (Some(dir), Some(name), _) => {
            let section = her2st::load(dir, name)?;
            match region {
                None if args.shard.is_some() => {
                    bad_input!("--shard splits the grid spots of a region: with --section, give --region too")
                }
                None => Ok(Target::Section(section)),
                Some(_) => {
                    let slide = section.image.clone().context("her2st sections have images")?;
                    let options = RegionOptions { region, microns_per_pixel: section.microns_per_pixel, tissue_only };
                    Ok(Target::Grid { slide, options })
                }
            }
        }
        (None, None, Some(slide)) => {
            let options = RegionOptions { region, microns_per_pixel: args.mpp, tissue_only };
            Ok(Target::Grid { slide: slide.clone(), options })
        }
        _ => bad_input!("give --her2st DIR --section S, or --slide FILE"),
    }
}

/// Prints how the target splits into blocks.
fn plan(engine: &Engine, target: &Target, out: &Output) -> anyhow::Result<()> {
    let plan = match target {
        Target::Section(section) => BlockPlan { spots: section.spots.len(), blocks: 1 },
        Target::Grid { slide, options } => engine.plan_region(slide, options)?,
    };
    let slide = target.slide()?;
    out.report(
        &format!("{}: {} spots in {} blocks", slide.display(), plan.spots, plan.blocks),
        serde_json::json!({"status": "ok", "slide": slide, "spots": plan.spots, "blocks": plan.blocks}),
    )
}

/// The target's spots and their predicted expression.
fn predict(engine: &Engine, target: &Target, shard: Shard, request: &Request) -> anyhow::Result<(Spots, Prediction)> {
    let slide = target.slide()?.to_path_buf();
    match target {
        Target::Section(section) => {
            let mpp = section.microns_per_pixel.context("her2st sections have a resolution")?;
            let centres = section.centres();
            // The section's own spots, should the bank hold them, are no references for it.
            let prediction = engine.predict_spots(&slide, Some(mpp), &centres, Some(&section.name), request)?;
            let pitch_um = engine.bundle().manifest().grid.spot_pitch_um;
            let diameter_px = section.spot_diameter_px.unwrap_or(pitch_um / mpp / 2.0);
            let ids = section.spots.iter().map(|s| s.id.clone()).collect();
            // Measured spots lie under tissue.
            let in_tissue = vec![true; centres.len()];
            Ok((Spots { slide, ids, centres, diameter_px, in_tissue }, prediction))
        }
        Target::Grid { options, .. } => {
            let r = engine.predict_region_in_blocks(&slide, options, shard, request)?;
            let spots =
                Spots { slide, ids: r.ids, centres: r.centres, diameter_px: r.diameter_px, in_tissue: r.in_tissue };
            Ok((spots, r.prediction))
        }
    }
}

/// The spots a target asks for, as they enter its request identity.
fn spots_asked(target: &Target, args: &PredictArgs, shard: Shard) -> serde_json::Value {
    match target {
        Target::Section(section) => {
            let spots: Vec<_> = section.spots.iter().map(|s| (&s.id, s.x, s.y)).collect();
            serde_json::json!({"section": section.name, "spots": spots})
        }
        Target::Grid { options, .. } => serde_json::json!({
            "region": args.region, "microns_per_pixel": options.microns_per_pixel,
            "tissue_only": options.tissue_only, "shard": [shard.index(), shard.count()],
        }),
    }
}

/// What makes two runs the same request: the spahgc version, the bundle's files (their hashes),
/// the slide's content (not its path), the spots asked for and the genes. Its SHA-256 goes in
/// run.json.
pub(crate) fn request_identity(
    bundle_files: serde_json::Value,
    slide: &Path,
    spots: serde_json::Value,
    genes: &Option<Vec<String>>,
) -> anyhow::Result<String> {
    let identity = serde_json::json!({
        "spahgc": env!("CARGO_PKG_VERSION"),
        "bundle": bundle_files,
        "slide": spahgc_slide::content_id(slide)?,
        "spots": spots,
        "genes": genes,
    });
    Ok(format!("{:x}", Sha256::digest(identity.to_string())))
}

/// The summary of the run recorded in `run_file` if it answered `request_id` and its files are
/// all there.
fn finished_run(run_file: &Path, request_id: &str) -> Option<serde_json::Value> {
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(run_file).ok()?).ok()?;
    let dir = run_file.parent()?;
    let summary = run.get("summary")?;
    let files = summary.get("files")?.as_array()?;
    let in_dir = |f: &str| Path::new(f).file_name().is_some_and(|name| dir.join(name).is_file());
    let complete = files.iter().all(|f| f.as_str().is_some_and(in_dir));
    (run.get("request")?.as_str()? == request_id && complete).then(|| summary.clone())
}

/// The bundle given, or the default one.
pub fn bundle_dir(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(b) => Ok(b.clone()),
        None => spahgc_encoder::locate::project_file(DEFAULT_BUNDLE).ok_or_else(|| {
            BadInput("no default bundle: run scripts/demo.sh once (it trains one), or pass --bundle DIR".into()).into()
        }),
    }
}

/// One row per spot: id, centre, tissue flag, then the expression of each gene.
fn write_csv(path: &std::path::Path, spots: &Spots, prediction: &Prediction) -> std::io::Result<()> {
    spahgc_core::write_atomically(path, |w| {
        writeln!(w, "spot,x,y,in_tissue,{}", prediction.genes.join(","))?;
        let rows = spots.ids.iter().zip(&spots.centres).zip(&spots.in_tissue).zip(prediction.expression.rows());
        for (((id, (x, y)), tissue), row) in rows {
            let values: Vec<String> = row.iter().map(|v| format!("{v:.4}")).collect();
            writeln!(w, "{id},{x:.1},{y:.1},{},{}", u8::from(*tissue), values.join(","))?;
        }
        Ok(())
    })
}

/// The predictions as AnnData: spots × genes, spot centres in `obsm["spatial"]`.
fn write_anndata(
    path: &std::path::Path,
    spots: &Spots,
    prediction: &Prediction,
    provenance: &str,
) -> anyhow::Result<()> {
    let xs: Vec<f64> = spots.centres.iter().map(|c| c.0).collect();
    let ys: Vec<f64> = spots.centres.iter().map(|c| c.1).collect();
    let spatial = ndarray::Array2::from_shape_fn((spots.centres.len(), 2), |(i, axis)| match axis {
        0 => xs[i],
        _ => ys[i],
    });
    let diameter = format!("{}", spots.diameter_px);
    let data = AnnData {
        obs_names: &spots.ids,
        obs: vec![("in_tissue", Column::Bool(&spots.in_tissue)), ("x", Column::F64(&xs)), ("y", Column::F64(&ys))],
        var_names: &prediction.genes,
        x: prediction.expression.view(),
        obsm: vec![("spatial", spatial.view())],
        uns: vec![("units", UNITS), ("spot_diameter_px", &diameter), ("provenance", provenance)],
    };
    Ok(spahgc_anndata::write_h5ad(path, &data)?)
}

/// The `n` columns of `expression` with the largest variance, largest first.
fn most_variable(expression: &ndarray::Array2<f32>, n: usize) -> Vec<usize> {
    let variance: Vec<f32> = expression.columns().into_iter().map(|c| c.var(0.0)).collect();
    let mut order: Vec<usize> = (0..variance.len()).collect();
    order.sort_by(|&a, &b| variance[b].total_cmp(&variance[a]).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// A GeoJSON FeatureCollection that QuPath imports as detections: one circle per spot, named by
/// its id, with the predicted expression of every gene as measurements.
fn qupath_detections(spots: &Spots, prediction: &Prediction) -> serde_json::Value {
    let radius = spots.diameter_px / 2.0;
    let features: Vec<serde_json::Value> = spots
        .ids
        .iter()
        .zip(&spots.centres)
        .zip(prediction.expression.rows())
        .map(|((id, &(x, y)), row)| {
            let mut ring: Vec<[f64; 2]> = (0..CIRCLE_VERTICES)
                .map(|k| {
                    let angle = std::f64::consts::TAU * k as f64 / CIRCLE_VERTICES as f64;
                    [x + radius * angle.cos(), y + radius * angle.sin()]
                })
                .collect();
            ring.push(ring[0]);
            let measurements: serde_json::Map<String, serde_json::Value> =
                prediction.genes.iter().zip(row).map(|(gene, &v)| (gene.clone(), serde_json::json!(v))).collect();
            serde_json::json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "detection", "name": id, "measurements": measurements},
            })
        })
        .collect();
    serde_json::json!({"type": "FeatureCollection", "features": features})
}
