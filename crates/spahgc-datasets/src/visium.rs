//! 10x Visium sections, read from a Space Ranger `outs/` directory.
//!
//! What is read, and the decisions taken on the way:
//!
//! - **Counts**: `filtered_feature_bc_matrix.h5` if present, else the Matrix Market directory
//!   `filtered_feature_bc_matrix/` (`matrix.mtx[.gz]`, `barcodes.tsv[.gz]` and
//!   `features.tsv[.gz]`, or `genes.tsv[.gz]` from older versions). Only features of type
//!   `Gene Expression` are kept when the file records feature types. Genes are named by their
//!   feature name; a name carried by several features (10x references have a few) is made unique
//!   by appending the feature id to every feature carrying it (`TBCE_ENSG00000284770`). Entries
//!   within a spot are sorted by gene, and repeated entries of one gene are summed.
//! - **Spots**: one per count-matrix barcode, in count-matrix order, with its centre from
//!   `spatial/tissue_positions.csv` (with header) or `spatial/tissue_positions_list.csv`
//!   (without): x = `pxl_col_in_fullres`, y = `pxl_row_in_fullres`, in full-resolution pixels.
//!   Position rows of barcodes not in the matrix (spots off the tissue) are ignored.
//! - **Scale**: from `spatial/scalefactors_json.json` when present; the spot diameter is
//!   `spot_diameter_fullres`, and since Visium spots are 55 µm across the resolution is
//!   55 / `spot_diameter_fullres` µm per pixel.
//! - **Image**: the full-resolution image the pixel coordinates refer to is not part of `outs/`,
//!   so the section's `image` is `None`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, FixedUnicode, TypeDescriptor, VarLenAscii, VarLenUnicode};
use serde::Deserialize;
use spahgc_core::{CountMatrix, Section, Spot};

use crate::DatasetError;

/// Diameter of a Visium spot in micrometres.
const SPOT_DIAMETER_UM: f64 = 55.0;

/// Column names of the tissue positions file, in the order of the headerless variant.
const POSITION_COLUMNS: [&str; 6] =
    ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"];

/// The feature type kept when a count matrix records feature types.
const GENE_EXPRESSION: &str = "Gene Expression";

/// Loads a Space Ranger `outs/` directory as a Section.
///
/// The section is named after the directory, or after its parent when the directory is called
/// `outs`. See the module documentation for what is read.
pub fn load(outs: &Path) -> Result<Section, DatasetError> {
    let name = section_name(outs);
    let (counts_path, counts) = read_counts(outs)?;
    let (positions_path, positions) = read_positions(outs)?;
    let mut spots = Vec::with_capacity(counts.barcodes.len());
    for barcode in counts.barcodes {
        let Some(&(x, y)) = positions.get(&barcode) else {
            return Err(DatasetError::Inconsistent {
                section: name,
                problem: format!(
                    "barcode {barcode} of {} has no row in {}",
                    counts_path.display(),
                    positions_path.display()
                ),
            });
        };
        spots.push(Spot { id: barcode, x, y });
    }
    let scale_path = outs.join("spatial").join("scalefactors_json.json");
    let scale = if scale_path.try_exists().map_err(DatasetError::io(&scale_path))? {
        Some(read_scale_factors(&scale_path)?)
    } else {
        None
    };
    Ok(Section {
        name,
        spots,
        counts: counts.matrix,
        image: None,
        microns_per_pixel: scale.as_ref().map(ScaleFactors::microns_per_pixel),
        spot_diameter_px: scale.as_ref().map(|s| s.spot_diameter_fullres),
    })
}

/// The scale factors Space Ranger writes to `spatial/scalefactors_json.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScaleFactors {
    /// Spot diameter in full-resolution pixels.
    pub spot_diameter_fullres: f64,
    /// Full-resolution pixels × this = pixels of `tissue_hires_image.png`.
    pub tissue_hires_scalef: f64,
    /// Full-resolution pixels × this = pixels of `tissue_lowres_image.png`.
    pub tissue_lowres_scalef: f64,
}

impl ScaleFactors {
    /// Resolution of the full-resolution image: Visium spots are 55 µm across.
    pub fn microns_per_pixel(&self) -> f64 {
        SPOT_DIAMETER_UM / self.spot_diameter_fullres
    }
}

/// Reads a `scalefactors_json.json` file; other fields than those of [`ScaleFactors`] are ignored.
pub fn read_scale_factors(path: &Path) -> Result<ScaleFactors, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(DatasetError::io(path))?;
    let scale: ScaleFactors =
        serde_json::from_str(&text).map_err(|e| DatasetError::format(path, e.line(), e.to_string()))?;
    let checks = [
        ("spot_diameter_fullres", scale.spot_diameter_fullres),
        ("tissue_hires_scalef", scale.tissue_hires_scalef),
        ("tissue_lowres_scalef", scale.tissue_lowres_scalef),
    ];
    for (field, value) in checks {
        if !(value.is_finite() && value > 0.0) {
            let key = format!("\"{field}\"");
            let line = text.lines().position(|l| l.contains(&key)).unwrap_or(0) + 1;
            return Err(DatasetError::format(path, line, format!("{field} must be a positive number, found {value}")));
        }
    }
    Ok(scale)
}

/// Directory name of `outs`, or of its parent when it is literally called `outs`.
fn section_name(outs: &Path) -> String {
    let path = outs.canonicalize().unwrap_or_else(|_| outs.to_path_buf());
    let dir = match path.file_name() {
        Some(name) if name == "outs" => path.parent().and_then(Path::file_name),
        other => other,
    };
    match dir {
        Some(name) => name.to_string_lossy().into_owned(),
        None => path.display().to_string(),
    }
}

/// A count matrix with the barcode of each of its rows.
struct Counts {
    barcodes: Vec<String>,
    matrix: CountMatrix,
}

/// One feature (column) of a count file.
struct Feature {
    id: String,
    name: String,
    /// `None` when the file records no feature types (every feature is then a gene).
    kind: Option<String>,
}

/// Rows of a count matrix in compressed sparse form, columns being the features of the file.
struct Csr {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

/// Reads the filtered count matrix of `outs`, returning the file or directory it came from.
fn read_counts(outs: &Path) -> Result<(PathBuf, Counts), DatasetError> {
    let h5 = outs.join("filtered_feature_bc_matrix.h5");
    if h5.try_exists().map_err(DatasetError::io(&h5))? {
        let counts = read_h5(&h5)?;
        return Ok((h5, counts));
    }
    let dir = outs.join("filtered_feature_bc_matrix");
    if dir.try_exists().map_err(DatasetError::io(&dir))? {
        let counts = read_mtx_dir(&dir)?;
        return Ok((dir, counts));
    }
    Err(DatasetError::Io {
        path: outs.into(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            format!("no count matrix: expected {} or the directory {}", h5.display(), dir.display()),
        ),
    })
}

/// Which features of a count file become which gene columns.
struct GeneColumns {
    /// Output column of each feature; `None` for features that are not genes.
    columns: Vec<Option<u32>>,
    /// Unique gene names, one per output column.
    genes: Vec<String>,
}

/// Picks the gene features and names them uniquely.
///
/// On failure returns the index of the offending feature and the problem.
fn gene_columns(features: &[Feature]) -> Result<GeneColumns, (usize, String)> {
    let is_gene = |f: &Feature| f.kind.as_deref().is_none_or(|k| k == GENE_EXPRESSION);
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for f in features.iter().filter(|f| is_gene(f)) {
        *uses.entry(f.name.as_str()).or_default() += 1;
    }
    let mut columns = Vec::with_capacity(features.len());
    let mut genes = Vec::new();
    let mut seen = HashSet::new();
    for (i, f) in features.iter().enumerate() {
        if !is_gene(f) {
            columns.push(None);
            continue;
        }
        let gene = if uses.get(f.name.as_str()).copied().unwrap_or(0) > 1 {
            format!("{}_{}", f.name, f.id)
        } else {
            f.name.clone()
        };
        if !seen.insert(gene.clone()) {
            return Err((i, format!("gene name {gene} (feature {}) is not unique", f.id)));
        }
        let column = u32::try_from(genes.len()).map_err(|_| (i, "too many genes".to_string()))?;
        columns.push(Some(column));
        genes.push(gene);
    }
    Ok(GeneColumns { columns, genes })
}

/// Keeps the gene entries of `csr` under their output `columns`, sorts each row by gene and sums
/// repeated entries of one gene.
fn select_genes(csr: &Csr, columns: &[Option<u32>]) -> Csr {
    let mut out = Csr {
        indptr: vec![0],
        indices: Vec::with_capacity(csr.indices.len()),
        values: Vec::with_capacity(csr.values.len()),
    };
    let mut row: Vec<(u32, f32)> = Vec::new();
    for bounds in csr.indptr.windows(2) {
        row.clear();
        for k in bounds[0]..bounds[1] {
            if let Some(column) = columns.get(csr.indices[k] as usize).copied().flatten() {
                row.push((column, csr.values[k]));
            }
        }
        row.sort_unstable_by_key(|&(column, _)| column);
        let start = out.indices.len();
        for &(column, value) in &row {
            if out.indices.len() > start
                && out.indices.last() == Some(&column)
                && let Some(last) = out.values.last_mut()
            {
                *last += value;
            } else {
                out.indices.push(column);
                out.values.push(value);
            }
        }
        out.indptr.push(out.indices.len());
    }
    out
}

/// Builds the count matrix from file-feature CSR rows.
fn to_matrix(barcodes: Vec<String>, csr: &Csr, genes: GeneColumns) -> Result<Counts, DatasetError> {
    let kept = select_genes(csr, &genes.columns);
    let matrix = CountMatrix::from_csr(genes.genes, kept.indptr, kept.indices, kept.values)?;
    Ok(Counts { barcodes, matrix })
}

// ---------------------------------------------------------------------------------------------
// HDF5

/// Reads the `matrix` group of a 10x HDF5 count file (feature-barcode matrix format ≥ 3).
fn read_h5(path: &Path) -> Result<Counts, DatasetError> {
    let file = hdf5::File::open(path).map_err(|e| h5_error(path, format!("cannot open: {e}")))?;
    let h5 = H5 { file, path };

    let shape = h5.indices("matrix/shape")?;
    let [n_features, n_barcodes] = shape[..] else {
        let problem = format!("matrix/shape: expected 2 entries, found {}", shape.len());
        return Err(h5.error(problem));
    };

    let barcodes = h5.strings("matrix/barcodes")?;
    h5.check_len("matrix/barcodes", barcodes.len(), n_barcodes, "barcodes")?;
    let mut seen = HashSet::new();
    if let Some(b) = barcodes.iter().find(|b| !seen.insert(b.as_str())) {
        return Err(h5.error(format!("matrix/barcodes: barcode {b} appears twice")));
    }

    let ids = h5.strings("matrix/features/id")?;
    h5.check_len("matrix/features/id", ids.len(), n_features, "features")?;
    let names = h5.strings("matrix/features/name")?;
    h5.check_len("matrix/features/name", names.len(), n_features, "features")?;
    let kinds = if h5.file.link_exists("matrix/features/feature_type") {
        let kinds = h5.strings("matrix/features/feature_type")?;
        h5.check_len("matrix/features/feature_type", kinds.len(), n_features, "features")?;
        kinds.into_iter().map(Some).collect()
    } else {
        vec![None; n_features]
    };
    let features: Vec<Feature> =
        ids.into_iter().zip(names).zip(kinds).map(|((id, name), kind)| Feature { id, name, kind }).collect();
    let genes =
        gene_columns(&features).map_err(|(i, problem)| h5.error(format!("matrix/features, feature {i}: {problem}")))?;

    let indptr = h5.indices("matrix/indptr")?;
    h5.check_len("matrix/indptr", indptr.len(), n_barcodes + 1, "barcodes + 1")?;
    if indptr.first().is_some_and(|&p| p != 0) || indptr.windows(2).any(|w| w[0] > w[1]) {
        return Err(h5.error("matrix/indptr: must start at 0 and never decrease"));
    }
    let nnz = indptr.last().copied().unwrap_or(0);

    let indices = h5.indices("matrix/indices")?;
    h5.check_len("matrix/indices", indices.len(), nnz, "entries (matrix/indptr)")?;
    let indices: Vec<u32> = indices
        .into_iter()
        .enumerate()
        .map(|(k, i)| match u32::try_from(i) {
            Ok(i) if (i as usize) < n_features => Ok(i),
            _ => {
                Err(h5.error(format!("matrix/indices: entry {k} is feature {i}, but there are {n_features} features")))
            }
        })
        .collect::<Result<_, _>>()?;

    let values = h5.counts("matrix/data")?;
    h5.check_len("matrix/data", values.len(), nnz, "entries (matrix/indptr)")?;

    let csr = Csr { indptr, indices, values };
    to_matrix(barcodes, &csr, genes)
}

fn h5_error(path: &Path, problem: impl Into<String>) -> DatasetError {
    DatasetError::Hdf5 { path: path.into(), problem: problem.into() }
}

/// An open HDF5 file and its path, for error messages that name both file and dataset.
struct H5<'a> {
    file: hdf5::File,
    path: &'a Path,
}

impl H5<'_> {
    fn error(&self, problem: impl Into<String>) -> DatasetError {
        h5_error(self.path, problem)
    }

    fn check_len(&self, name: &str, found: usize, expected: usize, what: &str) -> Result<(), DatasetError> {
        if found == expected {
            return Ok(());
        }
        Err(self.error(format!("{name}: has {found} entries, expected {expected} (number of {what})")))
    }

    /// Opens a one-dimensional dataset and returns it with its element type.
    fn open_1d(&self, name: &str) -> Result<(hdf5::Dataset, TypeDescriptor), DatasetError> {
        let dataset = self.file.dataset(name).map_err(|e| self.error(format!("{name}: {e}")))?;
        if dataset.ndim() != 1 {
            let shape = dataset.shape();
            return Err(self.error(format!("{name}: expected one dimension, found {shape:?}")));
        }
        let kind = dataset.dtype().and_then(|t| t.to_descriptor()).map_err(|e| self.error(format!("{name}: {e}")))?;
        Ok((dataset, kind))
    }

    /// Reads a one-dimensional dataset of non-negative integers.
    fn indices(&self, name: &str) -> Result<Vec<usize>, DatasetError> {
        let (dataset, kind) = self.open_1d(name)?;
        if !matches!(kind, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) {
            return Err(self.error(format!("{name}: expected integers, found {kind}")));
        }
        let raw: Vec<i64> = dataset.read_raw().map_err(|e| self.error(format!("{name}: {e}")))?;
        raw.into_iter()
            .enumerate()
            .map(|(k, v)| {
                usize::try_from(v)
                    .map_err(|_| self.error(format!("{name}: entry {k} is {v}, expected a non-negative integer")))
            })
            .collect()
    }

    /// Reads a one-dimensional dataset of counts (integers or floats), checking that they are
    /// finite and non-negative.
    fn counts(&self, name: &str) -> Result<Vec<f32>, DatasetError> {
        let (dataset, kind) = self.open_1d(name)?;
        use TypeDescriptor::{Float, Integer, Unsigned};
        if !matches!(kind, Integer(_) | Unsigned(_) | Float(_)) {
            return Err(self.error(format!("{name}: expected numbers, found {kind}")));
        }
        let values: Vec<f32> = dataset.read_raw().map_err(|e| self.error(format!("{name}: {e}")))?;
        match values.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            Some(k) => Err(self.error(format!("{name}: entry {k} is {}, expected a non-negative count", values[k]))),
            None => Ok(values),
        }
    }

    /// Reads a one-dimensional dataset of strings (fixed- or variable-length, ASCII or UTF-8).
    fn strings(&self, name: &str) -> Result<Vec<String>, DatasetError> {
        /// Longest fixed-length string read.
        const MAX_LEN: usize = 1024;
        let (dataset, kind) = self.open_1d(name)?;
        let strings = match kind {
            TypeDescriptor::FixedAscii(n) if n <= MAX_LEN => h5_strings::<FixedAscii<MAX_LEN>>(&dataset),
            TypeDescriptor::FixedUnicode(n) if n <= MAX_LEN => h5_strings::<FixedUnicode<MAX_LEN>>(&dataset),
            TypeDescriptor::VarLenAscii => h5_strings::<VarLenAscii>(&dataset),
            TypeDescriptor::VarLenUnicode => h5_strings::<VarLenUnicode>(&dataset),
            other => {
                return Err(self.error(format!("{name}: expected strings of at most {MAX_LEN} bytes, found {other}")));
            }
        };
        strings.map_err(|e| self.error(format!("{name}: {e}")))
    }
}

/// Reads a dataset of strings of type `T`, refusing bytes that are not UTF-8.
fn h5_strings<T: hdf5::H5Type + AsRef<[u8]>>(dataset: &hdf5::Dataset) -> Result<Vec<String>, String> {
    let raw: Vec<T> = dataset.read_raw().map_err(|e| e.to_string())?;
    raw.iter()
        .enumerate()
        .map(|(k, s)| String::from_utf8(s.as_ref().to_vec()).map_err(|_| format!("entry {k} is not valid text")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Matrix Market

/// Opens a text file, decompressing it when its name ends in `.gz`.
fn open_text(path: &Path) -> Result<Box<dyn BufRead>, DatasetError> {
    let file = File::open(path).map_err(DatasetError::io(path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file))))
    } else {
        Ok(Box::new(BufReader::new(file)))
    }
}

/// The first of `names` that exists in `dir`.
fn first_existing(dir: &Path, names: &[&str]) -> Result<PathBuf, DatasetError> {
    for name in names {
        let path = dir.join(name);
        if path.try_exists().map_err(DatasetError::io(&path))? {
            return Ok(path);
        }
    }
    Err(DatasetError::Io {
        path: dir.into(),
        source: io::Error::new(io::ErrorKind::NotFound, format!("expected one of {}", names.join(", "))),
    })
}

/// Reads a Matrix Market count directory: features × barcodes, as Space Ranger writes it.
fn read_mtx_dir(dir: &Path) -> Result<Counts, DatasetError> {
    let barcodes_path = first_existing(dir, &["barcodes.tsv.gz", "barcodes.tsv"])?;
    let features_path = first_existing(dir, &["features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv"])?;
    let matrix_path = first_existing(dir, &["matrix.mtx.gz", "matrix.mtx"])?;

    let barcodes = read_barcodes(&barcodes_path)?;
    let features = read_features(&features_path)?;
    let genes = gene_columns(&features).map_err(|(i, problem)| DatasetError::format(&features_path, i + 1, problem))?;
    let csr = read_mtx(&matrix_path, features.len(), barcodes.len())?;
    to_matrix(barcodes, &csr, genes)
}

/// Reads `barcodes.tsv`: one barcode per line.
fn read_barcodes(path: &Path) -> Result<Vec<String>, DatasetError> {
    let mut barcodes = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in open_text(path)?.lines().enumerate() {
        let line = line.map_err(DatasetError::io(path))?;
        let barcode = line.trim_end_matches('\r');
        if barcode.is_empty() || barcode.contains(char::is_whitespace) {
            return Err(DatasetError::format(path, i + 1, format!("expected one barcode, found {barcode:?}")));
        }
        if !seen.insert(barcode.to_string()) {
            let problem = format!("barcode {barcode} is listed twice");
            return Err(DatasetError::format(path, i + 1, problem));
        }
        barcodes.push(barcode.to_string());
    }
    Ok(barcodes)
}

/// Reads `features.tsv` (id, name, feature type) or `genes.tsv` (id, name), tab-separated.
fn read_features(path: &Path) -> Result<Vec<Feature>, DatasetError> {
    let mut features = Vec::new();
    for (i, line) in open_text(path)?.lines().enumerate() {
        let line = line.map_err(DatasetError::io(path))?;
        let fields: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
        let (id, name) = match fields[..] {
            [id, name, ..] if !id.is_empty() && !name.is_empty() => (id, name),
            _ => {
                return Err(DatasetError::format(
                    path,
                    i + 1,
                    format!("expected a feature id and name separated by a tab, found {line:?}"),
                ));
            }
        };
        features.push(Feature {
            id: id.to_string(),
            name: name.to_string(),
            kind: fields.get(2).map(|k| k.to_string()),
        });
    }
    Ok(features)
}

/// Reads `matrix.mtx` (coordinate format, rows = features, columns = barcodes) into CSR rows
/// over barcodes.
fn read_mtx(path: &Path, n_features: usize, n_barcodes: usize) -> Result<Csr, DatasetError> {
    let mut lines = open_text(path)?.lines().enumerate();
    let mut next_line = || -> Result<Option<(usize, String)>, DatasetError> {
        match lines.next() {
            Some((i, line)) => Ok(Some((i + 1, line.map_err(DatasetError::io(path))?))),
            None => Ok(None),
        }
    };

    let banner = next_line()?.map(|(_, l)| l).unwrap_or_default();
    let words: Vec<String> = banner.split_whitespace().map(str::to_lowercase).collect();
    let supported = matches!(
        words.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["%%matrixmarket", "matrix", "coordinate", "integer" | "real", "general"]
    );
    if !supported {
        return Err(DatasetError::format(
            path,
            1,
            format!("expected \"%%MatrixMarket matrix coordinate integer general\" (or real), found {banner:?}"),
        ));
    }

    // The size line follows any comment lines.
    let (size_line, size) = loop {
        match next_line()? {
            Some((_, l)) if l.starts_with('%') || l.trim().is_empty() => continue,
            Some(numbered) => break numbered,
            None => {
                return Err(DatasetError::format(path, 1, "no size line after the banner"));
            }
        }
    };
    let sizes: Option<Vec<usize>> = size.split_whitespace().map(|w| w.parse().ok()).collect();
    let Some(&[n_rows, n_cols, nnz]) = sizes.as_deref() else {
        let problem = format!("expected three counts (rows, columns, entries), found {size:?}");
        return Err(DatasetError::format(path, size_line, problem));
    };
    if n_rows != n_features || n_cols != n_barcodes {
        return Err(DatasetError::format(
            path,
            size_line,
            format!(
                "the matrix is {n_rows} features × {n_cols} barcodes, but the features and \
                 barcodes files list {n_features} and {n_barcodes}"
            ),
        ));
    }

    // Triplets (barcode, feature, count), then a counting sort by barcode.
    let mut entries: Vec<(u32, u32, f32)> = Vec::with_capacity(nnz);
    let mut last_line = size_line;
    while let Some((n, line)) = next_line()? {
        last_line = n;
        if line.trim().is_empty() {
            continue;
        }
        if entries.len() == nnz {
            return Err(DatasetError::format(path, n, format!("more entries than the {nnz} the size line announces")));
        }
        entries.push(parse_mtx_entry(path, n, &line, n_rows, n_cols)?);
    }
    if entries.len() != nnz {
        return Err(DatasetError::format(
            path,
            last_line,
            format!("the size line announces {nnz} entries but the file ends after {}", entries.len()),
        ));
    }

    let mut indptr = vec![0usize; n_barcodes + 1];
    for &(barcode, _, _) in &entries {
        indptr[barcode as usize + 1] += 1;
    }
    for b in 0..n_barcodes {
        indptr[b + 1] += indptr[b];
    }
    let mut next = indptr.clone();
    let mut indices = vec![0u32; entries.len()];
    let mut values = vec![0f32; entries.len()];
    for (barcode, feature, value) in entries {
        let k = next[barcode as usize];
        indices[k] = feature;
        values[k] = value;
        next[barcode as usize] += 1;
    }
    Ok(Csr { indptr, indices, values })
}

/// Parses one `feature barcode count` line (1-based indices) into 0-based
/// `(barcode, feature, count)`.
fn parse_mtx_entry(
    path: &Path,
    line_no: usize,
    line: &str,
    n_rows: usize,
    n_cols: usize,
) -> Result<(u32, u32, f32), DatasetError> {
    let bad = |problem: String| DatasetError::format(path, line_no, problem);
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [row, col, value] = fields[..] else {
        return Err(bad(format!("expected an entry \"feature barcode count\", found {line:?}")));
    };
    let index = |field: &str, text: &str, n: usize| -> Result<u32, DatasetError> {
        match text.parse::<u32>() {
            Ok(i) if i >= 1 && i as usize <= n => Ok(i - 1),
            _ => Err(bad(format!("field {field}: expected an index from 1 to {n}, found {text:?}"))),
        }
    };
    let feature = index("feature", row, n_rows)?;
    let barcode = index("barcode", col, n_cols)?;
    let count = match value.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => v,
        _ => {
            return Err(bad(format!("field count: expected a non-negative number, found {value:?}")));
        }
    };
    Ok((barcode, feature, count))
}

// ---------------------------------------------------------------------------------------------
// Tissue positions

/// Spot centre `(x, y)` in full-resolution pixels by barcode.
type Positions = HashMap<String, (f64, f64)>;

/// Reads the tissue positions of `outs`: spot centre `(x, y)` in full-resolution pixels by
/// barcode, and the file they came from.
fn read_positions(outs: &Path) -> Result<(PathBuf, Positions), DatasetError> {
    let spatial = outs.join("spatial");
    let path = first_existing(&spatial, &["tissue_positions.csv", "tissue_positions_list.csv"])?;
    let text = std::fs::read_to_string(&path).map_err(DatasetError::io(&path))?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).enumerate().peekable();

    // `tissue_positions.csv` starts with a header naming the columns; the list variant has none.
    let mut names: Vec<&str> = POSITION_COLUMNS.to_vec();
    if let Some(&(_, header)) = lines.peek()
        && header.split(',').next().map(str::trim) == Some("barcode")
    {
        names = header.split(',').map(str::trim).collect();
        lines.next();
    }
    let find = |column: &str| {
        names
            .iter()
            .position(|&n| n == column)
            .ok_or_else(|| DatasetError::format(&path, 1, format!("the header lacks the column {column}")))
    };
    let barcode_at = find("barcode")?;
    let row_at = find("pxl_row_in_fullres")?;
    let col_at = find("pxl_col_in_fullres")?;

    let mut positions = HashMap::new();
    for (i, line) in lines {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != names.len() {
            return Err(DatasetError::format(
                &path,
                line_no,
                format!("expected {} fields, found {}", names.len(), fields.len()),
            ));
        }
        let number = |at: usize| -> Result<f64, DatasetError> {
            match fields[at].parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(DatasetError::format(
                    &path,
                    line_no,
                    format!("field {}: expected a number, found {:?}", names[at], fields[at]),
                )),
            }
        };
        let y = number(row_at)?;
        let x = number(col_at)?;
        let barcode = fields[barcode_at];
        if positions.insert(barcode.to_string(), (x, y)).is_some() {
            let problem = format!("barcode {barcode} is listed twice");
            return Err(DatasetError::format(&path, line_no, problem));
        }
    }
    Ok((path, positions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The real Space Ranger fixture, or `None` (with a message) when the shared data is absent.
    fn fixture() -> Option<PathBuf> {
        spahgc_testdata::shared("visium-tiny")
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if path.extension().is_some_and(|e| e == "gz") {
            let file = File::create(path).unwrap();
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap();
        } else {
            std::fs::write(path, text).unwrap();
        }
    }

    fn genes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Count-file content: CSC over barcodes, as in the 10x HDF5 layout.
    struct Content {
        barcodes: Vec<String>,
        /// (id, name, feature type)
        features: Vec<(String, String, String)>,
        indptr: Vec<i64>,
        indices: Vec<i32>,
        data: Vec<i32>,
    }

    /// Three barcodes; an antibody feature, a duplicated gene name, entries out of order within
    /// a barcode and one feature counted twice for one barcode.
    fn hand_made() -> Content {
        let feature = |id: &str, name: &str, kind: &str| (id.into(), name.into(), kind.into());
        Content {
            barcodes: genes(&["AAA-1", "CCC-1", "GGG-1"]),
            features: vec![
                feature("G1", "ALPHA", "Gene Expression"),
                feature("P1", "CD4", "Antibody Capture"),
                feature("G2", "DUP", "Gene Expression"),
                feature("G3", "DUP", "Gene Expression"),
                feature("G4", "BETA", "Gene Expression"),
            ],
            indptr: vec![0, 3, 6, 7],
            indices: vec![4, 0, 1, 2, 3, 2, 1],
            data: vec![2, 1, 7, 3, 5, 1, 9],
        }
    }

    /// What `hand_made` must load as.
    fn hand_made_expected() -> CountMatrix {
        CountMatrix::from_csr(
            genes(&["ALPHA", "DUP_G2", "DUP_G3", "BETA"]),
            vec![0, 2, 4, 4],
            vec![0, 3, 1, 2],
            vec![1.0, 2.0, 4.0, 5.0],
        )
        .unwrap()
    }

    fn ascii(strings: &[String]) -> Vec<FixedAscii<32>> {
        strings.iter().map(|s| FixedAscii::from_ascii(s).unwrap()).collect()
    }

    fn write_h5(path: &Path, c: &Content) {
        let file = hdf5::File::create(path).unwrap();
        let m = file.create_group("matrix").unwrap();
        let shape = [c.features.len() as i32, c.barcodes.len() as i32];
        let column = |k: usize| -> Vec<String> { c.features.iter().map(|f| [&f.0, &f.1, &f.2][k].clone()).collect() };
        let builder = || m.new_dataset_builder();
        builder().with_data(&shape[..]).create("shape").unwrap();
        builder().with_data(&c.indptr[..]).create("indptr").unwrap();
        builder().with_data(&c.indices[..]).create("indices").unwrap();
        builder().with_data(&c.data[..]).create("data").unwrap();
        let barcodes = ascii(&c.barcodes);
        builder().with_data(&barcodes[..]).create("barcodes").unwrap();
        m.create_group("features").unwrap();
        for (k, name) in ["features/id", "features/name", "features/feature_type"].into_iter().enumerate() {
            let strings = ascii(&column(k));
            builder().with_data(&strings[..]).create(name).unwrap();
        }
    }

    /// Writes a Matrix Market directory; `gz` picks Space Ranger ≥ 3 names, else the older
    /// uncompressed names with a two-column `genes.tsv`.
    fn write_mtx_dir(dir: &Path, c: &Content, gz: bool) {
        let suffix = if gz { ".gz" } else { "" };
        let features: String = c
            .features
            .iter()
            .map(|(id, name, kind)| if gz { format!("{id}\t{name}\t{kind}\n") } else { format!("{id}\t{name}\n") })
            .collect();
        let features_name = if gz { "features.tsv" } else { "genes.tsv" };
        write(&dir.join(format!("{features_name}{suffix}")), &features);
        let barcodes: String = c.barcodes.iter().map(|b| format!("{b}\n")).collect();
        write(&dir.join(format!("barcodes.tsv{suffix}")), &barcodes);
        let mut mtx = format!(
            "%%MatrixMarket matrix coordinate integer general\n%metadata_json: {{}}\n{} {} {}\n",
            c.features.len(),
            c.barcodes.len(),
            c.data.len()
        );
        for b in 0..c.barcodes.len() {
            for k in c.indptr[b] as usize..c.indptr[b + 1] as usize {
                mtx += &format!("{} {} {}\n", c.indices[k] + 1, b + 1, c.data[k]);
            }
        }
        write(&dir.join(format!("matrix.mtx{suffix}")), &mtx);
    }

    const POSITIONS_HEADER: &str = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres\n";
    const POSITIONS: &str = "TTT-1,0,0,0,1,2\n\
                             GGG-1,1,2,2,30,40\n\
                             AAA-1,1,0,2,100.5,200.25\n\
                             CCC-1,1,1,1,10,20\n";

    fn hand_made_spots() -> Vec<Spot> {
        let spot = |id: &str, x: f64, y: f64| Spot { id: id.into(), x, y };
        vec![spot("AAA-1", 200.25, 100.5), spot("CCC-1", 20.0, 10.0), spot("GGG-1", 40.0, 30.0)]
    }

    /// Total number of stored entries.
    fn nnz(m: &CountMatrix) -> usize {
        (0..m.n_spots()).map(|s| m.row(s).count()).sum()
    }

    #[test]
    fn fixture_h5_loads_with_positions_and_scale() {
        let Some(outs) = fixture() else { return };
        let s = load(&outs).unwrap();
        assert_eq!(s.name, "visium-tiny");
        assert_eq!(s.spots.len(), 100);
        assert_eq!(s.counts.n_spots(), 100);
        assert_eq!(s.counts.genes().len(), 100);
        assert_eq!(nnz(&s.counts), 656);
        let total: f64 = s.counts.library_sizes().iter().sum();
        assert_eq!(total, 932.0);
        // This fixture names its features by their Ensembl ids.
        assert_eq!(s.counts.genes()[0], "ENSG00000243485");
        assert_eq!(s.counts.genes()[99], "ENSG00000197921");
        let row0: Vec<(usize, f32)> = s.counts.row(0).collect();
        assert_eq!(row0, vec![(39, 1.0), (40, 1.0), (49, 1.0), (55, 5.0), (57, 1.0), (94, 1.0)]);
        // tissue_positions_list.csv: AAACAAGTATCTCCCA-1,1,50,102,8513,9811
        let first = &s.spots[0];
        assert_eq!((first.id.as_str(), first.x, first.y), ("AAACAAGTATCTCCCA-1", 9811.0, 8513.0));
        let last = &s.spots[99];
        assert_eq!((last.id.as_str(), last.x, last.y), ("AACCTTTACGACGTCT-1", 9113.0, 4445.0));
        assert_eq!(s.spot_diameter_px, Some(89.42751063343188));
        let mpp = s.microns_per_pixel.unwrap();
        assert!((mpp - 55.0 / 89.42751063343188).abs() < 1e-12, "{mpp}");
        assert!(s.image.is_none());
    }

    #[test]
    fn fixture_as_matrix_market_equals_h5() {
        let Some(fixture) = fixture() else { return };
        let from_h5 = load(&fixture).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let outs = tmp.path().join("visium-tiny");
        for file in ["tissue_positions_list.csv", "scalefactors_json.json"] {
            let text = std::fs::read_to_string(fixture.join("spatial").join(file)).unwrap();
            write(&outs.join("spatial").join(file), &text);
        }
        let m = &from_h5.counts;
        let mut content = Content {
            barcodes: from_h5.spots.iter().map(|s| s.id.clone()).collect(),
            features: m.genes().iter().map(|g| (g.clone(), g.clone(), "Gene Expression".into())).collect(),
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
        };
        for s in 0..m.n_spots() {
            for (g, v) in m.row(s) {
                content.indices.push(g as i32);
                content.data.push(v as i32);
            }
            content.indptr.push(content.indices.len() as i64);
        }
        write_mtx_dir(&outs.join("filtered_feature_bc_matrix"), &content, true);
        let from_mtx = load(&outs).unwrap();
        assert_eq!(from_mtx.name, from_h5.name);
        assert_eq!(from_mtx.counts, from_h5.counts);
        assert_eq!(from_mtx.spots, from_h5.spots);
        assert_eq!(from_mtx.spot_diameter_px, from_h5.spot_diameter_px);
        assert_eq!(from_mtx.microns_per_pixel, from_h5.microns_per_pixel);
    }

    #[test]
    fn h5_and_matrix_market_agree_on_genes_duplicates_and_feature_types() {
        let tmp = tempfile::tempdir().unwrap();
        let content = hand_made();
        let h5_outs = tmp.path().join("h5");
        write(&h5_outs.join("spatial/tissue_positions_list.csv"), POSITIONS);
        write_h5(&h5_outs.join("filtered_feature_bc_matrix.h5"), &content);
        let mtx_outs = tmp.path().join("mtx");
        write(&mtx_outs.join("spatial/tissue_positions_list.csv"), POSITIONS);
        write_mtx_dir(&mtx_outs.join("filtered_feature_bc_matrix"), &content, true);

        let from_h5 = load(&h5_outs).unwrap();
        let from_mtx = load(&mtx_outs).unwrap();
        assert_eq!(from_h5.counts, hand_made_expected());
        assert_eq!(from_mtx.counts, hand_made_expected());
        assert_eq!(from_h5.spots, hand_made_spots());
        assert_eq!(from_mtx.spots, hand_made_spots());
        assert_eq!(from_h5.spot_diameter_px, None);
        assert_eq!(from_h5.microns_per_pixel, None);
    }

    #[test]
    fn positions_with_and_without_header_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let content = hand_made();
        let headerless = tmp.path().join("a/outs");
        write(&headerless.join("spatial/tissue_positions_list.csv"), POSITIONS);
        let headered = tmp.path().join("b/outs");
        write(&headered.join("spatial/tissue_positions.csv"), &format!("{POSITIONS_HEADER}{POSITIONS}"));
        for outs in [&headerless, &headered] {
            // The older uncompressed layout: genes.tsv without feature types keeps all features.
            write_mtx_dir(&outs.join("filtered_feature_bc_matrix"), &content, false);
            let s = load(outs).unwrap();
            assert_eq!(s.spots, hand_made_spots());
            assert_eq!(s.counts.genes(), genes(&["ALPHA", "CD4", "DUP_G2", "DUP_G3", "BETA"]));
        }
        assert_eq!(load(&headerless).unwrap().name, "a");
        assert_eq!(load(&headered).unwrap().name, "b");
    }

    #[test]
    fn missing_counts_name_both_expected_paths() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("spatial/tissue_positions_list.csv"), POSITIONS);
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("filtered_feature_bc_matrix.h5")
                && err.contains("directory")
                && err.contains("filtered_feature_bc_matrix"),
            "{err}"
        );
    }

    #[test]
    fn a_barcode_without_position_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let positions: String = POSITIONS.lines().filter(|l| !l.starts_with("CCC")).collect::<Vec<_>>().join("\n");
        write(&tmp.path().join("spatial/tissue_positions_list.csv"), &positions);
        write_h5(&tmp.path().join("filtered_feature_bc_matrix.h5"), &hand_made());
        let err = load(tmp.path()).unwrap_err();
        assert!(matches!(err, DatasetError::Inconsistent { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("CCC-1") && err.contains("tissue_positions_list.csv"), "{err}");
    }

    #[test]
    fn a_non_numeric_position_names_file_line_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let positions = POSITIONS.replace("GGG-1,1,2,2,30,40", "GGG-1,1,2,2,abc,40");
        write(&tmp.path().join("spatial/tissue_positions.csv"), &format!("{POSITIONS_HEADER}{positions}"));
        write_h5(&tmp.path().join("filtered_feature_bc_matrix.h5"), &hand_made());
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("tissue_positions.csv, line 3")
                && err.contains("field pxl_row_in_fullres: expected a number, found \"abc\""),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_matrix_market_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("spatial/tissue_positions_list.csv"), POSITIONS);
        let dir = tmp.path().join("filtered_feature_bc_matrix");
        write_mtx_dir(&dir, &hand_made(), false);
        let mtx = std::fs::read_to_string(dir.join("matrix.mtx")).unwrap();
        let truncated: Vec<&str> = mtx.lines().collect();
        write(&dir.join("matrix.mtx"), &truncated[..truncated.len() - 2].join("\n"));
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("matrix.mtx") && err.contains("announces 7 entries") && err.contains("after 5"), "{err}");
    }

    #[test]
    fn inconsistent_h5_datasets_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("spatial/tissue_positions_list.csv"), POSITIONS);
        let h5 = tmp.path().join("filtered_feature_bc_matrix.h5");
        let mut content = hand_made();
        content.indptr.pop();
        write_h5(&h5, &content);
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("matrix/indptr") && err.contains("expected 4"), "{err}");

        let mut content = hand_made();
        content.indices[2] = 5;
        std::fs::remove_file(&h5).unwrap();
        write_h5(&h5, &content);
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("matrix/indices") && err.contains("feature 5"), "{err}");
    }

    #[test]
    fn malformed_scale_factors_are_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("spatial/tissue_positions_list.csv"), POSITIONS);
        write_h5(&tmp.path().join("filtered_feature_bc_matrix.h5"), &hand_made());
        let path = tmp.path().join("spatial/scalefactors_json.json");
        write(&path, "{\n  \"spot_diameter_fullres\": \"big\"\n}\n");
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("scalefactors_json.json, line 2"), "{err}");
        write(
            &path,
            "{\"spot_diameter_fullres\": 100.0,\n \"tissue_hires_scalef\": 0.1,\n \
             \"tissue_lowres_scalef\": 0.01, \"regist_target_img_scalef\": 0.2}",
        );
        let s = load(tmp.path()).unwrap();
        assert_eq!(s.spot_diameter_px, Some(100.0));
        assert_eq!(s.microns_per_pixel, Some(0.55));
    }
}
