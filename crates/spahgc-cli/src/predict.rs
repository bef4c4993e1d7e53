//! `spahgc predict`: expression for the spots of a her2st section or a region of a slide.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use spahgc_anndata::{AnnData, Column};
use spahgc_datasets::her2st;
use spahgc_engine::{Engine, EngineOptions, Prediction, Region, RegionOptions, Request};

use crate::embed::{CacheArgs, EncoderArgs};
use crate::heatmap::{SpotLayout, thumbnail, write_heatmap};
use crate::output::Output;

/// Where the default bundle lives inside the setup directory (`.spahgc/`).
const DEFAULT_BUNDLE: &str = "bundles/default";
/// Files of the predictions inside the output directory.
const EXPRESSION_FILE: &str = "expression.csv";
const DETECTIONS_FILE: &str = "detections.geojson";
const ANNDATA_FILE: &str = "expression.h5ad";
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
    /// her2st data set directory, with --section: predict that section's measured spots (or,
    /// with --region, the grid spots of a region of its image).
    #[arg(long, requires = "section", conflicts_with = "slide")]
    her2st: Option<PathBuf>,
    #[arg(long, requires = "her2st")]
    section: Option<String>,
    /// A slide: predict the spots of the bundle's grid that lie in --region.
    #[arg(long, required_unless_present = "her2st")]
    slide: Option<PathBuf>,
    /// Region x,y,width,height in level-0 pixels (default: the whole slide).
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
    /// Output directory (expression.csv, expression.h5ad, detections.geojson, heatmap-<gene>.png
    /// for the genes asked for, or the three most variable). It appears complete or not at all;
    /// an earlier one is replaced.
    #[arg(long)]
    out: PathBuf,
    /// Most spots one request may hold (margin included); a larger region is refused up front.
    #[arg(long, default_value_t = EngineOptions::default().max_spots)]
    max_spots: u64,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Predicted spots: the slide, ids, centres and diameter in level-0 pixels, tissue flags.
struct Spots {
    slide: PathBuf,
    ids: Vec<String>,
    centres: Vec<(f64, f64)>,
    diameter_px: f64,
    in_tissue: Vec<bool>,
}

pub fn run(args: PredictArgs, out: &Output) -> anyhow::Result<()> {
    let bundle = bundle_dir(args.bundle.as_ref())?;
    anyhow::ensure!(args.encoder.encoder.is_none(), "predict runs the bundle's own encoder: drop --encoder");
    let options = EngineOptions {
        encoder: args.encoder.options(),
        cache: args.cache.open()?,
        precision: args.cache.precision(),
        max_spots: args.max_spots,
        ..Default::default()
    };
    let engine = Engine::open(&bundle, options).with_context(|| format!("opening the bundle {}", bundle.display()))?;
    let request = Request { genes: args.genes.as_deref(), ..Default::default() };
    let region = match args.region.as_deref() {
        Some(&[x, y, width, height]) => Some(Region { x, y, width, height }),
        Some(other) => anyhow::bail!("--region takes x,y,width,height; got {} values", other.len()),
        None => None,
    };
    let section = match (&args.her2st, &args.section) {
        (Some(dir), Some(name)) => Some(her2st::load(dir, name)?),
        _ => None,
    };
    let (spots, prediction) = match (&section, &args.slide) {
        // A section's measured spots.
        (Some(section), _) if region.is_none() => {
            let slide = section.image.clone().context("her2st sections have images")?;
            let mpp = section.microns_per_pixel.context("her2st sections have a resolution")?;
            let centres = section.centres();
            // The section's own spots, should the bank hold them, are no references for it.
            let prediction = engine.predict_spots(&slide, Some(mpp), &centres, Some(&section.name), &request)?;
            let pitch_um = engine.bundle().manifest().grid.spot_pitch_um;
            let diameter_px = section.spot_diameter_px.unwrap_or(pitch_um / mpp / 2.0);
            let ids = section.spots.iter().map(|s| s.id.clone()).collect();
            // Measured spots lie under tissue.
            let in_tissue = vec![true; centres.len()];
            (Spots { slide, ids, centres, diameter_px, in_tissue }, prediction)
        }
        // Grid spots of a region of a slide, or of a section's image.
        (section, slide) => {
            let (slide, mpp) = match (section, slide) {
                (Some(s), _) => (s.image.clone().context("her2st sections have images")?, s.microns_per_pixel),
                (None, Some(slide)) => (slide.clone(), args.mpp),
                (None, None) => anyhow::bail!("give --her2st DIR --section S, or --slide FILE"),
            };
            let options = RegionOptions { region, microns_per_pixel: mpp, tissue_only: !args.keep_background };
            let r = engine.predict_region(&slide, &options, &request)?;
            let spots =
                Spots { slide, ids: r.ids, centres: r.centres, diameter_px: r.diameter_px, in_tissue: r.in_tissue };
            (spots, r.prediction)
        }
    };

    let drawn: Vec<usize> = match &args.genes {
        Some(genes) => (0..genes.len()).collect(),
        None => most_variable(&prediction.expression, DEFAULT_HEATMAPS),
    };
    let provenance = format!("bundle {}, slide {}", bundle.display(), spots.slide.display());
    let mut heatmaps = Vec::new();
    spahgc_core::write_dir_atomically(&args.out, |dir| -> anyhow::Result<()> {
        write_csv(&dir.join(EXPRESSION_FILE), &spots, &prediction)?;
        let geojson = serde_json::to_vec(&qupath_detections(&spots, &prediction))?;
        std::fs::write(dir.join(DETECTIONS_FILE), geojson)?;
        write_anndata(&dir.join(ANNDATA_FILE), &spots, &prediction, &provenance)?;
        let slide = spahgc_slide::open(&spots.slide)?;
        let layout = SpotLayout { centres: &spots.centres, diameter_px: spots.diameter_px };
        let (base, rect) = thumbnail(slide.as_ref(), &layout)?;
        for &g in &drawn {
            let column = prediction.expression.column(g);
            heatmaps.push(write_heatmap(&base, rect, &layout, &prediction.genes[g], column, dir)?);
        }
        Ok(())
    })
    .with_context(|| format!("writing the predictions to {}", args.out.display()))?;
    let scales: Vec<String> = heatmaps.iter().map(|h| format!("{} {:.2}–{:.2}", h.gene, h.min, h.max)).collect();
    let files: Vec<PathBuf> = [EXPRESSION_FILE, ANNDATA_FILE, DETECTIONS_FILE]
        .iter()
        .map(|f| args.out.join(f))
        .chain(heatmaps.iter().map(|h| args.out.join(&h.file)))
        .collect();
    out.report(
        &format!(
            "predicted {} genes for {} spots of {}; wrote {EXPRESSION_FILE}, {ANNDATA_FILE}, {DETECTIONS_FILE} and {} \
             heatmaps ({}) in {}",
            prediction.genes.len(),
            spots.centres.len(),
            spots.slide.display(),
            heatmaps.len(),
            scales.join(", "),
            args.out.display()
        ),
        serde_json::json!({
            "bundle": bundle, "slide": spots.slide, "spots": spots.centres.len(),
            "genes": prediction.genes.len(), "out": args.out, "files": files,
        }),
    )
}

/// The bundle given, or the default one.
pub fn bundle_dir(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(b) => Ok(b.clone()),
        None => spahgc_encoder::locate::project_file(DEFAULT_BUNDLE)
            .context("no default bundle: run scripts/demo.sh once (it trains one), or pass --bundle DIR"),
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
