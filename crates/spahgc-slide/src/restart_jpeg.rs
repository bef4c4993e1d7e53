//! Baseline JPEGs whose restart markers fall on MCU-row boundaries, decoded band by band.
//!
//! A restart marker resets the entropy decoder, so the data between two markers decodes on its
//! own. When every restart interval starts a row of MCUs (the her2st H&E images have one
//! interval per MCU row), any run of rows can be cut out of the file as a small JPEG of its own
//! — the same headers with the band's height, the band's intervals with their markers
//! renumbered — and decoded without the rest of the image. [`BandedJpeg`] does that lazily:
//! a read decodes only the bands it touches that are not decoded yet, long runs on several
//! threads, and keeps them. A file without such markers is decoded whole, as before.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use image::ImageFormat;

use crate::{RgbImage, SlideError};

/// Fewest bands one decoding thread takes: below this the thread costs more than it saves.
const MIN_BANDS_PER_THREAD: usize = 8;

/// Where the pieces of a JPEG with row-aligned restart intervals lie.
#[derive(Debug)]
struct RestartIndex {
    width: u32,
    height: u32,
    /// Offset of the frame header's two height bytes.
    height_at: usize,
    /// Offset of the first entropy-coded byte (just after the scan header).
    scan_start: usize,
    /// Byte range of each restart interval's entropy-coded data, markers excluded.
    intervals: Vec<Range<usize>>,
    /// Pixel rows of one band, the smallest run of rows that starts and ends on intervals.
    band_height: u32,
    /// Restart intervals per band.
    intervals_per_band: usize,
}

impl RestartIndex {
    /// Indexes `bytes`, or `None` when they are not a single-scan baseline JPEG whose restart
    /// intervals start on MCU rows (those are decoded whole).
    fn new(bytes: &[u8]) -> Option<Self> {
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            return None;
        }
        let (mut at, mut frame, mut interval) = (2, None, 0usize);
        let scan_start = loop {
            while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
                at += 1; // fill bytes before a marker
            }
            let (&0xFF, Some(&marker)) = (bytes.get(at)?, bytes.get(at + 1)) else { return None };
            let length = usize::from(u16::from_be_bytes([*bytes.get(at + 2)?, *bytes.get(at + 3)?]));
            let segment = bytes.get(at + 4..at + 2 + length)?;
            match marker {
                // Baseline and extended sequential Huffman frames.
                0xC0 | 0xC1 => frame = Some((at + 5, Frame::parse(segment)?)),
                // Progressive, lossless, arithmetic-coded frames: decoded whole.
                0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
                0xDD => interval = usize::from(u16::from_be_bytes([*segment.first()?, *segment.get(1)?])),
                0xDA => {
                    let (_, frame) = frame.as_ref()?;
                    // One scan carrying every component; several scans cannot be cut by rows.
                    if usize::from(*segment.first()?) != frame.components {
                        return None;
                    }
                    break at + 2 + length;
                }
                0xD9 | 0xD0..=0xD7 => return None,
                _ => {}
            }
            at += 2 + length;
        };
        let (height_at, frame) = frame?;
        let per_row = frame.width.div_ceil(frame.mcu_width) as usize;
        let mcu_rows = frame.height.div_ceil(frame.mcu_height) as usize;
        let (rows_per_band, intervals_per_band) = match interval {
            0 => return None,
            n if n.is_multiple_of(per_row) => (n / per_row, 1),
            n if per_row.is_multiple_of(n) => (1, per_row / n),
            _ => return None,
        };
        let intervals = restart_intervals(bytes, scan_start)?;
        if intervals.len() != (mcu_rows * per_row).div_ceil(interval) {
            return None;
        }
        Some(Self {
            width: frame.width,
            height: frame.height,
            height_at,
            scan_start,
            intervals,
            band_height: u32::try_from(rows_per_band).ok()?.checked_mul(frame.mcu_height)?,
            intervals_per_band,
        })
    }

    fn bands(&self) -> usize {
        self.height.div_ceil(self.band_height) as usize
    }

    /// Pixel rows of `bands`.
    fn rows(&self, bands: &Range<usize>) -> Range<u32> {
        let row = |band: usize| (band as u32).saturating_mul(self.band_height).min(self.height);
        row(bands.start)..row(bands.end)
    }

    /// `bands` as a JPEG of their own: the headers with their height, their intervals with the
    /// restart markers numbered from zero again, and an end-of-image marker.
    fn cut(&self, bytes: &[u8], bands: &Range<usize>) -> Vec<u8> {
        let rows = self.rows(bands);
        let first = bands.start * self.intervals_per_band;
        let last = (bands.end * self.intervals_per_band).min(self.intervals.len());
        let data: usize = self.intervals[first..last].iter().map(|r| r.len() + 2).sum();
        let mut out = Vec::with_capacity(self.scan_start + data + 2);
        out.extend_from_slice(&bytes[..self.height_at]);
        out.extend_from_slice(&((rows.end - rows.start) as u16).to_be_bytes());
        out.extend_from_slice(&bytes[self.height_at + 2..self.scan_start]);
        for (n, interval) in self.intervals[first..last].iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(&[0xFF, 0xD0 + ((n - 1) % 8) as u8]);
            }
            out.extend_from_slice(&bytes[interval.clone()]);
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }
}

/// What the frame header says about the image and its MCUs.
struct Frame {
    width: u32,
    height: u32,
    components: usize,
    mcu_width: u32,
    mcu_height: u32,
}

impl Frame {
    fn parse(segment: &[u8]) -> Option<Self> {
        let [8, h0, h1, w0, w1, components, ..] = *segment else { return None };
        let (height, width) = (u32::from(u16::from_be_bytes([h0, h1])), u32::from(u16::from_be_bytes([w0, w1])));
        let sampling = segment.get(6..6 + 3 * usize::from(components))?.chunks(3).map(|c| c[1]);
        let (h_max, v_max) = sampling.fold((1, 1), |(h, v), s| (h.max(u32::from(s >> 4)), v.max(u32::from(s & 15))));
        // A single-component scan is not interleaved: its MCU is one 8×8 block.
        let (mcu_width, mcu_height) = if components == 1 { (8, 8) } else { (8 * h_max, 8 * v_max) };
        // Height 0 defers it to a DNL marker after the scan, which bands cannot carry.
        (height > 0 && width > 0 && components > 0).then_some(Self {
            width,
            height,
            components: usize::from(components),
            mcu_width,
            mcu_height,
        })
    }
}

/// The entropy-coded data of each restart interval of the scan starting at `start`, provided
/// the markers come in order and the scan ends with the end-of-image marker.
fn restart_intervals(bytes: &[u8], start: usize) -> Option<Vec<Range<usize>>> {
    let (mut intervals, mut begin, mut at) = (Vec::new(), start, start);
    loop {
        at += bytes.get(at..)?.iter().position(|&b| b == 0xFF)?;
        let mut marker = at + 1;
        while bytes.get(marker) == Some(&0xFF) {
            marker += 1;
        }
        match *bytes.get(marker)? {
            0x00 => {}
            m @ 0xD0..=0xD7 if usize::from(m - 0xD0) == intervals.len() % 8 => {
                intervals.push(begin..at);
                begin = marker + 1;
            }
            0xD9 => {
                intervals.push(begin..at);
                return Some(intervals);
            }
            _ => return None,
        }
        at = marker + 1;
    }
}

/// A JPEG decoded band by band on demand (see the module documentation).
#[derive(Debug)]
pub(crate) struct BandedJpeg {
    path: PathBuf,
    bytes: Vec<u8>,
    index: RestartIndex,
    /// Each band's pixels, once decoded: RGB rows of full width, in the buffer of the run of
    /// bands decoded together, from this byte offset.
    bands: Vec<OnceLock<(Arc<Vec<u8>>, usize)>>,
    /// Held while decoding, so that two readers never decode the same band twice.
    decoding: Mutex<()>,
}

impl BandedJpeg {
    /// Indexes the JPEG in `bytes`; `Err` hands the bytes back when it has no row-aligned
    /// restart intervals.
    pub(crate) fn new(path: &Path, bytes: Vec<u8>) -> Result<Self, Vec<u8>> {
        let Some(index) = RestartIndex::new(&bytes) else { return Err(bytes) };
        let bands = (0..index.bands()).map(|_| OnceLock::new()).collect();
        Ok(Self { path: path.into(), bytes, index, bands, decoding: Mutex::new(()) })
    }

    pub(crate) fn dimensions(&self) -> (u32, u32) {
        (self.index.width, self.index.height)
    }

    /// Rows `y..y + height`, columns `x..x + width` (inside the image), decoding what is missing.
    pub(crate) fn read(&self, x: u32, y: u32, width: u32, height: u32) -> Result<RgbImage, SlideError> {
        let band_height = self.index.band_height;
        self.decode_rows(std::slice::from_ref(&(y..y + height)))?;
        let row_bytes = self.index.width as usize * 3;
        let mut out = Vec::with_capacity(width as usize * height as usize * 3);
        for row in y..y + height {
            let (run, offset) = self.bands[(row / band_height) as usize].get().expect("decoded above");
            let start = offset + (row % band_height) as usize * row_bytes + x as usize * 3;
            out.extend_from_slice(&run[start..start + width as usize * 3]);
        }
        Ok(RgbImage::from_raw(width, height, out).expect("sized above"))
    }

    /// Decodes every band that `rows` touch and that is not decoded yet.
    pub(crate) fn decode_rows(&self, rows: &[Range<u32>]) -> Result<(), SlideError> {
        let band_height = self.index.band_height;
        let missing = || -> Vec<usize> {
            let mut bands: Vec<usize> = rows
                .iter()
                .filter(|r| r.start < r.end)
                .flat_map(|r| (r.start / band_height) as usize..r.end.div_ceil(band_height) as usize)
                .filter(|&b| b < self.bands.len() && self.bands[b].get().is_none())
                .collect();
            bands.sort_unstable();
            bands.dedup();
            bands
        };
        if missing().is_empty() {
            return Ok(());
        }
        let _decoding = self.decoding.lock().unwrap_or_else(|p| p.into_inner());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runs = split_runs(&missing(), threads);
        // Workers take runs in turn; where no thread can start (WebAssembly), this one does all.
        let next = AtomicUsize::new(0);
        let work = || -> Result<(), SlideError> {
            loop {
                let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) else { return Ok(()) };
                self.decode_run(run)?;
            }
        };
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads.min(runs.len()))
                .filter_map(|_| std::thread::Builder::new().name("spahgc-jpeg".into()).spawn_scoped(scope, work).ok())
                .collect();
            let mine = work();
            let theirs = helpers.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            theirs.fold(mine, Result::and)
        })
    }

    /// Decodes `bands` with one band of context on either side (chroma upsampling near a band's
    /// edge reads the neighbouring rows), so every band decodes to the pixels of a whole decode.
    fn decode_run(&self, bands: &Range<usize>) -> Result<(), SlideError> {
        let context = bands.start.saturating_sub(1)..(bands.end + 1).min(self.bands.len());
        let jpeg = self.index.cut(&self.bytes, &context);
        let fail = |reason: String| SlideError::Read { path: self.path.clone(), reason };
        let rows = self.index.rows(&context);
        let pixels = image::load_from_memory_with_format(&jpeg, ImageFormat::Jpeg)
            .map_err(|e| fail(format!("rows {}..{}: {e}", rows.start, rows.end)))?
            .into_rgb8();
        if pixels.dimensions() != (self.index.width, rows.end - rows.start) {
            return Err(fail(format!(
                "rows {}..{} decoded as {}×{}, expected {}×{}",
                rows.start,
                rows.end,
                pixels.width(),
                pixels.height(),
                self.index.width,
                rows.end - rows.start
            )));
        }
        let row_bytes = self.index.width as usize * 3;
        let pixels = Arc::new(pixels.into_raw());
        for band in bands.clone() {
            let offset = (self.index.rows(&(band..band + 1)).start - rows.start) as usize * row_bytes;
            let _ = self.bands[band].set((Arc::clone(&pixels), offset));
        }
        Ok(())
    }
}

/// Sorted band numbers as runs of nearby bands (short gaps filled), long runs split so that up
/// to `threads` pieces of similar size can be decoded at once.
fn split_runs(bands: &[usize], threads: usize) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for &band in bands {
        match runs.last_mut() {
            // A gap of two bands or fewer costs what the context bands of a new run would.
            Some(run) if band <= run.end + 2 => run.end = band + 1,
            _ => runs.push(band..band + 1),
        }
    }
    let piece = bands.len().div_ceil(threads.max(1)).max(MIN_BANDS_PER_THREAD);
    runs.into_iter()
        .flat_map(|run| {
            (run.start..run.end)
                .step_by(piece)
                .map(move |start| start..(start + piece).min(run.end))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_split_for_threads_but_not_below_the_minimum() {
        assert_eq!(split_runs(&[1, 2, 3, 7, 8], 2), vec![1..4, 7..9]);
        assert_eq!(split_runs(&[1, 2, 5, 8], 2), vec![1..9], "gaps of two bands are decoded");
        let long: Vec<usize> = (0..40).collect();
        assert_eq!(split_runs(&long, 2), vec![0..20, 20..40]);
        assert_eq!(split_runs(&long, 16), (0..5).map(|i| i * 8..i * 8 + 8).collect::<Vec<_>>());
        assert!(split_runs(&[], 2).is_empty());
    }

    #[test]
    fn files_without_row_aligned_restart_markers_are_not_indexed() {
        let mut plain = Vec::new();
        image::DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 24, image::Rgb([200, 100, 50])))
            .write_to(&mut std::io::Cursor::new(&mut plain), ImageFormat::Jpeg)
            .unwrap();
        assert!(RestartIndex::new(&plain).is_none(), "the image crate writes no restart markers");
        assert!(RestartIndex::new(b"not a jpeg").is_none());
        assert!(RestartIndex::new(&[0xFF, 0xD8, 0xFF]).is_none());
    }

    /// The H&E image of her2st section C5 and its bytes, when the shared data is there.
    fn her2st_image() -> Option<(PathBuf, Vec<u8>)> {
        let Some(her2st) = spahgc_testdata::shared("her2st") else {
            spahgc_testdata::missing("her2st");
            return None;
        };
        let path = her2st.join("ST-imgs/C5.jpg");
        let bytes = std::fs::read(&path).unwrap();
        Some((path, bytes))
    }

    /// Every band decoded on its own equals the same rows of a whole decode (her2st images have
    /// one restart interval per MCU row).
    #[test]
    fn bands_decode_to_the_pixels_of_a_whole_decode() {
        let Some((path, bytes)) = her2st_image() else { return };
        let whole = image::load_from_memory(&bytes).unwrap().into_rgb8();
        let jpeg = BandedJpeg::new(&path, bytes.clone()).expect("her2st images restart on every MCU row");
        assert_eq!(jpeg.dimensions(), whole.dimensions());
        assert_eq!(jpeg.index.band_height, 16);
        // Scattered reads first (bands decoded apart, with context), then everything.
        let (w, h) = whole.dimensions();
        for (x, y, width, height) in [(0, 0, w, 1), (1000, 2001, 300, 77), (9, h - 40, 500, 40), (0, 4000, w, 33)] {
            let read = jpeg.read(x, y, width, height).unwrap();
            assert!(
                read == image::imageops::crop_imm(&whole, x, y, width, height).to_image(),
                "{x},{y} {width}×{height}"
            );
        }
        assert!(jpeg.read(0, 0, w, h).unwrap() == whole, "all bands, most decoded in runs of their own");
        // A band cut out of the file is a JPEG of its own, restart markers numbered from zero.
        let cut = jpeg.index.cut(&bytes, &(3..13));
        let decoded = image::load_from_memory(&cut).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (w, 160));
    }

    #[test]
    fn a_damaged_scan_is_not_indexed() {
        let Some((path, bytes)) = her2st_image() else { return };
        let index = RestartIndex::new(&bytes).unwrap();
        // A restart marker out of sequence: the file is decoded whole instead.
        let mut swapped = bytes.clone();
        let marker = index.intervals[5].end;
        swapped[marker + 1] ^= 1;
        assert!(RestartIndex::new(&swapped).is_none());
        // Truncated: no end-of-image marker closes the scan.
        assert!(RestartIndex::new(&bytes[..bytes.len() / 2]).is_none());
        // Any byte of a small banded JPEG changed, or the file cut anywhere: indexing and reading
        // answer (a value or an error) and never panic.
        let small = index.cut(&bytes, &(0..3));
        let scan = RestartIndex::new(&small).expect("a cut is banded too").scan_start;
        let positions = (0..scan).step_by(7).chain((scan..small.len()).step_by(211));
        for (at, value) in positions.flat_map(|at| [(at, 0xFF), (at, small[at] ^ 0x5A)]) {
            let mut changed = small.clone();
            changed[at] = value;
            for bytes in [changed, small[..at].to_vec()] {
                if let Ok(jpeg) = BandedJpeg::new(&path, bytes) {
                    let (w, h) = jpeg.dimensions();
                    let _ = jpeg.read(0, 0, w, h);
                }
            }
        }
    }
}
