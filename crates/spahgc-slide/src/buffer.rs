//! Pixels a host already holds (a viewer's rendered region), as a [`Slide`] placed at the
//! buffer's position on the slide's pixel plane.

use std::path::{Path, PathBuf};

use image::Rgb;

use crate::{Rect, RgbImage, Slide, SlideError};

/// Largest buffer accepted, in pixels (a 16k × 16k region; 768 MiB once converted to RGB).
pub const MAX_BUFFER_PIXELS: u64 = 1 << 28;

/// Largest level-0 coordinate a buffer may reach (its origin plus its size): coordinates are
/// also signed (`Rect`) and `f64` (spot centres), which hold every integer up to 2^53 exactly.
pub const MAX_COORDINATE: u64 = 1 << 53;

/// How a host's pixels are laid out in memory, 8 bits per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// R, G, B.
    Rgb8,
    /// R, G, B, A with straight (not premultiplied) alpha.
    Rgba8,
    /// B, G, R, A with premultiplied alpha: what OpenSlide's `read_region` returns (a native-
    /// endian ARGB word on little-endian machines) and what many viewers' ARGB images hold.
    Bgra8Premultiplied,
}

impl PixelFormat {
    /// Bytes one pixel takes.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8Premultiplied => 4,
        }
    }

    /// One pixel composited over white (transparent parts are glass, as OpenSlide's are).
    fn to_rgb(self, p: &[u8]) -> [u8; 3] {
        match self {
            PixelFormat::Rgb8 => [p[0], p[1], p[2]],
            PixelFormat::Rgba8 => {
                let a = u16::from(p[3]);
                let over_white = |c: u8| ((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
                [over_white(p[0]), over_white(p[1]), over_white(p[2])]
            }
            PixelFormat::Bgra8Premultiplied => {
                let clear = 255 - p[3];
                [p[2].saturating_add(clear), p[1].saturating_add(clear), p[0].saturating_add(clear)]
            }
        }
    }
}

/// A host's pixel buffer: `height` rows of `width` pixels, rows `stride` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct PixelBuffer<'a> {
    pub pixels: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub format: PixelFormat,
}

/// What is wrong with a pixel buffer's layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    #[error("{width} x {height} pixels: sizes must be positive")]
    Empty { width: u32, height: u32 },
    #[error("{width} x {height} pixels is more than the {MAX_BUFFER_PIXELS}-pixel limit")]
    TooLarge { width: u32, height: u32 },
    #[error("stride {stride} bytes is less than a row of {width} {format:?} pixels ({row} bytes)")]
    StrideTooSmall { stride: usize, width: u32, format: PixelFormat, row: usize },
    #[error("{height} rows {stride} bytes apart are more bytes than can be addressed")]
    RowsOverflow { height: u32, stride: usize },
    #[error("{len} bytes for {height} rows of stride {stride} (at least {needed} needed)")]
    TooShort { len: usize, height: u32, stride: usize, needed: usize },
    #[error("origin {origin:?} puts the buffer beyond the largest coordinate, {MAX_COORDINATE}")]
    BeyondCoordinates { origin: (u64, u64) },
}

impl PixelBuffer<'_> {
    /// Checks the layout: non-empty, within [`MAX_BUFFER_PIXELS`], `stride` ≥ `width` × bytes
    /// per pixel, and enough bytes for every row (the last one needs no padding).
    pub fn check(&self) -> Result<(), BufferError> {
        let PixelBuffer { pixels, width, height, stride, format } = *self;
        if width == 0 || height == 0 {
            return Err(BufferError::Empty { width, height });
        }
        if u64::from(width) * u64::from(height) > MAX_BUFFER_PIXELS {
            return Err(BufferError::TooLarge { width, height });
        }
        let row = width as usize * format.bytes_per_pixel();
        if stride < row {
            return Err(BufferError::StrideTooSmall { stride, width, format, row });
        }
        let needed = stride.checked_mul(height as usize - 1).and_then(|n| n.checked_add(row));
        match needed {
            None => Err(BufferError::RowsOverflow { height, stride }),
            Some(needed) if pixels.len() < needed => {
                Err(BufferError::TooShort { len: pixels.len(), height, stride, needed })
            }
            Some(_) => Ok(()),
        }
    }

    /// [`check`](Self::check), and that the buffer placed at `origin` ends within
    /// [`MAX_COORDINATE`].
    pub fn check_at(&self, origin: (u64, u64)) -> Result<(), BufferError> {
        self.check()?;
        let reaches =
            |start: u64, size: u32| start.checked_add(u64::from(size)).is_some_and(|end| end <= MAX_COORDINATE);
        match reaches(origin.0, self.width) && reaches(origin.1, self.height) {
            true => Ok(()),
            false => Err(BufferError::BeyondCoordinates { origin }),
        }
    }
}

/// A pixel buffer converted to RGB and placed with its top-left corner at `origin` of the
/// slide's pixel plane. Only the buffer can be read; anything outside it reads as white glass.
pub struct BufferSlide {
    name: PathBuf,
    origin: (u64, u64),
    pixels: RgbImage,
}

impl BufferSlide {
    /// Checks the buffer ([`PixelBuffer::check`]) and its origin, and converts it to RGB.
    /// `name` stands for the buffer in messages.
    pub fn new(name: &str, buffer: &PixelBuffer, origin: (u64, u64)) -> Result<Self, SlideError> {
        buffer.check_at(origin).map_err(|source| SlideError::Buffer { name: name.to_owned(), source })?;
        let PixelBuffer { pixels, width, height, stride, format } = *buffer;
        let row = width as usize * format.bytes_per_pixel();
        let bpp = format.bytes_per_pixel();
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for y in 0..height as usize {
            for p in pixels[y * stride..y * stride + row].chunks_exact(bpp) {
                rgb.extend_from_slice(&format.to_rgb(p));
            }
        }
        let pixels = RgbImage::from_raw(width, height, rgb).expect("one RGB triple per pixel");
        Ok(Self { name: name.into(), origin, pixels })
    }

    /// The buffer's pixels, in RGB.
    pub fn pixels(&self) -> &RgbImage {
        &self.pixels
    }

    /// The level-0 rectangle the buffer covers.
    pub fn bounds(&self) -> Rect {
        let (w, h) = self.pixels.dimensions();
        Rect { x: self.origin.0 as i64, y: self.origin.1 as i64, width: u64::from(w), height: u64::from(h) }
    }
}

impl Slide for BufferSlide {
    fn path(&self) -> &Path {
        &self.name
    }

    /// The plane from the slide's corner to the buffer's far corner.
    fn dimensions(&self) -> (u64, u64) {
        let (w, h) = self.pixels.dimensions();
        (self.origin.0 + u64::from(w), self.origin.1 + u64::from(h))
    }

    fn microns_per_pixel(&self) -> Option<f64> {
        None
    }

    fn reads_are_copies(&self) -> bool {
        true
    }

    fn level_downsamples(&self) -> Vec<f64> {
        vec![1.0]
    }

    fn read_level(&self, level: usize, x: u64, y: u64, width: u32, height: u32) -> Result<RgbImage, SlideError> {
        if level != 0 {
            return Err(SlideError::BadRegion(format!("pixel buffer {} has only level 0", self.name.display())));
        }
        let mut out = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
        let (ox, oy) = self.origin;
        // The part of the request inside the buffer, in buffer coordinates.
        let (bw, bh) = (u64::from(self.pixels.width()), u64::from(self.pixels.height()));
        let (x0, y0) = (x.max(ox) - ox, y.max(oy) - oy);
        let (x1, y1) = (
            (x + u64::from(width)).min(ox + bw).saturating_sub(ox),
            (y + u64::from(height)).min(oy + bh).saturating_sub(oy),
        );
        if x1 > x0 && y1 > y0 {
            let part =
                image::imageops::crop_imm(&self.pixels, x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32);
            image::imageops::replace(&mut out, &*part, (x0 + ox - x) as i64, (y0 + oy - y) as i64);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_region;

    /// A 3 × 2 buffer in each format holding the same colours.
    fn buffers() -> [(PixelFormat, Vec<u8>, usize); 3] {
        let colours = [[10u8, 20, 30], [200, 100, 50], [0, 0, 0], [255, 255, 255], [1, 2, 3], [40, 50, 60]];
        let rgb: Vec<u8> = colours.iter().flatten().copied().collect();
        let rgba: Vec<u8> = colours.iter().flat_map(|c| [c[0], c[1], c[2], 255]).collect();
        // Rows padded to 16 bytes.
        let mut bgra = vec![0u8; 32];
        for (i, c) in colours.iter().enumerate() {
            let at = (i / 3) * 16 + (i % 3) * 4;
            bgra[at..at + 4].copy_from_slice(&[c[2], c[1], c[0], 255]);
        }
        [(PixelFormat::Rgb8, rgb, 9), (PixelFormat::Rgba8, rgba, 12), (PixelFormat::Bgra8Premultiplied, bgra, 16)]
    }

    #[test]
    fn every_format_reads_as_the_same_rgb() {
        let slides: Vec<BufferSlide> = buffers()
            .iter()
            .map(|(format, pixels, stride)| {
                let buffer = PixelBuffer { pixels, width: 3, height: 2, stride: *stride, format: *format };
                BufferSlide::new("test", &buffer, (100, 50)).unwrap()
            })
            .collect();
        let rect = Rect { x: 100, y: 50, width: 3, height: 2 };
        let first = read_region(&slides[0], rect, 3, 2).unwrap();
        assert_eq!(first.get_pixel(1, 0), &Rgb([200, 100, 50]));
        assert_eq!(first.get_pixel(2, 1), &Rgb([40, 50, 60]));
        for slide in &slides[1..] {
            assert_eq!(read_region(slide, rect, 3, 2).unwrap(), first);
        }
    }

    #[test]
    fn transparent_pixels_are_white_and_outside_the_buffer_is_glass() {
        let premultiplied = [0u8, 0, 0, 0, 50, 40, 30, 128];
        let buffer = PixelBuffer {
            pixels: &premultiplied,
            width: 2,
            height: 1,
            stride: 8,
            format: PixelFormat::Bgra8Premultiplied,
        };
        let slide = BufferSlide::new("test", &buffer, (10, 10)).unwrap();
        let out = read_region(&slide, Rect { x: 9, y: 10, width: 3, height: 1 }, 3, 1).unwrap();
        assert_eq!(out.get_pixel(0, 0), &Rgb([255, 255, 255]), "left of the buffer");
        assert_eq!(out.get_pixel(1, 0), &Rgb([255, 255, 255]), "fully transparent");
        assert_eq!(out.get_pixel(2, 0), &Rgb([157, 167, 177]), "half transparent over white");
        let straight = [100u8, 0, 200, 0];
        let buffer = PixelBuffer { pixels: &straight, width: 1, height: 1, stride: 4, format: PixelFormat::Rgba8 };
        let out = read_region(
            &BufferSlide::new("t", &buffer, (0, 0)).unwrap(),
            Rect { x: 0, y: 0, width: 1, height: 1 },
            1,
            1,
        );
        assert_eq!(out.unwrap().get_pixel(0, 0), &Rgb([255, 255, 255]));
    }

    #[test]
    fn bad_geometry_is_refused_with_the_numbers() {
        let pixels = vec![0u8; 64];
        let make = |width, height, stride, len: usize| {
            let buffer = PixelBuffer { pixels: &pixels[..len], width, height, stride, format: PixelFormat::Rgba8 };
            BufferSlide::new("viewport", &buffer, (0, 0)).err().map(|e| e.to_string())
        };
        let short_stride = make(4, 2, 15, 64).unwrap();
        assert!(short_stride.contains("stride 15") && short_stride.contains("16 bytes"), "{short_stride}");
        let short_buffer = make(4, 4, 16, 63).unwrap();
        assert!(short_buffer.contains("63 bytes") && short_buffer.contains("at least 64"), "{short_buffer}");
        assert!(make(0, 4, 16, 64).unwrap().contains("sizes must be positive"));
        assert!(make(1 << 20, 1 << 20, 4 << 20, 64).unwrap().contains("limit"));
        assert!(make(4, 4, 16, 64).is_none(), "the last row needs no padding");
        let buffer = PixelBuffer { pixels: &pixels, width: 4, height: 4, stride: 16, format: PixelFormat::Rgba8 };
        assert!(BufferSlide::new("v", &buffer, (u64::MAX - 2, 0)).is_err());
        // Found by fuzzing (`fuzz/fuzz_targets/engine_pixels.rs`): an origin past i64::MAX passed
        // this check, turned negative as a signed coordinate and panicked in the tissue mask.
        for origin in [(1 << 63, 0), (0, u64::MAX / 2 + 7), (MAX_COORDINATE - 3, 0)] {
            let err = BufferSlide::new("v", &buffer, origin).err().expect("refused").to_string();
            assert!(err.contains("largest coordinate"), "{err}");
        }
        assert!(BufferSlide::new("v", &buffer, (MAX_COORDINATE - 4, MAX_COORDINATE - 4)).is_ok());
    }
}
