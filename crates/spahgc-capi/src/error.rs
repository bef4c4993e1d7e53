//! Status codes, the thread-local last-error message, and the panic boundary every exported
//! function runs inside.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use spahgc_engine::{BufferError, EngineError, SlideError};

/// What a fallible call returns: `SPAHGC_STATUS_OK` (0) or the kind of failure, whose message
/// `spahgc_last_error()` then gives. Codes are grouped in ranges and never reused.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum spahgc_status {
    Ok = 0,
    /// A pointer argument was NULL.
    NullArgument = 1,
    /// An argument is out of range (a size of zero or one that overflows, a stride too small,
    /// an unknown enum value, an index past the end, a region the engine cannot predict).
    InvalidArgument = 2,
    /// A string argument is not UTF-8.
    InvalidUtf8 = 3,
    /// A caller's buffer is smaller than what must be written (nothing was written).
    BufferTooSmall = 4,
    /// A handle was already freed or is of another type (detected on a best-effort basis).
    InvalidHandle = 5,
    /// The model bundle is missing, corrupt, or of another format.
    Bundle = 100,
    /// The encoder (or the ONNX Runtime library) failed to load or run.
    Encoder = 101,
    /// Embedding spots failed (reading patches or the embedding cache).
    Embed = 102,
    /// The bundle's reference bank failed.
    Bank = 103,
    /// The SpaHGC network failed.
    Model = 104,
    /// The slide could not be opened or read.
    Slide = 105,
    /// The embedding cache directory could not be opened.
    Cache = 106,
    /// The request's cancel token was raised.
    Cancelled = 200,
    /// A bug in spahgc (a panic caught at the boundary); the message says where.
    Internal = 900,
}

/// A failed call: its status and message.
#[derive(Debug)]
pub(crate) struct Error {
    pub status: spahgc_status,
    pub message: String,
}

impl Error {
    pub fn new(status: spahgc_status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(spahgc_status::InvalidArgument, message)
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        let status = match e {
            EngineError::Bundle(_) => spahgc_status::Bundle,
            EngineError::Encoder(_) => spahgc_status::Encoder,
            EngineError::Embed(_) => spahgc_status::Embed,
            EngineError::Bank(_) => spahgc_status::Bank,
            EngineError::Model(_) => spahgc_status::Model,
            EngineError::Slide(SlideError::Buffer { source: BufferError::TooShort { .. }, .. }) => {
                spahgc_status::BufferTooSmall
            }
            EngineError::Slide(SlideError::Buffer { .. }) => spahgc_status::InvalidArgument,
            EngineError::Slide(_) => spahgc_status::Slide,
            EngineError::Input(_) => spahgc_status::InvalidArgument,
            EngineError::Cancelled => spahgc_status::Cancelled,
        };
        Error::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).expect("NULs were replaced");
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

/// The message of this thread's last failed call, as a pointer into thread-local storage.
pub(crate) fn last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// Runs an exported function's body: clears the last error, catches panics (as
/// `SPAHGC_STATUS_INTERNAL`), and records the message of a failure.
pub(crate) fn boundary(body: impl FnOnce() -> Result<(), Error>) -> spahgc_status {
    set_last_error("");
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panicked(payload)));
    match outcome {
        Ok(()) => spahgc_status::Ok,
        Err(e) => {
            set_last_error(&e.message);
            e.status
        }
    }
}

/// Runs the body of an exported function that returns no status (free functions, constructors),
/// returning `fallback` after recording the message when it fails or panics.
pub(crate) fn boundary_or<T>(fallback: T, body: impl FnOnce() -> Result<T, Error>) -> T {
    let mut value = None;
    boundary(|| body().map(|v| value = Some(v)));
    value.unwrap_or(fallback)
}

fn panicked(payload: Box<dyn Any + Send>) -> Error {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    Error::new(spahgc_status::Internal, format!("internal error (a bug in spahgc, please report it): {what}"))
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    fn message() -> String {
        unsafe { CStr::from_ptr(last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        let status = boundary(|| panic!("the {} thing", "broken"));
        assert_eq!(status, spahgc_status::Internal);
        assert!(message().contains("the broken thing"), "{}", message());
        assert_eq!(boundary(|| Ok(())), spahgc_status::Ok);
        assert_eq!(message(), "");
    }

    #[test]
    fn a_failure_records_its_message_without_nuls() {
        let status = boundary(|| Err(Error::new(spahgc_status::Slide, "bad\0slide")));
        assert_eq!(status, spahgc_status::Slide);
        assert_eq!(message(), "bad\\0slide");
        assert_eq!(boundary_or(7, || Err(Error::invalid("no"))), 7);
        assert_eq!(message(), "no");
    }
}
