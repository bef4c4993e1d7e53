//! Patches to the normalised NCHW tensor an encoder takes.

use ndarray::Array4;
use spahgc_slide::RgbImage;

use crate::{ChannelOrder, EncoderError, EncoderManifest};

/// Stacks `patches` into an `N × 3 × size × size` tensor normalised as the manifest says.
pub fn to_tensor(patches: &[RgbImage], manifest: &EncoderManifest) -> Result<Array4<f32>, EncoderError> {
    let size = manifest.input_size;
    let mut out = Array4::zeros((patches.len(), 3, size as usize, size as usize));
    let order = match manifest.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    for (n, patch) in patches.iter().enumerate() {
        if patch.dimensions() != (size, size) {
            let (w, h) = patch.dimensions();
            return Err(EncoderError::Inference(format!(
                "patch {n} is {w}×{h} pixels, the encoder takes {size}×{size}"
            )));
        }
        for (c, &source) in order.iter().enumerate() {
            let (mean, std) = (manifest.mean[c], manifest.std[c]);
            let mut plane = out.slice_mut(ndarray::s![n, c, .., ..]);
            for (dst, px) in plane.iter_mut().zip(patch.pixels()) {
                *dst = (f32::from(px[source]) - mean) / std;
            }
        }
    }
    Ok(out)
}
