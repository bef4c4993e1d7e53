//! The her2st release (Andersson et al., Nat. Commun. 2021): legacy Spatial Transcriptomics
//! sections of HER2+ breast tumours.
//!
//! Layout under the data set directory, for a section `S`:
//! - `ST-cnts/S.tsv.gz`: spots × genes raw counts; the header row names the genes after an empty
//!   first cell, each row starts with the spot's array coordinates as `"{x}x{y}"`;
//! - `ST-spotfiles/S_selection.tsv`: columns `x y new_x new_y pixel_x pixel_y selected`, joined to
//!   the counts on `x`,`y`; `pixel_x`,`pixel_y` is the spot centre in full-resolution pixels;
//! - `ST-imgs/S.jpg`: the full-resolution H&E image.
//!
//! Sections are discovered from the files present, so a directory with more sections works
//! unchanged. Rows of the spot file marked `selected = 0` are left out. Every spot of the count
//! matrix must have a row in the spot file; spot-file rows without counts are spots that were
//! filtered out upstream and are ignored.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;

use flate2::read::GzDecoder;
use spahgc_core::{CountMatrix, Section, Spot};

use crate::DatasetError;

/// Resolution of the her2st images, which carry no resolution metadata: the array pitch of
/// 200 µm spans about 290 px.
pub const MICRONS_PER_PIXEL: f64 = 0.69;
/// Spot diameter of legacy Spatial Transcriptomics arrays (100 µm) in her2st image pixels.
pub const SPOT_DIAMETER_PX: f64 = 100.0 / MICRONS_PER_PIXEL;

/// Names of the sections in a her2st directory: those with a count file, sorted.
pub fn section_names(dir: &Path) -> Result<Vec<String>, DatasetError> {
    let counts_dir = dir.join("ST-cnts");
    let entries = std::fs::read_dir(&counts_dir).map_err(DatasetError::io(&counts_dir))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(DatasetError::io(&counts_dir))?;
        if let Some(name) = entry.file_name().to_str().and_then(|n| n.strip_suffix(".tsv.gz")) {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Loads section `name` of the her2st directory `dir`.
pub fn load(dir: &Path, name: &str) -> Result<Section, DatasetError> {
    let available = section_names(dir)?;
    if !available.iter().any(|s| s == name) {
        return Err(DatasetError::NoSuchSection {
            name: name.into(),
            dir: dir.join("ST-cnts"),
            available: available.join(", "),
        });
    }
    let image = dir.join("ST-imgs").join(format!("{name}.jpg"));
    if !image.is_file() {
        return Err(DatasetError::Io {
            path: image,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "section image not found"),
        });
    }
    let positions = read_spot_file(&dir.join("ST-spotfiles").join(format!("{name}_selection.tsv")))?;
    let (ids, counts) = read_counts(&dir.join("ST-cnts").join(format!("{name}.tsv.gz")))?;
    let unplaced: Vec<&str> =
        ids.iter().filter(|id| !positions.contains_key(id.as_str())).map(String::as_str).collect();
    if !unplaced.is_empty() {
        return Err(DatasetError::Inconsistent {
            section: name.into(),
            problem: format!(
                "{} of {} spots in the count file have no selected row in the spot file (first: {})",
                unplaced.len(),
                ids.len(),
                unplaced.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let spots = ids
        .into_iter()
        .map(|id| {
            let (x, y) = positions[id.as_str()];
            Spot { id, x, y }
        })
        .collect();
    Ok(Section {
        name: name.into(),
        spots,
        counts,
        image: Some(image),
        microns_per_pixel: Some(MICRONS_PER_PIXEL),
        spot_diameter_px: Some(SPOT_DIAMETER_PX),
    })
}

/// Reads the selected rows of a spot file as `"{x}x{y}"` → pixel centre.
fn read_spot_file(path: &Path) -> Result<HashMap<String, (f64, f64)>, DatasetError> {
    let file = std::fs::File::open(path).map_err(DatasetError::io(path))?;
    let mut lines = BufReader::new(file).lines();
    let header = match lines.next() {
        Some(line) => line.map_err(DatasetError::io(path))?,
        None => return Err(DatasetError::format(path, 1, "the file is empty")),
    };
    let header: Vec<&str> = header.trim_end().split('\t').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| DatasetError::format(path, 1, format!("missing column {name:?} (found {header:?})")))
    };
    let cols = [column("x")?, column("y")?, column("pixel_x")?, column("pixel_y")?];
    let selected = header.iter().position(|h| *h == "selected");
    let mut out = HashMap::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        let line = line.map_err(DatasetError::io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        let field = |c: usize| -> Result<f64, DatasetError> {
            let text = fields.get(c).ok_or_else(|| {
                DatasetError::format(path, line_no, format!("expected {} fields, found {}", header.len(), fields.len()))
            })?;
            text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                DatasetError::format(path, line_no, format!("field {}: expected a number, found {text:?}", header[c]))
            })
        };
        let [x, y, px, py] = [field(cols[0])?, field(cols[1])?, field(cols[2])?, field(cols[3])?];
        if let Some(c) = selected
            && field(c)? == 0.0
        {
            continue;
        }
        let id = format!("{x}x{y}");
        if out.insert(id.clone(), (px, py)).is_some() {
            return Err(DatasetError::format(path, line_no, format!("spot {id} is listed twice")));
        }
    }
    Ok(out)
}

/// Reads a gzipped spots × genes count table: spot ids and a sparse count matrix.
fn read_counts(path: &Path) -> Result<(Vec<String>, CountMatrix), DatasetError> {
    let file = std::fs::File::open(path).map_err(DatasetError::io(path))?;
    let mut lines = BufReader::new(GzDecoder::new(file)).lines();
    let header = match lines.next() {
        Some(line) => line.map_err(DatasetError::io(path))?,
        None => return Err(DatasetError::format(path, 1, "the file is empty")),
    };
    let genes: Vec<String> = header.trim_end_matches(['\r', '\n']).split('\t').skip(1).map(str::to_string).collect();
    let mut seen = HashSet::new();
    if let Some(dup) = genes.iter().find(|g| !seen.insert(g.as_str())) {
        return Err(DatasetError::format(path, 1, format!("gene {dup} is listed twice")));
    }
    let (mut ids, mut indptr, mut indices, mut values) = (Vec::new(), vec![0], Vec::new(), Vec::new());
    let mut seen_ids = HashSet::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 2;
        let line = line.map_err(DatasetError::io(path))?;
        let mut fields = line.trim_end_matches(['\r', '\n']).split('\t');
        let id = fields.next().unwrap_or_default();
        if id.is_empty() {
            continue;
        }
        if !seen_ids.insert(id.to_string()) {
            return Err(DatasetError::format(path, line_no, format!("spot {id} is listed twice")));
        }
        let mut n = 0;
        for (g, text) in fields.enumerate() {
            n += 1;
            // Most entries are zero: skip the float parser for them.
            if text == "0" {
                continue;
            }
            let v: f32 = text.parse().ok().filter(|v: &f32| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                let gene = genes.get(g).map_or("(beyond the header)", String::as_str);
                DatasetError::format(path, line_no, format!("spot {id}, gene {gene}: expected a count, found {text:?}"))
            })?;
            if v != 0.0 && g < genes.len() {
                indices.push(g as u32);
                values.push(v);
            }
        }
        if n != genes.len() {
            return Err(DatasetError::format(
                path,
                line_no,
                format!("spot {id}: expected {} counts, found {n}", genes.len()),
            ));
        }
        ids.push(normalise_spot_id(id, path, line_no)?);
        indptr.push(indices.len());
    }
    Ok((ids, CountMatrix::from_csr(genes, indptr, indices, values)?))
}

/// Parses a `"{x}x{y}"` spot id and rewrites it the way spot-file rows are keyed.
fn normalise_spot_id(id: &str, path: &Path, line: usize) -> Result<String, DatasetError> {
    let parsed = id.split_once('x').and_then(|(x, y)| Some((x.parse::<f64>().ok()?, y.parse::<f64>().ok()?)));
    match parsed {
        Some((x, y)) => Ok(format!("{x}x{y}")),
        None => Err(DatasetError::format(path, line, format!("spot id: expected \"{{x}}x{{y}}\", found {id:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn her2st_dir() -> Option<std::path::PathBuf> {
        spahgc_testdata::shared("her2st")
    }

    #[test]
    fn sections_join_counts_to_spot_centres() {
        let Some(dir) = her2st_dir() else { return };
        assert_eq!(section_names(&dir).unwrap(), ["B4", "C2", "C3", "C4", "C5"]);
        for (name, spots) in [("B4", 283), ("C2", 187), ("C3", 180), ("C4", 184), ("C5", 181)] {
            let s = load(&dir, name).unwrap();
            assert_eq!(s.spots.len(), spots, "{name}");
            assert_eq!(s.counts.n_spots(), spots, "{name}");
        }
        let c3 = load(&dir, "C3").unwrap();
        // First data row of C3's count file, and its row in the spot file (x=10, y=10).
        let first = &c3.spots[0];
        assert_eq!(first.id, "10x10");
        let spot_file = std::fs::read_to_string(dir.join("ST-spotfiles/C3_selection.tsv")).unwrap();
        let row: Vec<f64> = spot_file
            .lines()
            .map(|l| l.split('\t').filter_map(|f| f.parse().ok()).collect::<Vec<f64>>())
            .find(|r| r.len() == 7 && r[0] == 10.0 && r[1] == 10.0)
            .unwrap();
        assert_eq!((first.x, first.y), (row[4], row[5]));
        assert!(c3.counts.genes().len() > 10_000);
    }

    /// Copies the C3 files into a scratch data set, letting the test rewrite the spot file.
    fn scratch_copy(dir: &Path, spot_file: impl FnOnce(String) -> String) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for sub in ["ST-cnts", "ST-imgs", "ST-spotfiles"] {
            std::fs::create_dir(tmp.path().join(sub)).unwrap();
        }
        std::fs::copy(dir.join("ST-cnts/C3.tsv.gz"), tmp.path().join("ST-cnts/C3.tsv.gz")).unwrap();
        std::fs::write(tmp.path().join("ST-imgs/C3.jpg"), b"not read here").unwrap();
        let spots = std::fs::read_to_string(dir.join("ST-spotfiles/C3_selection.tsv")).unwrap();
        std::fs::write(tmp.path().join("ST-spotfiles/C3_selection.tsv"), spot_file(spots)).unwrap();
        tmp
    }

    #[test]
    fn counts_without_spot_rows_are_refused() {
        let Some(dir) = her2st_dir() else { return };
        let tmp =
            scratch_copy(&dir, |s| s.lines().filter(|l| !l.starts_with("10\t10\t")).collect::<Vec<_>>().join("\n"));
        let err = load(tmp.path(), "C3").unwrap_err().to_string();
        assert!(err.contains("section C3") && err.contains("1 of 180") && err.contains("10x10"), "{err}");
    }

    #[test]
    fn malformed_files_name_the_line_and_field() {
        let Some(dir) = her2st_dir() else { return };
        let tmp = scratch_copy(&dir, |s| s.replacen("6066.06", "6O66.06", 1));
        let err = load(tmp.path(), "C3").unwrap_err().to_string();
        assert!(err.contains("C3_selection.tsv, line 2") && err.contains("pixel_x"), "{err}");

        let spots = std::fs::read(dir.join("ST-spotfiles/C3_selection.tsv")).unwrap();
        std::fs::write(tmp.path().join("ST-spotfiles/C3_selection.tsv"), spots).unwrap();
        let counts = tmp.path().join("ST-cnts/C3.tsv.gz");
        let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&counts).unwrap(), Default::default());
        gz.write_all(b"\tA\tB\n10x10\t1\t2\n10x11\t3\n").unwrap();
        gz.finish().unwrap();
        let err = load(tmp.path(), "C3").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("expected 2 counts, found 1"), "{err}");
    }

    #[test]
    fn unknown_sections_list_the_available_ones() {
        let Some(dir) = her2st_dir() else { return };
        let err = load(&dir, "Z9").unwrap_err().to_string();
        assert!(err.contains("Z9") && err.contains("B4, C2, C3, C4, C5"), "{err}");
    }
}
