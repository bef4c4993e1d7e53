//! Slides the engine has open: the decoded or opened slide, its content id (the cache key) and
//! its tissue mask, kept between requests so that panning over one slide pays for them once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use spahgc_slide::{BufferSlide, PixelBuffer, Rect, Slide, TissueMask};

use crate::EngineError;

/// Slides kept open. A plain image is held decoded (a her2st JPEG takes about 280 MB), so few.
const OPEN_SLIDES: usize = 2;

/// A slide ready for requests.
pub(crate) struct SlideContext {
    pub(crate) slide: Box<dyn Slide>,
    /// Identifies the pixels: the file's content id, or a hash of a buffer.
    pub(crate) id: Arc<str>,
    /// Whether embeddings of this slide go to the on-disk cache (files: yes; a host's buffer,
    /// seen once, no).
    pub(crate) on_disk: bool,
    /// The part of the pixel plane that can be read.
    pub(crate) bounds: Rect,
    mask: OnceLock<TissueMask>,
}

impl SlideContext {
    /// A host's pixel buffer whose top-left corner is at `origin`.
    pub(crate) fn of_buffer(buffer: &PixelBuffer, origin: (u64, u64)) -> Result<Self, EngineError> {
        let slide = BufferSlide::new("(pixel buffer)", buffer, origin)?;
        let bounds = slide.bounds();
        let mut hasher = Sha256::new();
        hasher.update(origin.0.to_le_bytes());
        hasher.update(origin.1.to_le_bytes());
        hasher.update(bounds.width.to_le_bytes());
        hasher.update(slide.pixels().as_raw());
        let id = format!("buffer-{:x}", hasher.finalize());
        Ok(Self { slide: Box::new(slide), id: id.into(), on_disk: false, bounds, mask: OnceLock::new() })
    }

    /// The tissue mask of the whole readable part, computed on first use.
    pub(crate) fn mask(&self) -> Result<&TissueMask, EngineError> {
        if let Some(mask) = self.mask.get() {
            return Ok(mask);
        }
        let mask = TissueMask::new(self.slide.as_ref(), self.bounds)?;
        Ok(self.mask.get_or_init(|| mask))
    }
}

/// The file's size and modification time: a slide replaced on disk is opened afresh.
type Stamp = (u64, Option<SystemTime>);

/// The most recently used open slides, most recent first.
#[derive(Default)]
pub(crate) struct OpenSlides {
    open: Mutex<Vec<(PathBuf, Stamp, Arc<SlideContext>)>>,
}

impl OpenSlides {
    /// The slide at `path`, opened now unless it is open and unchanged.
    pub(crate) fn get(&self, path: &Path) -> Result<Arc<SlideContext>, EngineError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| spahgc_slide::SlideError::Open { path: path.into(), reason: e.to_string() })?;
        let stamp = (meta.len(), meta.modified().ok());
        {
            let mut open = self.open.lock().expect("no panics while the list is held");
            if let Some(at) = open.iter().position(|(p, s, _)| p == path && *s == stamp) {
                let entry = open.remove(at);
                let context = entry.2.clone();
                open.insert(0, entry);
                return Ok(context);
            }
        }
        // Opened without the lock: decoding a large image must not stall requests for others.
        let slide = spahgc_slide::open(path)?;
        let id = spahgc_slide::content_id(path)?;
        let (width, height) = slide.dimensions();
        let bounds = Rect { x: 0, y: 0, width, height };
        let context = Arc::new(SlideContext { slide, id: id.into(), on_disk: true, bounds, mask: OnceLock::new() });
        let mut open = self.open.lock().expect("no panics while the list is held");
        open.retain(|(p, _, _)| p != path);
        open.insert(0, (path.into(), stamp, context.clone()));
        open.truncate(OPEN_SLIDES);
        Ok(context)
    }
}
