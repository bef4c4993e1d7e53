//! Patches to the normalised NCHW tensor an encoder takes.

use ndarray::Array4;
use spahgc_slide::RgbImage;

use crate::{ChannelOrder, EncoderError, EncoderManifest};

/// Stacks `patches` into an `N × 3 × size × size` tensor normalised as the manifest says.
pub fn to_tensor(patches: &[RgbImage], manifest: &EncoderManifest) -> Result<Array4<f32>, EncoderError> {
    to_tensor_in(patches, manifest, Vec::new())
}

/// [`to_tensor`] into the memory of `buffer` (a tensor's values returned for reuse): batch after
/// batch, the same pages instead of fresh ones that the kernel must zero at first touch.
pub fn to_tensor_in(
    patches: &[RgbImage],
    manifest: &EncoderManifest,
    mut buffer: Vec<f32>,
) -> Result<Array4<f32>, EncoderError> {
    let size = manifest.input_size;
    let shape = (patches.len(), 3, size as usize, size as usize);
    buffer.clear();
    buffer.resize(shape.0 * shape.1 * shape.2 * shape.3, 0.0);
    let mut out = Array4::from_shape_vec(shape, buffer).expect("the buffer is sized for the shape");
    let order = match manifest.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let plane = (size * size) as usize;
    let scale = manifest.std.map(|s| 1.0 / s);
    let values = out.as_slice_mut().expect("a new array is contiguous");
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
    Ok(out)
}
