//! The C ABI of spahgc (`include/spahgc.h`, `libspahgc.so`, `libspahgc.a`): open an engine on a
//! model bundle, predict spots of a slide file or of a host's pixel buffer, read the results.
//!
//! Every exported function runs inside a panic boundary, checks each pointer and size, and
//! returns a [`spahgc_status`] (the message is in [`spahgc_last_error`]); outputs are written only
//! on success. Handles are opaque boxes with a magic number that freeing overwrites.

#![allow(non_camel_case_types)]

mod engine;
mod error;
mod ffi;
mod result;

use std::ffi::c_char;

pub use engine::*;
pub use error::spahgc_status;
pub use result::*;

/// The ABI major version: a new one is a new SONAME (`libspahgc.so.<version>`); the ABI within one
/// never changes incompatibly. Equal to the major version of the library.
pub const SPAHGC_ABI_VERSION: u32 = 0;

/// The ABI major version of the loaded library; compare it with `SPAHGC_ABI_VERSION` from the
/// header the host was compiled with. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn spahgc_abi_version() -> u32 {
    SPAHGC_ABI_VERSION
}

/// The library's version (semantic versioning, e.g. "0.1.0"): a static NUL-terminated string
/// that the caller must not free. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn spahgc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last call on this thread that failed, or "" when the last call succeeded:
/// a NUL-terminated UTF-8 string owned by the library, valid until the next spahgc call on this
/// thread (copy it to keep it). Never NULL. Thread-safe (each thread has its own message).
#[unsafe(no_mangle)]
pub extern "C" fn spahgc_last_error() -> *const c_char {
    error::last_error()
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    #[test]
    fn versions_match_the_package() {
        let version = unsafe { CStr::from_ptr(spahgc_version()) }.to_str().unwrap();
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        assert_eq!(spahgc_abi_version().to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
    }
}
