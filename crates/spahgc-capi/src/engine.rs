//! Engines (a model bundle opened once), cancel tokens, and the two predictions.

use std::ffi::{CString, c_char, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ::spahgc_engine::{
    Engine, EngineError, EngineOptions, PixelBuffer, PixelFormat, Region, RegionOptions, RegionPrediction, Request,
};
use spahgc_cache::EmbeddingCache;
use spahgc_encoder::{Device, EncoderOptions, locate};

use crate::error::{Error, boundary, boundary_or, spahgc_status};
use crate::ffi::{self, Handle};
use crate::result::spahgc_result;

/// Where the encoder runs (values of `spahgc_engine_options.device`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum spahgc_device {
    /// The GPU this build and machine have, else the CPU.
    Auto = 0,
    Cpu = 1,
    /// NVIDIA CUDA; opening fails if it cannot start.
    Cuda = 2,
    /// DirectML (Windows); opening fails if it cannot start.
    DirectMl = 3,
}

/// Layout of a host's pixels (values of the `format` argument of `spahgc_predict_pixels`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum spahgc_pixel_format {
    /// 3 bytes per pixel: red, green, blue.
    Rgb8 = 0,
    /// 4 bytes per pixel: red, green, blue, alpha (straight, not premultiplied).
    Rgba8 = 1,
    /// 4 bytes per pixel: blue, green, red, alpha, colours premultiplied by alpha (OpenSlide,
    /// Cairo, most viewers' tiles).
    Bgra8Premultiplied = 2,
}

/// How an engine runs. Fill it with `spahgc_engine_options_default`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct spahgc_engine_options {
    /// A `spahgc_device` value.
    pub device: u32,
    /// Encoder threads; 0: ONNX Runtime's default (one per core).
    pub threads: u32,
    /// Directory of the on-disk embedding cache (created if missing; several processes may
    /// share it); NULL: no disk cache. UTF-8, NUL-terminated; read during the call only.
    pub cache_dir: *const c_char,
    /// Size bound of the disk cache in bytes; 0: 10 GiB.
    pub cache_max_bytes: u64,
    /// Directory holding `onnxruntime/libonnxruntime.so` (the install script's
    /// `PREFIX/lib/spahgc`); NULL: the `spahgc` directory beside the loaded libspahgc, else the
    /// `SPAHGC_ORT_LIB` environment variable or the source tree's `.spahgc/`. ONNX Runtime loads
    /// once per process: a second, different directory is refused.
    pub runtime_dir: *const c_char,
}

/// A model bundle opened for prediction; opaque. Thread-safe: any number of threads may predict
/// with one engine at once.
pub struct spahgc_engine {
    magic: u64,
    engine: Engine,
    genes: Vec<CString>,
}

ffi::handle_type!(spahgc_engine, 0x5350_4148_454e_4731);

/// A flag that ends the requests it is passed to with `SPAHGC_STATUS_CANCELLED`; opaque.
/// Thread-safe: raise it from any thread while a request runs.
pub struct spahgc_cancel_token {
    magic: u64,
    flag: AtomicBool,
}

ffi::handle_type!(spahgc_cancel_token, 0x5350_4148_4341_4e31);

/// Told `(user, done, total)`: spots embedded so far and spots to embed, after each encoder
/// batch, on the thread that called the prediction. It must not call spahgc on that request.
pub type spahgc_progress_callback = Option<unsafe extern "C" fn(user: *mut c_void, done: usize, total: usize)>;

/// Per-request controls; every field may be NULL (zero-initialise it: `spahgc_request r = {0};`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct spahgc_request {
    /// Checked between encoder batches and stages; borrowed during the call.
    pub cancel: *const spahgc_cancel_token,
    /// Called with `progress_user` first.
    pub progress: spahgc_progress_callback,
    /// Passed to `progress` as is.
    pub progress_user: *mut c_void,
}

/// A rectangle in level-0 pixels of a slide.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct spahgc_region {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The default options: device auto, ONNX Runtime's threads, no disk cache, runtime found as
/// described at `runtime_dir`. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn spahgc_engine_options_default() -> spahgc_engine_options {
    spahgc_engine_options {
        device: spahgc_device::Auto as u32,
        threads: 0,
        cache_dir: std::ptr::null(),
        cache_max_bytes: 0,
        runtime_dir: std::ptr::null(),
    }
}

/// Opens and verifies the model bundle in the directory `bundle_dir` (UTF-8, NUL-terminated)
/// with `options` (NULL: the defaults); on success `*out` is a new engine that the caller owns
/// and frees with `spahgc_engine_close`. The encoder loads on the first prediction.
/// Thread-safe.
///
/// # Safety
/// Pointers are NULL or valid; strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_engine_open(
    bundle_dir: *const c_char,
    options: *const spahgc_engine_options,
    out: *mut *mut spahgc_engine,
) -> spahgc_status {
    boundary(|| {
        let dir = unsafe { ffi::path(bundle_dir, "bundle_dir") }?;
        let options = unsafe { ffi::optional(options) }.copied().unwrap_or_else(|| spahgc_engine_options_default());
        let out = ffi::output(out, "out")?;
        let engine = Engine::open(dir, unsafe { engine_options(&options) }?)?;
        let genes = engine
            .genes()
            .iter()
            .map(|g| CString::new(g.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::new(spahgc_status::Bundle, format!("bundle {}: a gene name {e}", dir.display())))?;
        let handle = spahgc_engine { magic: spahgc_engine::MAGIC, engine, genes };
        unsafe { *out = handle.into_raw() };
        Ok(())
    })
}

/// The engine options C asked for, the runtime directory named for this process.
unsafe fn engine_options(options: &spahgc_engine_options) -> Result<EngineOptions, Error> {
    let device = match options.device {
        0 => Device::Auto,
        1 => Device::Cpu,
        2 => Device::Cuda,
        3 => Device::DirectMl,
        d => return Err(Error::invalid(format!("options.device is {d}, not a spahgc_device"))),
    };
    let cache = match options.cache_dir.is_null() {
        true => None,
        false => {
            let root = unsafe { ffi::path(options.cache_dir, "options.cache_dir") }?;
            let max_bytes = match options.cache_max_bytes {
                0 => EmbeddingCache::DEFAULT_MAX_BYTES,
                n => n,
            };
            Some(EmbeddingCache::open(root, max_bytes).map_err(|e| Error::new(spahgc_status::Cache, e.to_string()))?)
        }
    };
    match options.runtime_dir.is_null() {
        true => {
            // The installed layout; anything else is left to the encoder's own lookup.
            let beside = library_dir().map(|d| d.join("spahgc")).filter(|d| d.join("onnxruntime").is_dir());
            if let Some(dir) = beside {
                let _ = locate::set_host_setup_dir(&dir);
            }
        }
        false => {
            let dir = unsafe { ffi::path(options.runtime_dir, "options.runtime_dir") }?;
            if !dir.is_dir() {
                return Err(Error::invalid(format!("options.runtime_dir {} is not a directory", dir.display())));
            }
            locate::set_host_setup_dir(dir).map_err(|set| {
                Error::invalid(format!(
                    "options.runtime_dir {}: this process already uses the runtime in {}",
                    dir.display(),
                    set.display()
                ))
            })?;
        }
    }
    let encoder = EncoderOptions {
        device,
        threads: (options.threads > 0).then_some(options.threads as usize),
        ..EncoderOptions::default()
    };
    Ok(EngineOptions { encoder, cache, ..EngineOptions::default() })
}

/// The directory of the file that holds this code (libspahgc.so, or the host executable when
/// linked statically).
fn library_dir() -> Option<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let found = unsafe { libc::dladdr(library_dir as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let file = Path::new(std::ffi::OsStr::from_bytes(file.to_bytes()));
    file.is_absolute().then(|| file.parent().map(Path::to_path_buf)).flatten()
}

/// Closes an engine and frees it; NULL is a no-op. No other call may use the engine during or
/// after this one; closing it twice is detected where cheap (the last error says so) and
/// otherwise undefined. Thread-safe for different engines.
///
/// # Safety
/// `engine` is NULL or an engine from `spahgc_engine_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_engine_close(engine: *mut spahgc_engine) {
    boundary_or((), || unsafe { ffi::free(engine, "engine") })
}

/// Writes the number of genes the engine predicts to `*out`. Thread-safe.
///
/// # Safety
/// `engine` is NULL or a live engine; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_engine_gene_count(engine: *const spahgc_engine, out: *mut usize) -> spahgc_status {
    boundary(|| {
        let engine = unsafe { ffi::handle(engine, "engine") }?;
        let out = ffi::output(out, "out")?;
        unsafe { *out = engine.genes.len() };
        Ok(())
    })
}

/// Writes to `*out` the name of gene `index` (0 ≤ index < gene count; the column order of
/// results): a NUL-terminated string owned by the engine, valid until it is closed.
/// Thread-safe.
///
/// # Safety
/// `engine` is NULL or a live engine; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_engine_gene_name(
    engine: *const spahgc_engine,
    index: usize,
    out: *mut *const c_char,
) -> spahgc_status {
    boundary(|| {
        let engine = unsafe { ffi::handle(engine, "engine") }?;
        let out = ffi::output(out, "out")?;
        let name = engine.genes.get(index).ok_or_else(|| {
            Error::invalid(format!("gene index {index} is past the engine's {} genes", engine.genes.len()))
        })?;
        unsafe { *out = name.as_ptr() };
        Ok(())
    })
}

/// Writes to `*out` the level-0 rectangle a host should read and pass to
/// `spahgc_predict_pixels` for its prediction of `*region` to equal `spahgc_predict_region`'s:
/// the grid blocks that hold the region's spots, their margin spots and all their patches, at
/// `microns_per_pixel` (> 0). It is in whole pixels and clipped at the slide's top-left corner;
/// clip its far edges to the slide.
/// Thread-safe.
///
/// # Safety
/// `engine` is NULL or a live engine; `region` NULL or readable; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_engine_pixel_context(
    engine: *const spahgc_engine,
    region: *const spahgc_region,
    microns_per_pixel: f64,
    out: *mut spahgc_region,
) -> spahgc_status {
    boundary(|| {
        let engine = unsafe { ffi::handle(engine, "engine") }?;
        let region = checked_region(unsafe { ffi::input(region, "region") }?)?;
        let mpp =
            checked_mpp(microns_per_pixel)?.ok_or_else(|| Error::invalid("microns_per_pixel must be positive"))?;
        let out = ffi::output(out, "out")?;
        let Region { x, y, width, height } = engine.engine.pixel_context(region, mpp);
        unsafe { *out = spahgc_region { x, y, width, height } };
        Ok(())
    })
}

/// Creates a cancel token, not raised; the caller owns it and frees it with
/// `spahgc_cancel_token_free`. Returns NULL only on an internal error. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn spahgc_cancel_token_new() -> *mut spahgc_cancel_token {
    boundary_or(std::ptr::null_mut(), || {
        Ok(spahgc_cancel_token { magic: spahgc_cancel_token::MAGIC, flag: AtomicBool::new(false) }.into_raw())
    })
}

/// Raises the token: the requests using it end soon with `SPAHGC_STATUS_CANCELLED`, and later
/// ones at once. Thread-safe: call it from any thread while requests run.
///
/// # Safety
/// `token` is NULL or a live token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_cancel_token_cancel(token: *const spahgc_cancel_token) -> spahgc_status {
    boundary(|| {
        unsafe { ffi::handle(token, "token") }?.flag.store(true, Ordering::Relaxed);
        Ok(())
    })
}

/// Frees a token; NULL is a no-op. No request may still use it. Freeing it twice is detected
/// where cheap and otherwise undefined.
///
/// # Safety
/// `token` is NULL or a token from `spahgc_cancel_token_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_cancel_token_free(token: *mut spahgc_cancel_token) {
    boundary_or((), || unsafe { ffi::free(token, "token") })
}

/// Predicts expression for the grid spots of a region of the slide file `slide_path` (UTF-8,
/// NUL-terminated; SVS, NDPI, MRXS, tiled TIFF, JPEG, PNG, ...).
/// - `region`: level-0 rectangle (width and height > 0); NULL: the whole slide.
/// - `microns_per_pixel`: level-0 resolution; 0: from the slide's metadata.
/// - `tissue_only`: leave out spots on glass.
/// - `request`: cancel token and progress callback; NULL: none.
///
/// On success `*out` is a new result the caller owns and frees with `spahgc_result_free`; a
/// region without spots (all glass with `tissue_only`) gives a result of 0 spots.
/// Thread-safe: threads may predict with one engine at once.
///
/// # Safety
/// Pointers are NULL or valid; `slide_path` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_predict_region(
    engine: *const spahgc_engine,
    slide_path: *const c_char,
    region: *const spahgc_region,
    microns_per_pixel: f64,
    tissue_only: bool,
    request: *const spahgc_request,
    out: *mut *mut spahgc_result,
) -> spahgc_status {
    boundary(|| {
        let engine = unsafe { ffi::handle(engine, "engine") }?;
        let slide = unsafe { ffi::path(slide_path, "slide_path") }?;
        let region = unsafe { ffi::optional(region) }.map(checked_region).transpose()?;
        let options = RegionOptions { region, microns_per_pixel: checked_mpp(microns_per_pixel)?, tissue_only };
        let out = ffi::output(out, "out")?;
        let prediction = unsafe { with_request(request, |r| engine.engine.predict_region(slide, &options, r)) }?;
        unsafe { *out = spahgc_result::new(prediction).into_raw() };
        Ok(())
    })
}

/// Predicts expression for the grid spots of pixels the host holds: `height` rows of `width`
/// pixels of `format` (a `spahgc_pixel_format`), rows `stride` bytes apart, in the
/// `pixels_len` bytes at `pixels` (read during the call only), whose top-left pixel is at
/// (`origin_x`, `origin_y`) in level-0 pixels of the slide; the buffer must end within 2^53
/// (`SPAHGC_STATUS_INVALID_ARGUMENT` otherwise).
/// - `microns_per_pixel`: level-0 resolution (> 0).
/// - `region`: level-0 rectangle to predict; NULL: the whole buffer. Only the buffer's pixels
///   are seen: read `spahgc_engine_pixel_context` of a region to match `spahgc_predict_region`.
/// - `tissue_only`, `request`, `out`: as for `spahgc_predict_region`.
///
/// Thread-safe: threads may predict with one engine at once.
///
/// # Safety
/// Pointers are NULL or valid; `pixels` is readable for `pixels_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spahgc_predict_pixels(
    engine: *const spahgc_engine,
    pixels: *const u8,
    pixels_len: usize,
    width: u32,
    height: u32,
    stride: usize,
    format: u32,
    microns_per_pixel: f64,
    origin_x: u64,
    origin_y: u64,
    region: *const spahgc_region,
    tissue_only: bool,
    request: *const spahgc_request,
    out: *mut *mut spahgc_result,
) -> spahgc_status {
    boundary(|| {
        let engine = unsafe { ffi::handle(engine, "engine") }?;
        if pixels.is_null() {
            return Err(ffi::null("pixels"));
        }
        let format = match format {
            0 => PixelFormat::Rgb8,
            1 => PixelFormat::Rgba8,
            2 => PixelFormat::Bgra8Premultiplied,
            f => return Err(Error::invalid(format!("format is {f}, not a spahgc_pixel_format"))),
        };
        // A slice may be at most isize::MAX bytes long.
        if pixels_len == 0 || pixels_len > isize::MAX as usize {
            return Err(Error::invalid(format!("pixels_len {pixels_len} is not a buffer's length")));
        }
        let region = unsafe { ffi::optional(region) }.map(checked_region).transpose()?;
        let mpp = checked_mpp(microns_per_pixel)?
            .ok_or_else(|| Error::invalid("microns_per_pixel must be positive for a pixel buffer"))?;
        let options = RegionOptions { region, microns_per_pixel: Some(mpp), tissue_only };
        let out = ffi::output(out, "out")?;
        let pixels = unsafe { std::slice::from_raw_parts(pixels, pixels_len) };
        let buffer = PixelBuffer { pixels, width, height, stride, format };
        let origin = (origin_x, origin_y);
        let prediction =
            unsafe { with_request(request, |r| engine.engine.predict_pixels(&buffer, origin, &options, r)) }?;
        unsafe { *out = spahgc_result::new(prediction).into_raw() };
        Ok(())
    })
}

fn checked_region(r: &spahgc_region) -> Result<Region, Error> {
    let finite = [r.x, r.y, r.width, r.height].iter().all(|v| v.is_finite());
    match finite && r.width > 0.0 && r.height > 0.0 {
        true => Ok(Region { x: r.x, y: r.y, width: r.width, height: r.height }),
        false => Err(Error::invalid(format!(
            "region {},{} {} x {}: coordinates must be finite and sizes positive",
            r.x, r.y, r.width, r.height
        ))),
    }
}

/// A resolution argument: 0 is `None`, other values must be positive and finite.
fn checked_mpp(mpp: f64) -> Result<Option<f64>, Error> {
    match mpp {
        0.0 => Ok(None),
        m if m.is_finite() && m > 0.0 => Ok(Some(m)),
        m => Err(Error::invalid(format!("microns_per_pixel must be positive (or 0: from the slide), got {m}"))),
    }
}

/// Runs `predict` with the engine request C asked for.
///
/// # Safety
/// `request` is NULL or readable, and so is its token.
unsafe fn with_request(
    request: *const spahgc_request,
    predict: impl FnOnce(&Request) -> Result<RegionPrediction, EngineError>,
) -> Result<RegionPrediction, Error> {
    let Some(request) = (unsafe { ffi::optional(request) }) else {
        return Ok(predict(&Request::default())?);
    };
    let cancel = match request.cancel.is_null() {
        true => None,
        false => Some(&unsafe { ffi::handle(request.cancel, "request.cancel") }?.flag),
    };
    let (callback, user) = (request.progress, request.progress_user);
    let progress = move |done: usize, total: usize| {
        if let Some(callback) = callback {
            unsafe { callback(user, done, total) }
        }
    };
    Ok(predict(&Request { genes: None, cancel, progress: Some(&progress) })?)
}
