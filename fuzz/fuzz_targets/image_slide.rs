//! A plain-image slide (`ImageSlide::open`): a JPEG whose restart markers fall on block rows is
//! indexed and decoded band by band, anything else decoded whole; then a prefetch and reads of
//! three rectangles (corners and middle). The input is the file's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spahgc_slide::{ImageSlide, Rect, Slide};

/// Largest side of a read: a header may claim a 65535 × 65535 image whose data is missing.
const MAX_SIDE: u64 = 256;

fuzz_target!(|data: &[u8]| {
    let path = spahgc_fuzz::fresh_dir("image").join("slide.jpg");
    spahgc_fuzz::write(&path, data);
    let Ok(slide) = ImageSlide::open(&path) else { return };
    let (width, height) = slide.dimensions();
    assert!(width > 0 && height > 0, "an opened image has pixels");
    let (w, h) = (width.min(MAX_SIDE), height.min(MAX_SIDE));
    let corners = [(0, 0), ((width - w) / 2, (height - h) / 2), (width - w, height - h)];
    let rects = corners.map(|(x, y)| Rect { x: x as i64, y: y as i64, width: w, height: h });
    if slide.prefetch(&rects).is_err() {
        return;
    }
    for (x, y) in corners {
        if let Ok(pixels) = slide.read_level(0, x, y, w as u32, h as u32) {
            assert_eq!(pixels.dimensions(), (w as u32, h as u32), "a read is the size asked for");
        }
    }
});
