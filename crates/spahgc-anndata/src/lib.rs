//! Writes AnnData `.h5ad` files (spots × genes) that Python `anndata` and scanpy read.
//!
//! The layout follows the AnnData on-disk format as anndata ≥ 0.10 writes it: every group and
//! dataset carries `encoding-type` and `encoding-version` attributes, and every string (attribute
//! or data) is variable-length UTF-8, as h5py writes them.
//!
//! ```text
//! /                 anndata 0.1.0
//! ├── X             array 0.2.0         float32, n_obs × n_var, dense
//! ├── obs           dataframe 0.2.0     @_index = "_index", @column-order = column names
//! │   ├── _index    string-array 0.2.0  obs names
//! │   └── <column>  array 0.2.0 (float64, int64, bool) or string-array 0.2.0 (text)
//! ├── var           dataframe 0.2.0     var names in `_index`, no columns
//! ├── obsm          dict 0.1.0          <key>: array 0.2.0, float64, n_obs × k
//! ├── uns           dict 0.1.0          <key>: string 0.2.0, scalar
//! └── varm, obsp, varp, layers          empty dict 0.1.0
//! ```
//!
//! Everything is validated before the file exists; the file is written under a temporary name
//! beside `path` and renamed into place, so a failure never leaves a partial file behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Group, H5Type, Location};
use ndarray::{ArrayView, ArrayView2, Dimension};

/// One obs column; its length must equal the number of obs.
#[derive(Clone, Copy, Debug)]
pub enum Column<'a> {
    /// Written as float64.
    F64(&'a [f64]),
    /// Written as int64.
    I64(&'a [i64]),
    /// Written as HDF5 enum bool (numpy `bool`).
    Bool(&'a [bool]),
    /// Written as a string array (pandas `object` column of `str`).
    Text(&'a [String]),
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }
}

/// The contents of one `.h5ad` file, borrowed from the caller.
#[derive(Clone, Debug)]
pub struct AnnData<'a> {
    /// The obs (spot) index; unique.
    pub obs_names: &'a [String],
    /// obs columns, in order; names unique, not `_index`.
    pub obs: Vec<(&'a str, Column<'a>)>,
    /// The var (gene) index; unique.
    pub var_names: &'a [String],
    /// The obs × var matrix, any memory layout.
    pub x: ArrayView2<'a, f32>,
    /// obs-aligned matrices (e.g. `("spatial", n_obs × 2)`), each with n_obs rows.
    pub obsm: Vec<(&'a str, ArrayView2<'a, f64>)>,
    /// String scalars stored in `uns` (e.g. provenance).
    pub uns: Vec<(&'a str, &'a str)>,
}

/// Why an `.h5ad` file was not written.
#[derive(Debug, thiserror::Error)]
pub enum AnnDataError {
    /// A field's length disagrees with `obs_names` or `var_names`.
    #[error("{field} has {found} {unit}, {against} has {expected}")]
    Shape { field: String, unit: &'static str, found: usize, against: &'static str, expected: usize },
    /// A name occurs twice where names must be unique.
    #[error("{field} has {name:?} twice (entries {first} and {second})")]
    Duplicate { field: &'static str, name: String, first: usize, second: usize },
    /// A key that becomes an HDF5 object name is unusable.
    #[error("{field} name {name:?} {reason}")]
    BadName { field: &'static str, name: String, reason: &'static str },
    /// A string contains NUL, which HDF5 strings cannot hold.
    #[error("{field} entry {index} contains a NUL character")]
    Nul { field: String, index: usize },
    /// The HDF5 library failed while writing `object`.
    #[error("{path}: cannot write {object}: {source}")]
    Hdf5 { path: PathBuf, object: String, source: hdf5::Error },
    /// Creating, syncing or renaming the file failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Writes `data` to `path` as an `.h5ad` file, replacing any file there.
///
/// Validates everything first; on any error no file (and no temporary file) is left at or beside
/// `path`, and a file already there is untouched.
pub fn write_h5ad(path: &Path, data: &AnnData) -> Result<(), AnnDataError> {
    validate(data)?;
    spahgc_core::write_atomically_by_name(path, |tmp| write_file(tmp, data).map_err(Staged::Hdf5)).map_err(
        |e| match e {
            Staged::Io(source) => AnnDataError::Io { path: path.to_path_buf(), source },
            Staged::Hdf5(Failure { object, source }) => AnnDataError::Hdf5 { path: path.to_path_buf(), object, source },
        },
    )
}

/// What can fail while the file is written beside its final name.
enum Staged {
    Io(std::io::Error),
    Hdf5(Failure),
}

impl From<std::io::Error> for Staged {
    fn from(e: std::io::Error) -> Self {
        Staged::Io(e)
    }
}

fn validate(d: &AnnData) -> Result<(), AnnDataError> {
    let (n_obs, n_var) = (d.obs_names.len(), d.var_names.len());
    let shape = |field: String, unit, found, against, expected| {
        if found == expected { Ok(()) } else { Err(AnnDataError::Shape { field, unit, found, against, expected }) }
    };
    shape("X".into(), "rows", d.x.nrows(), "obs_names", n_obs)?;
    shape("X".into(), "columns", d.x.ncols(), "var_names", n_var)?;
    unique("obs_names", d.obs_names.iter().map(String::as_str))?;
    unique("var_names", d.var_names.iter().map(String::as_str))?;
    texts("obs_names", d.obs_names)?;
    texts("var_names", d.var_names)?;
    for (name, column) in &d.obs {
        object_name("obs column", name)?;
        if *name == "_index" {
            return Err(AnnDataError::BadName { field: "obs column", name: name.to_string(), reason: "is the index" });
        }
        let field = format!("obs column {name:?}");
        shape(field.clone(), "values", column.len(), "obs_names", n_obs)?;
        if let Column::Text(values) = column {
            texts(&field, values)?;
        }
    }
    unique("obs columns", d.obs.iter().map(|(name, _)| *name))?;
    for (name, m) in &d.obsm {
        object_name("obsm", name)?;
        shape(format!("obsm {name:?}"), "rows", m.nrows(), "obs_names", n_obs)?;
    }
    unique("obsm", d.obsm.iter().map(|(name, _)| *name))?;
    for (name, value) in &d.uns {
        object_name("uns", name)?;
        texts(&format!("uns {name:?}"), &[*value])?;
    }
    unique("uns", d.uns.iter().map(|(name, _)| *name))
}

fn unique<'a>(field: &'static str, names: impl Iterator<Item = &'a str>) -> Result<(), AnnDataError> {
    let mut seen = HashMap::new();
    for (second, name) in names.enumerate() {
        if let Some(&first) = seen.get(name) {
            return Err(AnnDataError::Duplicate { field, name: name.to_string(), first, second });
        }
        seen.insert(name, second);
    }
    Ok(())
}

fn texts(field: &str, values: &[impl AsRef<str>]) -> Result<(), AnnDataError> {
    match values.iter().position(|v| v.as_ref().contains('\0')) {
        Some(index) => Err(AnnDataError::Nul { field: field.to_string(), index }),
        None => Ok(()),
    }
}

/// Checks a key that becomes an HDF5 link name.
fn object_name(field: &'static str, name: &str) -> Result<(), AnnDataError> {
    let reason = if name.is_empty() || name == "." {
        "is empty or \".\""
    } else if name.contains('/') {
        "contains '/' (the HDF5 path separator)"
    } else if name.contains('\0') {
        "contains a NUL character"
    } else {
        return Ok(());
    };
    Err(AnnDataError::BadName { field, name: name.to_string(), reason })
}

/// An HDF5 error and the object (path inside the file) being written.
struct Failure {
    object: String,
    source: hdf5::Error,
}

trait At<T> {
    fn at(self, object: &str) -> Result<T, Failure>;
}

impl<T> At<T> for hdf5::Result<T> {
    fn at(self, object: &str) -> Result<T, Failure> {
        self.map_err(|source| Failure { object: object.to_string(), source })
    }
}

fn write_file(path: &Path, d: &AnnData) -> Result<(), Failure> {
    let file = hdf5::File::create(path).at("/")?;
    encoding(&file, "anndata", "0.1.0").at("/")?;
    array(&file, "X", d.x.as_standard_layout().view()).at("X")?;
    dataframe(&file, "obs", d.obs_names, &d.obs)?;
    dataframe(&file, "var", d.var_names, &[])?;
    let obsm = dict(&file, "obsm").at("obsm")?;
    for (name, m) in &d.obsm {
        array(&obsm, name, m.as_standard_layout().view()).at(&format!("obsm/{name}"))?;
    }
    for name in ["varm", "obsp", "varp", "layers"] {
        dict(&file, name).at(name)?;
    }
    let uns = dict(&file, "uns").at("uns")?;
    for (name, value) in &d.uns {
        string(&uns, name, value).at(&format!("uns/{name}"))?;
    }
    drop((obsm, uns));
    // Closing explicitly reports errors of the final flush, which dropping would swallow.
    file.close().at("/")
}

fn dataframe(parent: &Group, name: &str, index: &[String], columns: &[(&str, Column)]) -> Result<(), Failure> {
    let group = parent.create_group(name).at(name)?;
    let attrs = || -> hdf5::Result<()> {
        encoding(&group, "dataframe", "0.2.0")?;
        string_attr(&group, "_index", "_index")?;
        let order = group.new_attr_builder();
        if columns.is_empty() {
            // anndata (through h5py) writes an empty column order as a float64 array of length 0.
            order.with_data(&[] as &[f64]).create("column-order")?;
        } else {
            let names = columns.iter().map(|(c, _)| vlu(c)).collect::<hdf5::Result<Vec<_>>>()?;
            order.with_data(&names[..]).create("column-order")?;
        }
        Ok(())
    };
    attrs().at(name)?;
    string_array(&group, "_index", index).at(&format!("{name}/_index"))?;
    for (column, values) in columns {
        let written = match values {
            Column::F64(v) => array(&group, column, ArrayView::from(*v)),
            Column::I64(v) => array(&group, column, ArrayView::from(*v)),
            Column::Bool(v) => array(&group, column, ArrayView::from(*v)),
            Column::Text(v) => string_array(&group, column, v),
        };
        written.at(&format!("{name}/{column}"))?;
    }
    Ok(())
}

fn array<T: H5Type, D: Dimension>(group: &Group, name: &str, data: ArrayView<T, D>) -> hdf5::Result<()> {
    let dataset = group.new_dataset_builder().with_data(data).create(name)?;
    encoding(&dataset, "array", "0.2.0")
}

fn string_array(group: &Group, name: &str, values: &[String]) -> hdf5::Result<()> {
    let values = values.iter().map(|v| vlu(v)).collect::<hdf5::Result<Vec<_>>>()?;
    let dataset = group.new_dataset_builder().with_data(&values[..]).create(name)?;
    encoding(&dataset, "string-array", "0.2.0")
}

fn string(group: &Group, name: &str, value: &str) -> hdf5::Result<()> {
    let dataset = group.new_dataset::<VarLenUnicode>().create(name)?;
    dataset.write_scalar(&vlu(value)?)?;
    encoding(&dataset, "string", "0.2.0")
}

fn dict(parent: &Group, name: &str) -> hdf5::Result<Group> {
    let group = parent.create_group(name)?;
    encoding(&group, "dict", "0.1.0")?;
    Ok(group)
}

fn encoding(object: &Location, kind: &str, version: &str) -> hdf5::Result<()> {
    string_attr(object, "encoding-type", kind)?;
    string_attr(object, "encoding-version", version)
}

fn string_attr(object: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    object.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&vlu(value)?)
}

/// A variable-length UTF-8 HDF5 string; `validate` has ruled out NUL in caller data.
fn vlu(s: &str) -> hdf5::Result<VarLenUnicode> {
    s.parse().map_err(|e| hdf5::Error::from(format!("{s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    struct Fixture {
        obs_names: Vec<String>,
        var_names: Vec<String>,
        x: Array2<f32>,
        spatial: Array2<f64>,
        x_pos: Vec<f64>,
        text: Vec<String>,
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn fixture() -> Fixture {
        Fixture {
            obs_names: strings(&["1x1", "1x2", "2x1"]),
            var_names: strings(&["ERBB2", "ESR1"]),
            x: Array2::zeros((3, 2)),
            spatial: Array2::zeros((3, 2)),
            x_pos: vec![1.0, 2.0, 3.0],
            text: strings(&["a", "b", "c"]),
        }
    }

    fn anndata(f: &Fixture) -> AnnData<'_> {
        AnnData {
            obs_names: &f.obs_names,
            obs: vec![("x", Column::F64(&f.x_pos)), ("label", Column::Text(&f.text))],
            var_names: &f.var_names,
            x: f.x.view(),
            obsm: vec![("spatial", f.spatial.view())],
            uns: vec![("provenance", "test")],
        }
    }

    /// Writes `data`, expects a failure, and checks that the directory stayed empty.
    fn fails(data: &AnnData) -> String {
        let dir = tempfile::tempdir().unwrap();
        let err = write_h5ad(&dir.path().join("out.h5ad"), data).unwrap_err();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{err}: left {left:?}");
        err.to_string()
    }

    #[test]
    fn writes_a_valid_file_and_replaces_an_old_one() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.h5ad");
        std::fs::write(&path, b"old").unwrap();
        write_h5ad(&path, &anndata(&f)).unwrap();
        let file = hdf5::File::open(&path).unwrap();
        assert_eq!(file.dataset("X").unwrap().shape(), [3, 2]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn x_rows_and_columns_must_match_the_names() {
        let f = fixture();
        let mut d = anndata(&f);
        d.obs_names = &f.obs_names[..2];
        assert_eq!(fails(&d), "X has 3 rows, obs_names has 2");
        let mut d = anndata(&f);
        d.var_names = &f.var_names[..1];
        assert_eq!(fails(&d), "X has 2 columns, var_names has 1");
    }

    #[test]
    fn obs_columns_and_obsm_must_have_one_row_per_obs() {
        let f = fixture();
        let mut d = anndata(&f);
        d.obs[0].1 = Column::F64(&f.x_pos[..2]);
        assert_eq!(fails(&d), "obs column \"x\" has 2 values, obs_names has 3");
        let mut d = anndata(&f);
        d.obsm[0].1 = f.spatial.slice(ndarray::s![..2, ..]);
        assert_eq!(fails(&d), "obsm \"spatial\" has 2 rows, obs_names has 3");
    }

    #[test]
    fn names_must_be_unique() {
        let mut f = fixture();
        f.obs_names[2] = "1x1".into();
        assert_eq!(fails(&anndata(&f)), "obs_names has \"1x1\" twice (entries 0 and 2)");
        let mut f = fixture();
        f.var_names[1] = "ERBB2".into();
        assert_eq!(fails(&anndata(&f)), "var_names has \"ERBB2\" twice (entries 0 and 1)");
        let f = fixture();
        let mut d = anndata(&f);
        d.obs.push(("x", Column::Bool(&[true, false, true])));
        assert_eq!(fails(&d), "obs columns has \"x\" twice (entries 0 and 2)");
        let mut d = anndata(&f);
        d.obsm.push(("spatial", f.spatial.view()));
        assert_eq!(fails(&d), "obsm has \"spatial\" twice (entries 0 and 1)");
        let mut d = anndata(&f);
        d.uns.push(("provenance", "again"));
        assert_eq!(fails(&d), "uns has \"provenance\" twice (entries 0 and 1)");
    }

    #[test]
    fn keys_must_be_usable_hdf5_names() {
        let f = fixture();
        let mut d = anndata(&f);
        d.obs[0].0 = "a/b";
        assert_eq!(fails(&d), "obs column name \"a/b\" contains '/' (the HDF5 path separator)");
        let mut d = anndata(&f);
        d.obs[0].0 = "_index";
        assert_eq!(fails(&d), "obs column name \"_index\" is the index");
        let mut d = anndata(&f);
        d.obsm[0].0 = "";
        assert_eq!(fails(&d), "obsm name \"\" is empty or \".\"");
        let mut d = anndata(&f);
        d.uns[0].0 = "a\0b";
        assert_eq!(fails(&d), "uns name \"a\\0b\" contains a NUL character");
    }

    #[test]
    fn strings_must_not_contain_nul() {
        let mut f = fixture();
        f.var_names[1] = "ES\0R1".into();
        assert_eq!(fails(&anndata(&f)), "var_names entry 1 contains a NUL character");
        let mut f = fixture();
        f.text[2] = "\0".into();
        assert_eq!(fails(&anndata(&f)), "obs column \"label\" entry 2 contains a NUL character");
        let f = fixture();
        let mut d = anndata(&f);
        d.uns[0].1 = "x\0";
        assert_eq!(fails(&d), "uns \"provenance\" entry 0 contains a NUL character");
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_path() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent/out.h5ad");
        let err = write_h5ad(&path, &anndata(&f)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file() {
        let f = fixture();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.h5ad");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"").unwrap();
        let err = write_h5ad(&path, &anndata(&f)).unwrap_err();
        assert!(matches!(err, AnnDataError::Io { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
