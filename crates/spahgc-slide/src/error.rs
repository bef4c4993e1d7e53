use std::path::PathBuf;

/// Errors raised while opening or reading a slide.
#[derive(Debug, thiserror::Error)]
pub enum SlideError {
    /// The file could not be opened as a slide.
    #[error("cannot open slide {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// The slide opened but a read failed (truncated or corrupt tiles, I/O errors).
    #[error("cannot read slide {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    /// A region request that no slide can answer.
    #[error("bad region: {0}")]
    BadRegion(String),
    /// A pixel buffer that does not hold the image it describes, or lies beyond the coordinates.
    #[error("pixel buffer {name}: {source}")]
    Buffer { name: String, source: crate::BufferError },
}
