//! PNG heatmaps: the region's thumbnail with each spot filled in the colour of one gene's
//! predicted value (viridis, over the spots' range), and a colour bar on the right.

use std::path::{Path, PathBuf};

use anyhow::Context;
use image::{Rgb, RgbImage};
use ndarray::ArrayView1;
use spahgc_slide::{Rect, Slide, read_region};

/// Long side of a heatmap's thumbnail, in pixels.
const SIDE: f64 = 1024.0;
/// Width of the colour bar, and of the white gap before it, in pixels.
const BAR_WIDTH: u32 = 24;
const GAP: u32 = 8;
/// Opacity of a spot's colour over the tissue.
const OPACITY: f32 = 0.7;
/// viridis at 0, ¼, ½, ¾ and 1.
const VIRIDIS: [[f32; 3]; 5] =
    [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];

/// Quantiles of a gene's values at the bottom and top of its colour bar (a lone outlier spot
/// does not flatten the rest; values beyond take the end colours).
const RANGE: (f64, f64) = (0.02, 0.98);

/// One written heatmap: the gene, its file, and the values at the bottom and top of its bar.
#[derive(Debug, serde::Serialize)]
pub struct Heatmap {
    pub gene: String,
    /// File name inside the output directory.
    pub file: PathBuf,
    pub min: f32,
    pub max: f32,
}

/// The spots to draw: centres and diameter in level-0 pixels.
pub struct SpotLayout<'a> {
    pub centres: &'a [(f64, f64)],
    pub diameter_px: f64,
}

/// The region the spots cover (plus one spot diameter around them) read at most `SIDE` pixels
/// on its long side, and the level-0 rectangle it shows.
pub fn thumbnail(slide: &dyn Slide, spots: &SpotLayout) -> anyhow::Result<(RgbImage, Rect)> {
    let (xs, ys): (Vec<f64>, Vec<f64>) = spots.centres.iter().copied().unzip();
    let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min) - spots.diameter_px;
    let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max) + spots.diameter_px;
    let rect = Rect {
        x: lo(&xs).floor() as i64,
        y: lo(&ys).floor() as i64,
        width: (hi(&xs) - lo(&xs)).ceil() as u64,
        height: (hi(&ys) - lo(&ys)).ceil() as u64,
    };
    let scale = rect.width.max(rect.height) as f64 / SIDE;
    let side = |len: u64| ((len as f64 / scale).round() as u32).max(1);
    Ok((read_region(slide, rect, side(rect.width), side(rect.height))?, rect))
}

/// Writes `dir/heatmap-<gene>.png` for one gene's `values` (one per spot) over `base`, the
/// thumbnail of `rect`.
pub fn write_heatmap(
    base: &RgbImage,
    rect: Rect,
    spots: &SpotLayout,
    gene: &str,
    values: ArrayView1<f32>,
    dir: &Path,
) -> anyhow::Result<Heatmap> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let quantile = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let (min, max) = (quantile(RANGE.0), quantile(RANGE.1));
    let unit = |v: f32| if max > min { (v - min) / (max - min) } else { 0.5 };
    let (width, height) = base.dimensions();
    let scale = rect.width.max(rect.height) as f64 / f64::from(width.max(height));
    let mut canvas = RgbImage::from_pixel(width + GAP + BAR_WIDTH, height, Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, base, 0, 0);
    let radius = spots.diameter_px / 2.0 / scale;
    for (&(x, y), &v) in spots.centres.iter().zip(values.iter()) {
        let (cx, cy) = ((x - rect.x as f64) / scale, (y - rect.y as f64) / scale);
        let colour = viridis(unit(v));
        let span =
            |c: f64, len: u32| (c - radius).floor().max(0.0) as u32..((c + radius).ceil().max(0.0) as u32).min(len);
        for py in span(cy, height) {
            for px in span(cx, width) {
                if (f64::from(px) + 0.5 - cx).powi(2) + (f64::from(py) + 0.5 - cy).powi(2) <= radius * radius {
                    let p = canvas.get_pixel_mut(px, py);
                    for (channel, &target) in p.0.iter_mut().zip(&colour) {
                        *channel = (OPACITY * target + (1.0 - OPACITY) * f32::from(*channel)).round() as u8;
                    }
                }
            }
        }
    }
    for py in 0..height {
        let colour = viridis(1.0 - py as f32 / (height.max(2) - 1) as f32);
        let pixel = Rgb(colour.map(|c| c.round() as u8));
        for px in width + GAP..width + GAP + BAR_WIDTH {
            canvas.put_pixel(px, py, pixel);
        }
    }
    let safe: String =
        gene.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let file = PathBuf::from(format!("heatmap-{safe}.png"));
    let mut png = Vec::new();
    canvas.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let path = dir.join(&file);
    spahgc_core::write_atomically(&path, |w| w.write_all(&png))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Heatmap { gene: gene.to_string(), file, min, max })
}

/// viridis at `t` in [0, 1], linearly interpolated between its control colours.
fn viridis(t: f32) -> [f32; 3] {
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    [0, 1, 2].map(|c| VIRIDIS[i][c] * (1.0 - f) + VIRIDIS[i + 1][c] * f)
}
