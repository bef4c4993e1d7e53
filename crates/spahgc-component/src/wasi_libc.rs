//! C symbols that Rust's standard library and some dependencies expect from wasi-libc on
//! `wasm32-wasip2` but that Debian's older wasi-libc lacks. Threads cannot start in this
//! component: `pthread_create` fails with `ENOSYS`, which std reports as `Unsupported`, so rayon
//! and spahgc's patch cutting run on the calling thread.

use std::ffi::{c_char, c_int, c_void};

/// WASI's `ENOSYS` (`__WASI_ERRNO_NOSYS`).
const ENOSYS: c_int = 52;

unsafe extern "C" {
    /// wasi-libc's errno: one global in its single-threaded build.
    static mut errno: c_int;
}

/// Where errno lives (the `errno` crate asks for it by this name).
#[unsafe(no_mangle)]
pub extern "C" fn __errno_location() -> *mut c_int {
    &raw mut errno
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_create(_: *mut c_void, _: *const c_void, _: *const c_void, _: *mut c_void) -> c_int {
    ENOSYS
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_detach(_: *mut c_void) -> c_int {
    ENOSYS
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_attr_init(_: *mut c_void) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_attr_setstacksize(_: *mut c_void, _: usize) -> c_int {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn pthread_attr_destroy(_: *mut c_void) -> c_int {
    0
}

/// tract links `realpath`, which nothing calls on this target: it fails with `ENOSYS`.
#[unsafe(no_mangle)]
pub extern "C" fn realpath(_path: *const c_char, _resolved: *mut c_char) -> *mut c_char {
    // SAFETY: errno is this single-threaded component's global.
    unsafe { errno = ENOSYS };
    std::ptr::null_mut()
}
