//! `spahgc predict`: expression for the spots of a her2st section or a region of a slide.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ndarray::Axis;
use spahgc_datasets::her2st;
use spahgc_engine::{Engine, EngineOptions, Prediction};
use spahgc_slide::{Rect, TissueMask};

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
/// Grid spots beyond each edge of a region that join its graph (and are not written), so that
/// a spot's neighbours do not depend on where the region ends.
const MARGIN_SPOTS: f64 = 2.0;
/// Share of a grid spot's square that must be tissue for the spot to be predicted.
const MIN_TISSUE: f64 = 0.25;

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

/// Spots to predict: ids, centres in level-0 pixels, and where they come from.
struct Spots {
    slide: PathBuf,
    microns_per_pixel: Option<f64>,
    ids: Vec<String>,
    centres: Vec<(f64, f64)>,
    /// Whether each spot is one requested (not margin).
    requested: Vec<bool>,
    /// Spot diameter in level-0 pixels (drawn in the detections).
    diameter_px: f64,
    /// A bank section these spots belong to, whose own spots must not serve as references.
    section: Option<String>,
}

pub fn run(args: PredictArgs, out: &Output) -> anyhow::Result<()> {
    let bundle = match &args.bundle {
        Some(b) => b.clone(),
        None => spahgc_encoder::locate::project_file(DEFAULT_BUNDLE)
            .context("no default bundle: run scripts/demo.sh once (it trains one), or pass --bundle DIR")?,
    };
    anyhow::ensure!(args.encoder.encoder.is_none(), "predict runs the bundle's own encoder: drop --encoder");
    let cache = match args.cache.no_cache {
        true => None,
        false => Some((args.cache.root()?, args.cache.max_bytes()?)),
    };
    let options = EngineOptions { encoder: args.encoder.options(), cache, precision: args.cache.precision() };
    let engine = Engine::open(&bundle, options).with_context(|| format!("opening the bundle {}", bundle.display()))?;
    let pitch_um = engine.bundle().manifest().grid.spot_pitch_um;
    let columns = args.genes.as_deref().map(|g| engine.gene_columns(g)).transpose()?;
    let spots = match (&args.her2st, &args.section, &args.slide) {
        (Some(dir), Some(name), _) => {
            let section = her2st::load(dir, name)?;
            let mpp = section.microns_per_pixel.context("her2st sections have a resolution")?;
            Spots {
                diameter_px: section.spot_diameter_px.unwrap_or(pitch_um / mpp / 2.0),
                slide: section.image.clone().context("her2st sections have images")?,
                microns_per_pixel: section.microns_per_pixel,
                ids: section.spots.iter().map(|s| s.id.clone()).collect(),
                centres: section.centres(),
                requested: vec![true; section.spots.len()],
                section: Some(section.name),
            }
        }
        (_, _, Some(slide)) => grid_spots(slide, args.region.as_deref(), args.mpp, pitch_um, !args.keep_background)?,
        _ => anyhow::bail!("give --her2st DIR --section S, or --slide FILE"),
    };
    let requested = spots.requested.iter().filter(|&&r| r).count();
    anyhow::ensure!(
        requested >= 1 && spots.centres.len() >= 2,
        "the region holds {requested} spots of the grid ({} with the margin); a graph needs at least two",
        spots.centres.len()
    );
    let mut prediction =
        engine.predict_spots(&spots.slide, spots.microns_per_pixel, &spots.centres, spots.section.as_deref())?;
    if let (Some(genes), Some(columns)) = (&args.genes, &columns) {
        prediction.expression = prediction.expression.select(Axis(1), columns);
        prediction.genes = genes.clone();
    }
    let spots = spots.requested_only(&mut prediction);

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

impl Spots {
    /// The requested spots only, and their rows of `prediction`.
    fn requested_only(self, prediction: &mut Prediction) -> Spots {
        let keep: Vec<usize> = (0..self.ids.len()).filter(|&i| self.requested[i]).collect();
        prediction.expression = prediction.expression.select(Axis(0), &keep);
        Spots {
            ids: keep.iter().map(|&i| self.ids[i].clone()).collect(),
            centres: keep.iter().map(|&i| self.centres[i]).collect(),
            requested: vec![true; keep.len()],
            ..self
        }
    }
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

/// The spots of the slide-global grid (pitch `pitch_um`, first centre half a pitch from the
/// slide's corner) whose centres lie in `region` (x, y, width, height; default the whole slide),
/// with a margin of spots around it; with `tissue_only`, those at least a quarter on tissue.
fn grid_spots(
    slide_path: &std::path::Path,
    region: Option<&[f64]>,
    mpp: Option<f64>,
    pitch_um: f64,
    tissue_only: bool,
) -> anyhow::Result<Spots> {
    let slide = spahgc_slide::open(slide_path)?;
    let mpp = mpp.or(slide.microns_per_pixel()).context("the slide records no resolution: pass --mpp")?;
    anyhow::ensure!(mpp.is_finite() && mpp > 0.0, "--mpp must be positive, got {mpp}");
    let (width, height) = slide.dimensions();
    let (x0, y0, w, h) = match region {
        Some(&[x, y, w, h]) => (x, y, w, h),
        Some(other) => anyhow::bail!("--region takes x,y,width,height; got {} values", other.len()),
        None => (0.0, 0.0, width as f64, height as f64),
    };
    anyhow::ensure!(
        w > 0.0 && h > 0.0 && x0 >= 0.0 && y0 >= 0.0 && x0 + w <= width as f64 && y0 + h <= height as f64,
        "region {x0},{y0},{w},{h} is empty or outside the {width} x {height} px slide {}",
        slide_path.display()
    );
    let pitch = pitch_um / mpp;
    // Grid index range whose centres (i + 0.5) * pitch fall in [start, start + len).
    let indices = |start: f64, len: f64| {
        let first = (start / pitch - 0.5).ceil().max(0.0) as u64;
        let end = ((start + len) / pitch - 0.5).ceil().max(0.0) as u64;
        first..end
    };
    let margin = MARGIN_SPOTS * pitch;
    let (mx, my) = ((x0 - margin).max(0.0), (y0 - margin).max(0.0));
    let (mw, mh) = ((x0 + w + margin).min(width as f64) - mx, (y0 + h + margin).min(height as f64) - my);
    let inside = |c: f64, start: f64, len: f64| c >= start && c < start + len;
    let mask = tissue_only
        .then(|| {
            let rect = Rect { x: mx as i64, y: my as i64, width: mw.ceil() as u64, height: mh.ceil() as u64 };
            TissueMask::of_region(slide.as_ref(), rect)
        })
        .transpose()?;
    let (mut ids, mut centres, mut requested) = (Vec::new(), Vec::new(), Vec::new());
    for j in indices(my, mh) {
        for i in indices(mx, mw) {
            let (x, y) = ((i as f64 + 0.5) * pitch, (j as f64 + 0.5) * pitch);
            if mask.as_ref().is_some_and(|m| m.tissue_fraction(x, y, pitch / 2.0) < MIN_TISSUE) {
                continue;
            }
            ids.push(format!("{i}x{j}"));
            centres.push((x, y));
            requested.push(inside(x, x0, w) && inside(y, y0, h));
        }
    }
    Ok(Spots {
        slide: slide_path.to_path_buf(),
        microns_per_pixel: Some(mpp),
        ids,
        centres,
        requested,
        diameter_px: pitch / 2.0,
        section: None,
    })
}
