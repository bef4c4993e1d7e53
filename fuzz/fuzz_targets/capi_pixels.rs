//! The C ABI, called through its C signatures (`include/spahgc.h`) as a C host would: gene
//! names by any index, the pixel context of any rectangle, `spahgc_predict_pixels` with every
//! size, stride, format code, resolution, origin, buffer length and region the input picks
//! (NULL pointers included, a raised cancel token sometimes), then every result accessor with
//! any index and any output length. A status must be returned for each, with a message when it
//! is not OK; results must be consistent with each other.
#![no_main]

use std::ffi::{CStr, CString, c_char};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spahgc::*;
use spahgc_fuzz::PixelRequest;

#[derive(Arbitrary, Debug)]
struct Input {
    pixels: PixelRequest,
    null_pixels: bool,
    null_out: bool,
    cancelled: bool,
    gene_index: usize,
    spot_index: usize,
    /// Output lengths offered to `centres`, `in_tissue` and `values`: the needed length plus
    /// (or minus) these.
    slack: [i8; 3],
    context: [f64; 4],
}

/// The engine, opened once through `spahgc_engine_open` (CPU, no disk cache).
struct Engine(*mut spahgc_engine);
// SAFETY: the C ABI documents engines as thread-safe; the pointer is never freed.
unsafe impl Send for Engine {}
unsafe impl Sync for Engine {}

fn engine() -> *const spahgc_engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let dir = CString::new(spahgc_fuzz::bundle_dir().to_str().unwrap()).unwrap();
            let mut options = spahgc_engine_options_default();
            options.device = spahgc_device::Cpu as u32;
            let mut engine = null_mut();
            let status = unsafe { spahgc_engine_open(dir.as_ptr(), &options, &mut engine) };
            assert_eq!(status, spahgc_status::Ok, "opening the fuzz bundle: {}", last_error());
            Engine(engine)
        })
        .0
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(spahgc_last_error()) }.to_string_lossy().into_owned()
}

/// Checks the status of the call just made: OK, or an error with a message that is not an
/// internal one (a panic the boundary caught is a finding too).
fn ok(status: spahgc_status) -> bool {
    if status != spahgc_status::Ok {
        let message = last_error();
        assert!(!message.is_empty(), "status {status:?} without a message");
        assert_ne!(status, spahgc_status::Internal, "{message}");
    }
    status == spahgc_status::Ok
}

fn len_with(needed: usize, slack: i8) -> usize {
    needed.saturating_add_signed(isize::from(slack))
}

fuzz_target!(|input: Input| {
    let engine = engine();
    let mut genes = 0usize;
    assert!(ok(unsafe { spahgc_engine_gene_count(engine, &mut genes) }));
    let mut name: *const c_char = null();
    let named = ok(unsafe { spahgc_engine_gene_name(engine, input.gene_index, &mut name) });
    assert_eq!(named, input.gene_index < genes, "gene {} of {genes}", input.gene_index);

    let [x, y, width, height] = input.context;
    let mut context = spahgc_region { x: 0.0, y: 0.0, width: 0.0, height: 0.0 };
    let region = spahgc_region { x, y, width, height };
    let mpp = input.pixels.resolution.value();
    ok(unsafe { spahgc_engine_pixel_context(engine, &region, mpp, &mut context) });

    let asked = &input.pixels;
    if asked.is_huge() {
        return;
    }
    let buffer = asked.buffer();
    let region = asked.region().map(|r| spahgc_region { x: r.x, y: r.y, width: r.width, height: r.height });
    let token = spahgc_cancel_token_new();
    if input.cancelled {
        assert!(ok(unsafe { spahgc_cancel_token_cancel(token) }));
    }
    let request = spahgc_request { cancel: token, progress: None, progress_user: null_mut() };
    let mut result = null_mut();
    let status = unsafe {
        spahgc_predict_pixels(
            engine,
            if input.null_pixels { null() } else { buffer.as_ptr() },
            buffer.len(),
            u32::from(asked.width),
            u32::from(asked.height),
            asked.stride(),
            u32::from(asked.format),
            mpp,
            asked.origin.0,
            asked.origin.1,
            region.as_ref().map_or(null(), |r| r as *const _),
            asked.tissue_only,
            &request,
            if input.null_out { null_mut() } else { &mut result },
        )
    };
    let predicted = ok(status);
    unsafe { spahgc_cancel_token_free(token) };
    if !predicted {
        assert!(result.is_null(), "no result on failure");
        return;
    }
    assert!(!input.null_out && !input.null_pixels, "{status:?} for a request with a NULL argument");
    read_result(result, genes, input.spot_index, input.slack);
    unsafe { spahgc_result_free(result) };
});

/// Reads every part of a result, with outputs of the needed length plus `slack`.
fn read_result(result: *const spahgc_result, genes: usize, spot_index: usize, slack: [i8; 3]) {
    let (mut spots, mut columns) = (0usize, 0usize);
    assert!(ok(unsafe { spahgc_result_spot_count(result, &mut spots) }));
    assert!(ok(unsafe { spahgc_result_gene_count(result, &mut columns) }));
    assert_eq!(columns, genes);
    let (mut diameter, mut mpp) = (0.0, 0.0);
    assert!(ok(unsafe { spahgc_result_grid(result, &mut diameter, &mut mpp) }));
    assert!(diameter > 0.0 && mpp > 0.0);
    let mut id: *const c_char = null();
    assert_eq!(ok(unsafe { spahgc_result_spot_id(result, spot_index, &mut id) }), spot_index < spots);

    let mut centres = vec![f64::NAN; len_with(2 * spots, slack[0])];
    let wrote = ok(unsafe { spahgc_result_centres(result, centres.as_mut_ptr(), centres.len()) });
    assert_eq!(wrote, centres.len() >= 2 * spots);
    assert!(!wrote || centres[..2 * spots].iter().all(|v| v.is_finite()));
    let mut in_tissue = vec![false; len_with(spots, slack[1])];
    assert_eq!(
        ok(unsafe { spahgc_result_in_tissue(result, in_tissue.as_mut_ptr(), in_tissue.len()) }),
        in_tissue.len() >= spots
    );
    let mut values = vec![f32::NAN; len_with(spots * columns, slack[2])];
    let wrote = ok(unsafe { spahgc_result_values(result, values.as_mut_ptr(), values.len()) });
    assert_eq!(wrote, values.len() >= spots * columns);
    assert!(!wrote || values[..spots * columns].iter().all(|v| v.is_finite() && *v >= 0.0));
}
