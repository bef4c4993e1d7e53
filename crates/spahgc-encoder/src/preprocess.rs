//! Patches to the normalised NCHW tensor an encoder takes.

use ndarray::Array4;
use spahgc_slide::RgbImage;

use crate::{ChannelOrder, EncoderError, EncoderManifest};

/// Stacks `patches` into an `N × 3 × size × size` tensor normalised as the manifest says.
pub fn to_tensor(patches: &[RgbImage], manifest: &EncoderManifest) -> Result<Array4<f32>, EncoderError> {
    let size = manifest.input_size as usize;
    let mut values = vec![0.0; patches.len() * 3 * size * size];
    write_tensor(patches, manifest, &mut values)?;
    Ok(Array4::from_shape_vec((patches.len(), 3, size, size), values).expect("the values are sized for the shape"))
}

/// Writes `patches` normalised as the manifest says into `values`, which holds exactly their
/// `N × 3 × size × size` tensor (a part of a batch's tensor, say, each part written by a thread).
pub fn write_tensor(patches: &[RgbImage], manifest: &EncoderManifest, values: &mut [f32]) -> Result<(), EncoderError> {
    let size = manifest.input_size;
    let plane = (size * size) as usize;
    if values.len() != patches.len() * 3 * plane {
        return Err(EncoderError::Inference(format!(
            "a tensor of {} values for {} patches of {size}×{size} pixels in 3 channels",
            values.len(),
            patches.len()
        )));
    }
    let order = match manifest.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let scale = manifest.std.map(|s| 1.0 / s);
    for (n, (patch, dst)) in patches.iter().zip(values.chunks_exact_mut(3 * plane)).enumerate() {
        if patch.dimensions() != (size, size) {
            let (w, h) = patch.dimensions();
            return Err(EncoderError::Inference(format!(
                "patch {n} is {w}×{h} pixels, the encoder takes {size}×{size}"
            )));
        }
        // One pass over the interleaved pixels, writing the three planes.
        let (c0, rest) = dst.split_at_mut(plane);
        let (c1, c2) = rest.split_at_mut(plane);
        for (i, px) in patch.as_raw().chunks_exact(3).enumerate() {
            for (c, out) in [&mut c0[i], &mut c1[i], &mut c2[i]].into_iter().enumerate() {
                *out = (f32::from(px[order[c]]) - manifest.mean[c]) * scale[c];
            }
        }
    }
    Ok(())
}
