//! The entry file format: a fixed 128-byte header followed by the little-endian payload.
//!
//! | offset | bytes | field                                                            |
//! |-------:|------:|------------------------------------------------------------------|
//! |      0 |     8 | magic `b"SPAHGCEM"`                                              |
//! |      8 |     4 | format version, `u32` LE (1)                                     |
//! |     12 |     4 | precision, `u32` LE: 1 = f16, 2 = f32                            |
//! |     16 |     8 | rows, `u64` LE                                                   |
//! |     24 |     8 | dim, `u64` LE                                                    |
//! |     32 |    64 | key digest, lowercase ASCII hex                                  |
//! |     96 |    32 | SHA-256 of bytes 0..96 followed by the payload                   |
//! |    128 |     … | payload: rows × dim values, row-major, little-endian             |
//!
//! The checksum covers the header fields as well as the payload, so a header whose rows and dim
//! were swapped (same product, same length) is caught too. The header is 128 bytes so that the
//! payload of a page-aligned memory map is aligned for `f32` and `f16` views.

use sha2::{Digest, Sha256};

/// Magic bytes opening every entry file.
const MAGIC: &[u8; 8] = b"SPAHGCEM";
/// Version of this layout; a change also changes the `v<N>` directory the entries live in.
pub const FORMAT_VERSION: u32 = 1;
/// Header length in bytes; the payload starts here.
pub const HEADER_LEN: usize = 128;
const DIGEST_AT: usize = 32;
const CHECKSUM_AT: usize = 96;

/// Numeric precision of a stored payload.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Precision {
    /// IEEE 754 half precision (2 bytes per value): half the disk space, about 3 significant digits.
    F16,
    /// IEEE 754 single precision (4 bytes per value): stored exactly as given.
    #[default]
    F32,
}

impl Precision {
    /// Bytes one stored value takes.
    pub fn bytes_per_value(self) -> usize {
        match self {
            Precision::F16 => 2,
            Precision::F32 => 4,
        }
    }

    fn code(self) -> u32 {
        match self {
            Precision::F16 => 1,
            Precision::F32 => 2,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Precision::F16),
            2 => Some(Precision::F32),
            _ => None,
        }
    }
}

/// Shape and precision of a stored entry, as read from its header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EntryShape {
    /// Number of embeddings (spots).
    pub rows: usize,
    /// Length of each embedding.
    pub dim: usize,
    /// Precision the values are stored at.
    pub precision: Precision,
}

/// Why an entry file was rejected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("not a regular file")]
    NotAFile,
    #[error("{0} bytes long, shorter than the {HEADER_LEN}-byte header")]
    Truncated(u64),
    #[error("bad magic bytes")]
    Magic,
    #[error("unsupported format version {0}")]
    Version(u32),
    #[error("unknown precision code {0}")]
    Precision(u32),
    #[error("header says {rows} × {dim} values, which does not match the {len}-byte file")]
    Length { rows: u64, dim: u64, len: u64 },
    #[error("entry belongs to another key")]
    ForeignKey,
    #[error("checksum mismatch")]
    Checksum,
    #[error("file name is not the digest of a key in its shard directory")]
    Misplaced,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks the fixed header fields of an entry `file_len` bytes long, whose first bytes are
/// `header`, and returns the shape it declares. Does not check the key or the checksum.
///
/// All arithmetic on header values is checked, so a hostile header can neither panic nor make a
/// caller allocate more than the file holds.
pub(crate) fn parse_header(header: &[u8], file_len: u64) -> Result<EntryShape, Invalid> {
    if header.len() < HEADER_LEN || file_len < HEADER_LEN as u64 {
        return Err(Invalid::Truncated(file_len.min(header.len() as u64)));
    }
    if &header[..MAGIC.len()] != MAGIC {
        return Err(Invalid::Magic);
    }
    let version = u32_at(header, 8);
    if version != FORMAT_VERSION {
        return Err(Invalid::Version(version));
    }
    let code = u32_at(header, 12);
    let precision = Precision::from_code(code).ok_or(Invalid::Precision(code))?;
    let (rows, dim) = (u64_at(header, 16), u64_at(header, 24));
    let payload = file_len - HEADER_LEN as u64;
    let expected = rows.checked_mul(dim).and_then(|n| n.checked_mul(precision.bytes_per_value() as u64));
    let bad_length = Invalid::Length { rows, dim, len: file_len };
    if expected != Some(payload) {
        return Err(bad_length);
    }
    match (usize::try_from(rows), usize::try_from(dim)) {
        (Ok(rows), Ok(dim)) => Ok(EntryShape { rows, dim, precision }),
        _ => Err(bad_length),
    }
}

/// Fully verifies a complete entry file `bytes` against the expected key digest: header fields,
/// payload length, key and checksum.
pub(crate) fn verify(bytes: &[u8], key_digest: &str) -> Result<EntryShape, Invalid> {
    let shape = parse_header(bytes, bytes.len() as u64)?;
    if &bytes[DIGEST_AT..CHECKSUM_AT] != key_digest.as_bytes() {
        return Err(Invalid::ForeignKey);
    }
    if bytes[CHECKSUM_AT..HEADER_LEN] != checksum(bytes)[..] {
        return Err(Invalid::Checksum);
    }
    Ok(shape)
}

/// SHA-256 of the header up to the checksum field, followed by the payload.
fn checksum(file: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&file[..CHECKSUM_AT]);
    h.update(&file[HEADER_LEN..]);
    h.finalize().into()
}

/// Encodes a complete entry file. `values.len()` must equal `rows * dim` (the caller checks) and
/// `key_digest` must be the 64-character hex digest.
pub(crate) fn encode(key_digest: &str, rows: usize, dim: usize, values: &[f32], precision: Precision) -> Vec<u8> {
    let mut file = Vec::with_capacity(HEADER_LEN + values.len() * precision.bytes_per_value());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&precision.code().to_le_bytes());
    file.extend_from_slice(&(rows as u64).to_le_bytes());
    file.extend_from_slice(&(dim as u64).to_le_bytes());
    file.extend_from_slice(key_digest.as_bytes());
    file.resize(HEADER_LEN, 0);
    match precision {
        Precision::F32 => values.iter().for_each(|v| file.extend_from_slice(&v.to_le_bytes())),
        Precision::F16 => values.iter().for_each(|&v| file.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())),
    }
    let sum = checksum(&file);
    file[CHECKSUM_AT..HEADER_LEN].copy_from_slice(&sum);
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn encode_then_verify_round_trips_the_shape() {
        let file = encode(DIGEST, 2, 3, &[1.0; 6], Precision::F16);
        assert_eq!(file.len(), HEADER_LEN + 12);
        let shape = verify(&file, DIGEST).unwrap();
        assert_eq!(shape, EntryShape { rows: 2, dim: 3, precision: Precision::F16 });
    }

    #[test]
    fn swapped_rows_and_dim_fail_the_checksum() {
        let mut file = encode(DIGEST, 2, 3, &[1.0; 6], Precision::F32);
        let (rows, dim) = (file[16..24].to_vec(), file[24..32].to_vec());
        file[16..24].copy_from_slice(&dim);
        file[24..32].copy_from_slice(&rows);
        assert!(matches!(verify(&file, DIGEST), Err(Invalid::Checksum)));
    }

    #[test]
    fn hostile_shapes_are_rejected_without_overflow() {
        let mut file = encode(DIGEST, 1, 1, &[1.0], Precision::F32);
        for (rows, dim) in [(u64::MAX, u64::MAX), (u64::MAX, 2), (1 << 62, 1), (0, 0), (1, 2)] {
            file[16..24].copy_from_slice(&rows.to_le_bytes());
            file[24..32].copy_from_slice(&dim.to_le_bytes());
            assert!(matches!(parse_header(&file, file.len() as u64), Err(Invalid::Length { .. })), "{rows}×{dim}");
        }
        assert!(matches!(parse_header(&file[..100], 100), Err(Invalid::Truncated(100))));
    }
}
