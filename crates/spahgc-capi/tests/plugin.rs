//! A host that loads `libspahgc.so` at run time, as viewer plugins do (`dlopen` through
//! libloading), and drives it through the C ABI only.

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr;

use libloading::{Library, Symbol};
use spahgc::{spahgc_engine_options, spahgc_region, spahgc_status};

type Open = unsafe extern "C" fn(*const c_char, *const spahgc_engine_options, *mut *mut c_void) -> spahgc_status;
type Predict = unsafe extern "C" fn(
    *const c_void,
    *const c_char,
    *const spahgc_region,
    f64,
    bool,
    *const c_void,
    *mut *mut c_void,
) -> spahgc_status;
type Count = unsafe extern "C" fn(*const c_void, *mut usize) -> spahgc_status;
type Values = unsafe extern "C" fn(*const c_void, *mut f32, usize) -> spahgc_status;
type Free = unsafe extern "C" fn(*mut c_void);

#[test]
fn a_plugin_host_loads_the_library_and_predicts() {
    let Some(bundle) = spahgc_testbundle::small() else { return };
    let Some(wsi) = spahgc_testdata::shared("wsi") else { return };
    let exe = std::env::current_exe().unwrap();
    // The library this test run built (beside the test binary, in `deps/`).
    let path = exe.parent().unwrap().join("libspahgc.so");
    unsafe {
        let lib = Library::new(&path).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        let abi: Symbol<unsafe extern "C" fn() -> u32> = lib.get(b"spahgc_abi_version").unwrap();
        assert_eq!(abi().to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        let version: Symbol<unsafe extern "C" fn() -> *const c_char> = lib.get(b"spahgc_version").unwrap();
        assert_eq!(CStr::from_ptr(version()).to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        let last_error: Symbol<unsafe extern "C" fn() -> *const c_char> = lib.get(b"spahgc_last_error").unwrap();
        let message = || CStr::from_ptr(last_error()).to_string_lossy().into_owned();

        let open: Symbol<Open> = lib.get(b"spahgc_engine_open").unwrap();
        let mut engine = ptr::null_mut();
        let missing = CString::new("/nonexistent/bundle").unwrap();
        assert_eq!(open(missing.as_ptr(), ptr::null(), &mut engine), spahgc_status::Bundle);
        assert!(message().contains("/nonexistent/bundle"), "{}", message());
        let dir = CString::new(bundle.to_str().unwrap()).unwrap();
        assert_eq!(open(dir.as_ptr(), ptr::null(), &mut engine), spahgc_status::Ok, "{}", message());

        let gene_count: Symbol<Count> = lib.get(b"spahgc_engine_gene_count").unwrap();
        let mut genes = 0;
        assert_eq!(gene_count(engine, &mut genes), spahgc_status::Ok);
        assert_eq!(genes, 250);

        let predict: Symbol<Predict> = lib.get(b"spahgc_predict_region").unwrap();
        let slide = CString::new(wsi.join("cmu_small_region.svs").to_str().unwrap()).unwrap();
        let region = spahgc_region { x: 0.0, y: 0.0, width: 1200.0, height: 1200.0 };
        let mut result = ptr::null_mut();
        let status = predict(engine, slide.as_ptr(), &region, 0.0, false, ptr::null(), &mut result);
        assert_eq!(status, spahgc_status::Ok, "{}", message());
        let spot_count: Symbol<Count> = lib.get(b"spahgc_result_spot_count").unwrap();
        let mut spots = 0;
        assert_eq!(spot_count(result, &mut spots), spahgc_status::Ok);
        assert!(spots > 0);
        let values: Symbol<Values> = lib.get(b"spahgc_result_values").unwrap();
        let mut out = vec![f32::NAN; spots * genes];
        assert_eq!(values(result, out.as_mut_ptr(), out.len()), spahgc_status::Ok);
        assert!(out.iter().all(|v| v.is_finite() && *v >= 0.0));

        let result_free: Symbol<Free> = lib.get(b"spahgc_result_free").unwrap();
        result_free(result);
        let close: Symbol<Free> = lib.get(b"spahgc_engine_close").unwrap();
        close(engine);
    }
}
