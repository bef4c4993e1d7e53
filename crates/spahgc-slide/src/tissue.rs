//! Which parts of a slide hold tissue rather than glass: Otsu's threshold on colour saturation,
//! computed once on a low-resolution copy of the whole slide.

use crate::{Rect, RgbImage, Slide, SlideError, read_region};

/// Long side, in pixels, of the copy the mask is computed on.
const MASK_SIDE: u64 = 1024;
/// Saturation at or above which a pixel is tissue whatever Otsu's threshold says: stained
/// tissue is rarely paler, and a region that is all tissue must not be split in two.
const SURE_TISSUE: f32 = 0.15;
/// Saturation below which a pixel is glass whatever the threshold (scanner noise, dust).
const SURE_GLASS: f32 = 0.04;

/// A tissue mask over a level-0 rectangle of a slide.
pub struct TissueMask {
    rect: Rect,
    width: usize,
    height: usize,
    /// Level-0 pixels per mask pixel.
    scale: f64,
    tissue: Vec<bool>,
}

impl TissueMask {
    /// The mask of `rect` of `slide`, thresholded on the saturation of that area itself: give
    /// the whole slide (or the whole pixel buffer) so that every part of it is judged alike.
    pub fn new(slide: &dyn Slide, rect: Rect) -> Result<Self, SlideError> {
        let (scale, image) = thumbnail(slide, rect)?;
        let saturation = saturation(&image);
        let threshold = otsu(&saturation).clamp(SURE_GLASS, SURE_TISSUE);
        let tissue = saturation.into_iter().map(|s| s >= threshold).collect();
        Ok(Self { rect, width: image.width() as usize, height: image.height() as usize, scale, tissue })
    }

    /// The fraction of tissue in the square of side `side` (level-0 pixels) centred at (`x`, `y`);
    /// 0 outside the mask.
    pub fn tissue_fraction(&self, x: f64, y: f64, side: f64) -> f64 {
        let to_mask = |v: f64, origin: i64| (v - origin as f64) / self.scale;
        let (cx, cy, half) = (to_mask(x, self.rect.x), to_mask(y, self.rect.y), (side / self.scale / 2.0).max(0.5));
        let range =
            |c: f64, len: usize| ((c - half).floor().max(0.0) as usize)..((c + half).ceil().max(0.0) as usize).min(len);
        let (rows, cols) = (range(cy, self.height), range(cx, self.width));
        let total = rows.len() * cols.len();
        if total == 0 {
            return 0.0;
        }
        let hits: usize =
            rows.map(|r| self.tissue[r * self.width..][cols.clone()].iter().filter(|&&t| t).count()).sum();
        hits as f64 / total as f64
    }
}

/// `rect` of `slide` at most `MASK_SIDE` pixels on its long side, and its level-0 pixels per pixel.
fn thumbnail(slide: &dyn Slide, rect: Rect) -> Result<(f64, RgbImage), SlideError> {
    let scale = (rect.width.max(rect.height) as f64 / MASK_SIDE as f64).max(1.0);
    let side = |len: u64| ((len as f64 / scale).ceil() as u32).max(1);
    Ok((scale, read_region(slide, rect, side(rect.width), side(rect.height))?))
}

/// HSV saturation of each pixel, row-major.
fn saturation(image: &RgbImage) -> Vec<f32> {
    image
        .pixels()
        .map(|p| {
            let (max, min) = (p.0.iter().copied().max().unwrap_or(0), p.0.iter().copied().min().unwrap_or(0));
            if max == 0 { 0.0 } else { f32::from(max - min) / f32::from(max) }
        })
        .collect()
}

/// Otsu's threshold of values in [0, 1]: the cut of a 256-bin histogram that maximises the
/// variance between the two classes.
fn otsu(values: &[f32]) -> f32 {
    let mut histogram = [0u64; 256];
    for &v in values {
        histogram[(v.clamp(0.0, 1.0) * 255.0).round() as usize] += 1;
    }
    let total = values.len() as f64;
    let sum: f64 = histogram.iter().enumerate().map(|(i, &n)| i as f64 * n as f64).sum();
    let (mut below, mut below_sum, mut best, mut best_cut) = (0.0, 0.0, -1.0, 0usize);
    for (i, &n) in histogram.iter().enumerate() {
        below += n as f64;
        below_sum += i as f64 * n as f64;
        let above = total - below;
        if below == 0.0 || above == 0.0 {
            continue;
        }
        let (mean_below, mean_above) = (below_sum / below, (sum - below_sum) / above);
        let between = below * above * (mean_below - mean_above).powi(2);
        if between > best {
            (best, best_cut) = (between, i);
        }
    }
    (best_cut as f32 + 0.5) / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_two_populations() {
        let values: Vec<f32> = (0..100).map(|i| if i < 60 { 0.02 + i as f32 * 1e-4 } else { 0.4 }).collect();
        let t = otsu(&values);
        assert!(values.iter().all(|&v| (v < t) == (v < 0.1)), "{t} separates the pale from the stained");
    }
}
