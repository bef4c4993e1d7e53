//! Content-derived slide identity, so caches survive renames and never confuse two files that
//! share a path.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::SlideError;

/// Files up to this size are hashed whole.
const WHOLE_FILE_LIMIT: u64 = 64 << 20;
/// Larger files are identified by their size and this many evenly spaced samples.
const SAMPLES: u64 = 64;
const SAMPLE_LEN: u64 = 64 << 10;

/// A hex SHA-256 that identifies a slide file by its content.
///
/// Files up to 64 MiB are hashed entirely. Larger whole-slide images (often several GiB) are
/// identified by their length plus 64 samples of 64 KiB spread evenly over the file, always
/// including the first and last bytes: reading 4 MiB instead of gigabytes, while any re-scan,
/// re-compression or crop changes the header, the tile table or the length.
pub fn content_id(path: &Path) -> Result<String, SlideError> {
    let read_err = |e: std::io::Error| SlideError::Read { path: path.into(), reason: e.to_string() };
    let mut file = File::open(path).map_err(|e| SlideError::Open { path: path.into(), reason: e.to_string() })?;
    let len = file.metadata().map_err(read_err)?.len();
    let mut hasher = Sha256::new();
    hasher.update(len.to_le_bytes());
    if len <= WHOLE_FILE_LIMIT {
        std::io::copy(&mut file, &mut hasher).map_err(read_err)?;
    } else {
        let mut buf = vec![0u8; SAMPLE_LEN as usize];
        for i in 0..SAMPLES {
            let offset = (len - SAMPLE_LEN) * i / (SAMPLES - 1);
            file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
            file.read_exact(&mut buf).map_err(read_err)?;
            hasher.update(&buf);
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_follows_content_not_path() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        std::fs::write(&a, b"slide bytes").unwrap();
        std::fs::write(&b, b"slide bytes").unwrap();
        std::fs::write(&c, b"slide bytez").unwrap();
        assert_eq!(content_id(&a).unwrap(), content_id(&b).unwrap());
        assert_ne!(content_id(&a).unwrap(), content_id(&c).unwrap());
    }
}
