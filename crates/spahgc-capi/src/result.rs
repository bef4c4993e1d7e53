//! Results of predictions: spots (ids, centres, tissue flags) and their expression values.

use std::ffi::{CString, c_char};

use spahgc_engine::RegionPrediction;

use crate::error::{Error, boundary, boundary_or, spahgc_status};
use crate::ffi::{self, Handle};

/// Predicted expression for the spots of a region; opaque, immutable. Thread-safe: any number
/// of threads may read one result at once.
pub struct spahgc_result {
    magic: u64,
    ids: Vec<CString>,
    /// x, y of each spot.
    centres: Vec<f64>,
    in_tissue: Vec<bool>,
    genes: usize,
    /// Spots × genes, row-major.
    values: Vec<f32>,
    spot_diameter_px: f64,
    microns_per_pixel: f64,
}

ffi::handle_type!(spahgc_result, 0x5350_4148_5245_5331);

impl spahgc_result {
    pub(crate) fn new(p: RegionPrediction) -> Self {
        spahgc_result {
            magic: Self::MAGIC,
            // Ids are `<column>x<row>`: never a NUL.
            ids: p.ids.into_iter().map(|id| CString::new(id).expect("spot ids hold no NUL")).collect(),
            centres: p.centres.iter().flat_map(|&(x, y)| [x, y]).collect(),
            in_tissue: p.in_tissue,
            genes: p.prediction.expression.ncols(),
            values: p.prediction.expression.iter().copied().collect(),
            spot_diameter_px: p.diameter_px,
            microns_per_pixel: p.microns_per_pixel,
        }
    }
}

/// Writes the number of spots to `*out`. Thread-safe.
///
/// # Safety
/// `result` is NULL or a live result; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_spot_count(result: *const spahgc_result, out: *mut usize) -> spahgc_status {
    boundary(|| {
        let result = unsafe { ffi::handle(result, "result") }?;
        let out = ffi::output(out, "out")?;
        unsafe { *out = result.ids.len() };
        Ok(())
    })
}

/// Writes the number of genes (columns) to `*out`: the engine's genes, in its order.
/// Thread-safe.
///
/// # Safety
/// `result` is NULL or a live result; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_gene_count(result: *const spahgc_result, out: *mut usize) -> spahgc_status {
    boundary(|| {
        let result = unsafe { ffi::handle(result, "result") }?;
        let out = ffi::output(out, "out")?;
        unsafe { *out = result.genes };
        Ok(())
    })
}

/// Writes the spot diameter (level-0 pixels) and the level-0 resolution the grid was laid at
/// (µm per pixel). Thread-safe.
///
/// # Safety
/// `result` is NULL or a live result; the outputs are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_grid(
    result: *const spahgc_result,
    spot_diameter_px: *mut f64,
    microns_per_pixel: *mut f64,
) -> spahgc_status {
    boundary(|| {
        let result = unsafe { ffi::handle(result, "result") }?;
        let diameter = ffi::output(spot_diameter_px, "spot_diameter_px")?;
        let mpp = ffi::output(microns_per_pixel, "microns_per_pixel")?;
        unsafe { (*diameter, *mpp) = (result.spot_diameter_px, result.microns_per_pixel) };
        Ok(())
    })
}

/// Writes to `*out` the id of spot `index` (`<column>x<row>` of the slide-global grid): a
/// NUL-terminated string owned by the result, valid until it is freed. Thread-safe.
///
/// # Safety
/// `result` is NULL or a live result; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_spot_id(
    result: *const spahgc_result,
    index: usize,
    out: *mut *const c_char,
) -> spahgc_status {
    boundary(|| {
        let result = unsafe { ffi::handle(result, "result") }?;
        let out = ffi::output(out, "out")?;
        let id = result.ids.get(index).ok_or_else(|| {
            Error::invalid(format!("spot index {index} is past the result's {} spots", result.ids.len()))
        })?;
        unsafe { *out = id.as_ptr() };
        Ok(())
    })
}

/// Copies the spot centres (level-0 pixels; x0, y0, x1, y1, ...) into the caller's `len`
/// doubles at `out`: `len` must be at least 2 × spot count, else `SPAHGC_STATUS_BUFFER_TOO_SMALL`
/// and nothing is written. Thread-safe.
///
/// # Safety
/// `result` is NULL or a live result; `out` is NULL or writable for `len` doubles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_centres(
    result: *const spahgc_result,
    out: *mut f64,
    len: usize,
) -> spahgc_status {
    boundary(|| unsafe { ffi::copy_out(&ffi::handle(result, "result")?.centres, out, len, "out") })
}

/// Copies whether each spot is on tissue into the caller's `len` bools at `out` (`len` ≥ spot
/// count, else `SPAHGC_STATUS_BUFFER_TOO_SMALL` and nothing is written). Thread-safe.
///
/// # Safety
/// `result` is NULL or a live result; `out` is NULL or writable for `len` bools.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_in_tissue(
    result: *const spahgc_result,
    out: *mut bool,
    len: usize,
) -> spahgc_status {
    boundary(|| unsafe { ffi::copy_out(&ffi::handle(result, "result")?.in_tissue, out, len, "out") })
}

/// Copies the expression values, spots × genes in row-major order (ln(1 + counts per 10k)),
/// into the caller's `len` floats at `out` (`len` ≥ spot count × gene count, else
/// `SPAHGC_STATUS_BUFFER_TOO_SMALL` and nothing is written). Thread-safe.
///
/// # Safety
/// `result` is NULL or a live result; `out` is NULL or writable for `len` floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_values(
    result: *const spahgc_result,
    out: *mut f32,
    len: usize,
) -> spahgc_status {
    boundary(|| unsafe { ffi::copy_out(&ffi::handle(result, "result")?.values, out, len, "out") })
}

/// Frees a result; NULL is a no-op. No other call may use it during or after this one; freeing
/// it twice is detected where cheap and otherwise undefined. Thread-safe for different results.
///
/// # Safety
/// `result` is NULL or a result from a prediction.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_result_free(result: *mut spahgc_result) {
    boundary_or((), || unsafe { ffi::free(result, "result") })
}
