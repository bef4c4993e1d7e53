//! `spahgc predict`: expression for the spots of a her2st section or a region of a slide.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ndarray::Axis;
use spahgc_datasets::her2st;
use spahgc_engine::{Engine, EngineOptions, Prediction, Region, RegionOptions};

use crate::embed::{CacheArgs, EncoderArgs};
use crate::heatmap::{SpotLayout, thumbnail, write_heatmap};
use crate::output::Output;

/// Where the default bundle lives inside the setup directory (`.spahgc/`).
const DEFAULT_BUNDLE: &str = "bundles/default";
/// Files of the predictions inside the output directory.
const EXPRESSION_FILE: &str = "expression.csv";
const DETECTIONS_FILE: &str = "detections.geojson";
/// Heatmaps drawn when no genes are requested: the genes whose predictions vary most.
const DEFAULT_HEATMAPS: usize = 3;
/// Vertices of the polygon that draws a spot's circle.
const CIRCLE_VERTICES: usize = 24;

#[derive(Args)]
pub struct PredictArgs {
    /// Model bundle (from `spahgc train`); default: the one the demo builds in .spahgc/bundles.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// her2st data set directory, with --section: predict that section's measured spots.
    #[arg(long, requires = "section", conflicts_with = "slide")]
    her2st: Option<PathBuf>,
    #[arg(long)]
    section: Option<String>,
    /// A slide: predict the spots of the bundle's grid that lie in --region.
    #[arg(long, required_unless_present = "her2st")]
    slide: Option<PathBuf>,
    /// Region x,y,width,height in level-0 pixels (default: the whole slide).
    #[arg(long, value_delimiter = ',', value_name = "X,Y,W,H", requires = "slide")]
    region: Option<Vec<f64>>,
    /// Resolution of --slide in µm/px, when its metadata lacks it.
    #[arg(long, requires = "slide")]
    mpp: Option<f64>,
    /// Keep grid spots on glass too (default: a tissue mask skips them).
    #[arg(long, requires = "slide")]
    keep_background: bool,
    /// Genes to write (comma-separated); default: every gene of the bundle.
    #[arg(long, value_delimiter = ',')]
    genes: Option<Vec<String>>,
    /// Output directory (expression.csv, detections.geojson, heatmap-<gene>.png for the genes
    /// asked for, or the three most variable).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    encoder: EncoderArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Predicted spots: the slide, ids, centres and diameter in level-0 pixels.
struct Spots {
    slide: PathBuf,
    ids: Vec<String>,
    centres: Vec<(f64, f64)>,
    diameter_px: f64,
}

pub fn run(args: PredictArgs, out: &Output) -> anyhow::Result<()> {
    let bundle = match &args.bundle {
        Some(b) => b.clone(),
        None => spahgc_encoder::locate::project_file(DEFAULT_BUNDLE)
            .context("no default bundle: run scripts/demo.sh once (it trains one), or pass --bundle DIR")?,
    };
    anyhow::ensure!(args.encoder.encoder.is_none(), "predict runs the bundle's own encoder: drop --encoder");
    let options =
        EngineOptions { encoder: args.encoder.options(), cache: args.cache.open()?, precision: args.cache.precision() };
    let engine = Engine::open(&bundle, options).with_context(|| format!("opening the bundle {}", bundle.display()))?;
    let columns = args.genes.as_deref().map(|g| engine.gene_columns(g)).transpose()?;
    let (spots, mut prediction) = match (&args.her2st, &args.section, &args.slide) {
        (Some(dir), Some(name), _) => {
            let section = her2st::load(dir, name)?;
            let slide = section.image.clone().context("her2st sections have images")?;
            let mpp = section.microns_per_pixel.context("her2st sections have a resolution")?;
            let centres = section.centres();
            // The section's own spots, should the bank hold them, are no references for it.
            let prediction = engine.predict_spots(&slide, Some(mpp), &centres, Some(name))?;
            let pitch_um = engine.bundle().manifest().grid.spot_pitch_um;
            let diameter_px = section.spot_diameter_px.unwrap_or(pitch_um / mpp / 2.0);
            let ids = section.spots.iter().map(|s| s.id.clone()).collect();
            (Spots { slide, ids, centres, diameter_px }, prediction)
        }
        (_, _, Some(slide)) => {
            let region = match args.region.as_deref() {
                Some(&[x, y, width, height]) => Some(Region { x, y, width, height }),
                Some(other) => anyhow::bail!("--region takes x,y,width,height; got {} values", other.len()),
                None => None,
            };
            let options = RegionOptions { microns_per_pixel: args.mpp, tissue_only: !args.keep_background };
            let r = engine.predict_region(slide, region, options)?;
            let spots = Spots { slide: slide.clone(), ids: r.ids, centres: r.centres, diameter_px: r.diameter_px };
            (spots, r.prediction)
        }
        _ => anyhow::bail!("give --her2st DIR --section S, or --slide FILE"),
    };
    if let (Some(genes), Some(columns)) = (&args.genes, &columns) {
        prediction.expression = prediction.expression.select(Axis(1), columns);
        prediction.genes = genes.clone();
    }

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let csv = args.out.join(EXPRESSION_FILE);
    spahgc_core::write_atomically(&csv, |w| {
        writeln!(w, "spot,x,y,{}", prediction.genes.join(","))?;
        for ((id, (x, y)), row) in spots.ids.iter().zip(&spots.centres).zip(prediction.expression.rows()) {
            let values: Vec<String> = row.iter().map(|v| format!("{v:.4}")).collect();
            writeln!(w, "{id},{x:.1},{y:.1},{}", values.join(","))?;
        }
        Ok(())
    })
    .with_context(|| format!("writing {}", csv.display()))?;
    let detections = args.out.join(DETECTIONS_FILE);
    let geojson = serde_json::to_vec(&qupath_detections(&spots, &prediction))?;
    spahgc_core::write_atomically(&detections, |w| w.write_all(&geojson))
        .with_context(|| format!("writing {}", detections.display()))?;
    let slide = spahgc_slide::open(&spots.slide)?;
    let layout = SpotLayout { centres: &spots.centres, diameter_px: spots.diameter_px };
    let (base, rect) = thumbnail(slide.as_ref(), &layout)?;
    let drawn: Vec<usize> = match &args.genes {
        Some(genes) => (0..genes.len()).collect(),
        None => most_variable(&prediction.expression, DEFAULT_HEATMAPS),
    };
    let heatmaps = drawn
        .iter()
        .map(|&g| write_heatmap(&base, rect, &layout, &prediction.genes[g], prediction.expression.column(g), &args.out))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let scales: Vec<String> = heatmaps.iter().map(|h| format!("{} {:.2}–{:.2}", h.gene, h.min, h.max)).collect();
    out.report(
        &format!(
            "predicted {} genes for {} spots of {}; wrote {}, {} and {} heatmaps ({}) in {}",
            prediction.genes.len(),
            spots.centres.len(),
            spots.slide.display(),
            EXPRESSION_FILE,
            DETECTIONS_FILE,
            heatmaps.len(),
            scales.join(", "),
            args.out.display()
        ),
        serde_json::json!({
            "bundle": bundle, "slide": spots.slide, "spots": spots.centres.len(),
            "genes": prediction.genes.len(), "csv": csv, "geojson": detections, "heatmaps": heatmaps,
        }),
    )
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
