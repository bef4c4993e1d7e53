//! Checks of the arguments C passes in: NULL pointers, UTF-8 strings, buffer sizes and handles.

use std::ffi::{CStr, c_char};
use std::path::Path;

use crate::error::{Error, spahgc_status};

/// A boxed handle whose first field is a magic number, overwritten when it is freed, so that
/// using a freed handle or one of another type is detected while its memory is still mapped.
pub(crate) trait Handle: Sized {
    /// This type's magic number.
    const MAGIC: u64;
    /// The type's C name, for messages.
    const NAME: &'static str;
    fn magic(&self) -> u64;
    fn magic_mut(&mut self) -> &mut u64;

    /// Moves `self` to the heap and hands C the pointer.
    fn into_raw(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }
}

/// Implements [`Handle`] for a struct with a `magic: u64` field.
macro_rules! handle_type {
    ($type:ident, $magic:expr) => {
        impl $crate::ffi::Handle for $type {
            const MAGIC: u64 = $magic;
            const NAME: &'static str = stringify!($type);
            fn magic(&self) -> u64 {
                self.magic
            }
            fn magic_mut(&mut self) -> &mut u64 {
                &mut self.magic
            }
        }
    };
}
pub(crate) use handle_type;

/// Magic number written over a freed handle's.
const FREED: u64 = 0xdead_dead_dead_dead;

/// Borrows the handle behind `ptr`.
///
/// # Safety
/// `ptr` is NULL or points to memory of at least `size_of::<T>()` bytes (a live handle, or a
/// freed one whose memory was not returned to the system).
pub(crate) unsafe fn handle<'a, T: Handle>(ptr: *const T, arg: &str) -> Result<&'a T, Error> {
    let handle = unsafe { ptr.as_ref() }.ok_or_else(|| null(arg))?;
    match handle.magic() == T::MAGIC {
        true => Ok(handle),
        false => Err(Error::new(
            spahgc_status::InvalidHandle,
            format!("{arg} is not a live {}: it was freed, or is of another type", T::NAME),
        )),
    }
}

/// Frees the handle behind `ptr`: a no-op for NULL, refused (with the last error set) for a
/// handle already freed or of another type.
///
/// # Safety
/// As [`handle`]; no other thread uses the handle.
pub(crate) unsafe fn free<T: Handle>(ptr: *mut T, arg: &str) -> Result<(), Error> {
    if ptr.is_null() {
        return Ok(());
    }
    unsafe { handle(ptr, arg) }?;
    let mut boxed = unsafe { Box::from_raw(ptr) };
    *boxed.magic_mut() = FREED;
    drop(boxed);
    Ok(())
}

pub(crate) fn null(arg: &str) -> Error {
    Error::new(spahgc_status::NullArgument, format!("{arg} is NULL"))
}

/// Borrows a caller's input, checked for NULL.
///
/// # Safety
/// `ptr` is NULL or valid for reads of a `T`.
pub(crate) unsafe fn input<'a, T>(ptr: *const T, arg: &str) -> Result<&'a T, Error> {
    unsafe { ptr.as_ref() }.ok_or_else(|| null(arg))
}

/// Borrows a caller's optional input: NULL is `None`.
///
/// # Safety
/// `ptr` is NULL or valid for reads of a `T`.
pub(crate) unsafe fn optional<'a, T>(ptr: *const T) -> Option<&'a T> {
    unsafe { ptr.as_ref() }
}

/// Checks an output pointer for NULL and alignment; it is written only once the call succeeds.
pub(crate) fn output<T>(ptr: *mut T, arg: &str) -> Result<*mut T, Error> {
    match () {
        _ if ptr.is_null() => Err(null(arg)),
        _ if !ptr.is_aligned() => Err(Error::invalid(format!("{arg} is not aligned for its type"))),
        _ => Ok(ptr),
    }
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn string<'a>(ptr: *const c_char, arg: &str) -> Result<&'a str, Error> {
    let bytes = unsafe { ptr.as_ref().map(|_| CStr::from_ptr(ptr)) }.ok_or_else(|| null(arg))?;
    bytes.to_str().map_err(|e| {
        Error::new(spahgc_status::InvalidUtf8, format!("{arg} is not UTF-8 ({e}): {}", bytes.to_string_lossy()))
    })
}

/// A path argument: a NUL-terminated UTF-8 string, not empty.
///
/// # Safety
/// As [`string`].
pub(crate) unsafe fn path<'a>(ptr: *const c_char, arg: &str) -> Result<&'a Path, Error> {
    match unsafe { string(ptr, arg) }? {
        "" => Err(Error::invalid(format!("{arg} is empty"))),
        s => Ok(Path::new(s)),
    }
}

/// Copies `values` into the caller's buffer of `len` elements at `out`; a buffer smaller than
/// `values` is refused and left untouched. With no values, `out` is not touched and may be NULL.
///
/// # Safety
/// `out` is NULL or valid for writes of `len` elements.
pub(crate) unsafe fn copy_out<T: Copy>(values: &[T], out: *mut T, len: usize, arg: &str) -> Result<(), Error> {
    if values.is_empty() {
        // Nothing to write (a result without spots): any buffer, NULL included, will do.
        return Ok(());
    }
    let out = output(out, arg)?;
    if len < values.len() {
        return Err(Error::new(
            spahgc_status::BufferTooSmall,
            format!("{arg} holds {len} elements, {} are needed", values.len()),
        ));
    }
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len()) };
    Ok(())
}
