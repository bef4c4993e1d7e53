//! A reference bank: one bank file, or several bank files (shards, e.g. one per cohort or atlas)
//! searched as one.
//!
//! Shards are joined by a shard list, a small JSON file that names each bank file (relative to
//! the list's directory) and the checksum its header held when the list was written:
//!
//! ```json
//! {"format": "spahgc-bank-shards", "version": 1,
//!  "shards": [{"file": "cohort-a.spb", "sha256": "…"}, {"file": "atlas.spb", "sha256": "…"}]}
//! ```
//!
//! Rows are numbered across the shards in list order, sections likewise. Shards must agree on
//! everything that makes their spots comparable — encoder, embedding dimension, genes and
//! normalisation — and must not repeat a section name; a list that breaks this is refused.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView1, CowArray, Ix1};
use serde::{Deserialize, Serialize};
use spahgc_core::{Normalisation, write_atomically};

use crate::format::MAGIC;
use crate::retrieve::AttachedIndex;
use crate::{BankError, BankFile, BankMeta};

const SHARD_LIST_FORMAT: &str = "spahgc-bank-shards";
/// The shard-list version this build writes and reads.
const SHARD_LIST_VERSION: u32 = 1;
/// A shard list is a few lines per shard; anything larger is not one.
const SHARD_LIST_MAX_BYTES: u64 = 16 << 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardList {
    format: String,
    version: u32,
    shards: Vec<ShardEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardEntry {
    file: PathBuf,
    sha256: String,
}

/// One bank file of a bank, where its rows and sections start in the bank's numbering, and the
/// approximate index attached to it, if any.
pub(crate) struct Shard {
    pub(crate) file: BankFile,
    pub(crate) first_row: usize,
    pub(crate) first_section: usize,
    pub(crate) index: Option<AttachedIndex>,
}

/// An opened, verified reference bank: one bank file or a shard list of several, searched as
/// one. Cheap to query from many threads (`Send + Sync`).
pub struct ReferenceBank {
    path: PathBuf,
    meta: BankMeta,
    pub(crate) shards: Vec<Shard>,
    /// See [`ReferenceBank::feature_distances`].
    pub(crate) distances: OnceLock<Option<Array2<f32>>>,
}

impl std::fmt::Debug for ReferenceBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<&Path> = self.files().map(BankFile::path).collect();
        f.debug_struct("ReferenceBank")
            .field("path", &self.path)
            .field("spots", &self.len())
            .field("files", &files)
            .finish()
    }
}

impl ReferenceBank {
    /// Opens and verifies a bank file, or a shard list and every bank file it names.
    pub fn open(path: &Path) -> Result<Self, BankError> {
        match is_shard_list(path)? {
            true => open_shard_list(path),
            false => Self::from_files(path, vec![BankFile::open(path)?]),
        }
    }

    /// A bank over `files`, once they are checked to fit together.
    fn from_files(path: &Path, files: Vec<BankFile>) -> Result<Self, BankError> {
        let mut meta = files[0].meta().clone();
        for file in &files[1..] {
            check_compatible(&files[0], file)?;
            for section in &file.meta().sections {
                if meta.sections.iter().any(|s| s.name == section.name) {
                    return Err(incompatible(file, &files[0], format!("section {} is in both", section.name)));
                }
            }
            meta.sections.extend(file.meta().sections.iter().cloned());
            meta.n_spots += file.len();
        }
        let (mut first_row, mut first_section) = (0, 0);
        let shards = files
            .into_iter()
            .map(|file| {
                let shard = Shard { first_row, first_section, file, index: None };
                first_row += shard.file.len();
                first_section += shard.file.meta().sections.len();
                shard
            })
            .collect();
        Ok(Self { path: path.into(), meta, shards, distances: OnceLock::new() })
    }

    /// The bank's metadata; for several shards, the first shard's, with every shard's sections
    /// and spots.
    pub fn meta(&self) -> &BankMeta {
        &self.meta
    }

    /// The file the bank was opened from (a bank file or a shard list).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of reference spots.
    pub fn len(&self) -> usize {
        self.meta.n_spots
    }

    /// Whether the bank holds no spot.
    pub fn is_empty(&self) -> bool {
        self.meta.n_spots == 0
    }

    /// The bank files, in row order (one unless the bank is a shard list).
    pub fn files(&self) -> impl ExactSizeIterator<Item = &BankFile> {
        self.shards.iter().map(|s| &s.file)
    }

    /// Embedding of spot `row` (converted to f32 if stored as f16). Panics if `row` is not
    /// below [`ReferenceBank::len`].
    pub fn embedding(&self, row: usize) -> CowArray<'_, f32, Ix1> {
        let (shard, local) = self.locate(row);
        shard.file.embeddings().row_f32(local)
    }

    /// Normalised expression of spot `row` over the bank's genes.
    pub fn expression(&self, row: usize) -> ArrayView1<'_, f32> {
        let (shard, local) = self.locate(row);
        shard.file.expression().index_axis_move(ndarray::Axis(0), local)
    }

    /// Index into [`BankMeta::sections`] of spot `row`'s section.
    pub fn section_of(&self, row: usize) -> usize {
        let (shard, local) = self.locate(row);
        shard.first_section + shard.file.section_of()[local] as usize
    }

    /// The shard holding spot `row`, and the row within it.
    fn locate(&self, row: usize) -> (&Shard, usize) {
        let shard = &self.shards[self.shards.partition_point(|s| s.first_row <= row) - 1];
        (shard, row - shard.first_row)
    }
}

/// Writes a shard list at `list` joining the bank files `shards` (searched in this order), after
/// checking that they fit together, and opens it.
pub fn join_banks(list: &Path, shards: &[PathBuf]) -> Result<ReferenceBank, BankError> {
    if shards.is_empty() {
        return Err(BankError::Input("joining banks needs at least one bank file".into()));
    }
    let files = shards.iter().map(|path| BankFile::open(path)).collect::<Result<Vec<_>, _>>()?;
    let bank = ReferenceBank::from_files(list, files)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BankError::Io { path, source }
    };
    let list_dir = std::path::absolute(list).map_err(io(list))?.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut entries = Vec::with_capacity(shards.len());
    for file in bank.files() {
        let absolute = std::path::absolute(file.path()).map_err(io(file.path()))?;
        let file_name = absolute.strip_prefix(&list_dir).map(Path::to_path_buf).unwrap_or(absolute.clone());
        entries.push(ShardEntry { file: file_name, sha256: file.checksum() });
    }
    let json = serde_json::to_vec_pretty(&ShardList {
        format: SHARD_LIST_FORMAT.into(),
        version: SHARD_LIST_VERSION,
        shards: entries,
    })
    .map_err(|e| BankError::Input(e.to_string()))?;
    write_atomically(list, |out| out.write_all(&json)).map_err(io(list))?;
    Ok(bank)
}

/// Whether `path` holds a shard list (JSON) rather than a bank file.
fn is_shard_list(path: &Path) -> Result<bool, BankError> {
    let io = |source| BankError::Io { path: path.into(), source };
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let read = file.read(&mut head).map_err(io)?;
    Ok(&head != MAGIC && head[..read].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

fn open_shard_list(path: &Path) -> Result<ReferenceBank, BankError> {
    let bad = |problem: String| BankError::Format { path: path.into(), problem };
    let io = |source| BankError::Io { path: path.into(), source };
    let mut text = Vec::new();
    std::fs::File::open(path).map_err(io)?.take(SHARD_LIST_MAX_BYTES + 1).read_to_end(&mut text).map_err(io)?;
    if text.len() as u64 > SHARD_LIST_MAX_BYTES {
        return Err(bad(format!("larger than {SHARD_LIST_MAX_BYTES} bytes: not a shard list")));
    }
    let list: ShardList = serde_json::from_slice(&text).map_err(|e| bad(format!("shard list: {e}")))?;
    if list.format != SHARD_LIST_FORMAT {
        return Err(bad(format!("format is {:?}, a shard list's is {SHARD_LIST_FORMAT:?}", list.format)));
    }
    if list.version != SHARD_LIST_VERSION {
        let version = list.version;
        return Err(bad(format!("shard list version {version}; this build reads version {SHARD_LIST_VERSION}")));
    }
    if list.shards.is_empty() {
        return Err(bad("the shard list names no bank file".into()));
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut files = Vec::with_capacity(list.shards.len());
    for entry in list.shards {
        let file = BankFile::open(&dir.join(&entry.file))?;
        if file.checksum() != entry.sha256 {
            return Err(bad(format!(
                "shard {} changed since the list was written (sha256 {}, listed {})",
                entry.file.display(),
                file.checksum(),
                entry.sha256
            )));
        }
        files.push(file);
    }
    ReferenceBank::from_files(path, files)
}

/// Checks that `shard`'s spots can be searched and used together with `first`'s.
fn check_compatible(first: &BankFile, shard: &BankFile) -> Result<(), BankError> {
    let (a, b) = (first.meta(), shard.meta());
    let problem = if a.encoder_sha256 != b.encoder_sha256 {
        format!("encoder sha256 {} differs from {}", b.encoder_sha256, a.encoder_sha256)
    } else if a.embedding_dim != b.embedding_dim {
        format!("embeddings have {} dimensions, expected {}", b.embedding_dim, a.embedding_dim)
    } else if a.genes != b.genes {
        match a.genes.iter().zip(&b.genes).position(|(x, y)| x != y) {
            Some(i) => format!("gene {} is {}, expected {}", i + 1, b.genes[i], a.genes[i]),
            None => format!("{} genes, expected {}", b.genes.len(), a.genes.len()),
        }
    } else if a.norm.method != b.norm.method {
        format!("normalisation {:?}, expected {:?}", b.norm.method, a.norm.method)
    } else if a.norm.method == Normalisation::MinMax && (a.norm.min != b.norm.min || a.norm.max != b.norm.max) {
        format!(
            "its min-max statistics differ (build it normalised as {}: `spahgc bank build --normalised-as`)",
            first.path().display()
        )
    } else {
        return Ok(());
    };
    Err(incompatible(shard, first, problem))
}

fn incompatible(shard: &BankFile, first: &BankFile, problem: String) -> BankError {
    BankError::Incompatible { shard: shard.path().into(), first: first.path().into(), problem }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use spahgc_core::Normalisation;

    use super::*;
    use crate::test_support::{random_bank, random_section};
    use crate::{BankSection, EmbeddingPrecision, Normalise, build_bank, build_bank_with};

    /// A bank of sections "C" (25 spots) and "D" (15 spots) normalised as `like`.
    fn second_bank(dir: &Path, like: &ReferenceBank) -> PathBuf {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let parts = [random_section("C", 25, 16, &mut rng), random_section("D", 15, 16, &mut rng)];
        let inputs: Vec<BankSection> =
            parts.iter().map(|(s, e)| BankSection { section: s, embeddings: e.view() }).collect();
        let path = dir.join("second.spb");
        build_bank_with(
            &path,
            &inputs,
            Normalise::As(&like.meta().norm),
            EmbeddingPrecision::F32,
            &like.meta().encoder_sha256,
        )
        .unwrap();
        path
    }

    #[test]
    fn shards_are_searched_as_one_bank() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = random_bank(dir.path(), 3);
        let second = ReferenceBank::open(&second_bank(dir.path(), &first)).unwrap();
        let list = dir.path().join("joined.banks");
        join_banks(&list, &[first.path().into(), second.path().into()]).unwrap();
        let joined = ReferenceBank::open(&list).unwrap();
        assert_eq!(joined.len(), 90);
        let names: Vec<&str> = joined.meta().sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C", "D"]);
        assert_eq!(joined.embedding(55), second.embedding(5));
        assert_eq!(joined.expression(50), second.expression(0));
        assert_eq!((joined.section_of(49), joined.section_of(50), joined.section_of(89)), (1, 2, 3));

        // The joined bank's top-k is the best of both banks' top-k, rows numbered across them.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let queries = Array2::from_shape_fn((20, 16), |_| rng.random_range(-1.0..1.0f32));
        for exclude in [None, Some("B"), Some("C")] {
            let found = joined.top_k(queries.view(), 6, exclude).unwrap();
            let a = first.top_k(queries.view(), 6, exclude).unwrap();
            let b = second.top_k(queries.view(), 6, exclude).unwrap();
            for ((hits, a), b) in found.iter().zip(a).zip(b) {
                let mut both: Vec<(f32, usize)> = a.iter().map(|n| (n.similarity, n.index)).collect();
                both.extend(b.iter().map(|n| (n.similarity, n.index + 50)));
                both.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                let want: Vec<usize> = both.iter().take(6).map(|p| p.1).collect();
                assert_eq!(hits.iter().map(|n| n.index).collect::<Vec<_>>(), want, "exclude {exclude:?}");
                let excluded = exclude.map(|name| names.iter().position(|n| *n == name).unwrap());
                assert!(hits.iter().all(|n| Some(joined.section_of(n.index)) != excluded));
            }
        }
    }

    /// A bank file to write, how, and what joining it to the first bank must say.
    type Case<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);

    #[test]
    fn incompatible_or_changed_shards_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, parts) = random_bank(dir.path(), 3);
        let inputs: Vec<BankSection> =
            parts.iter().map(|(s, e)| BankSection { section: s, embeddings: e.view() }).collect();
        let genes = |names: &[&str]| names.iter().map(|g| g.to_string()).collect::<Vec<_>>();
        let sha = first.meta().encoder_sha256.clone();
        let refused = |name: &str, build: &dyn Fn(&Path)| {
            let path = dir.path().join(name);
            build(&path);
            let list = dir.path().join(format!("{name}.banks"));
            let err = join_banks(&list, &[first.path().into(), path]).expect_err(name);
            assert!(!list.exists(), "{name}: a refused join writes no list");
            err.to_string()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (other, other_embeddings) = random_section("E", 10, 16, &mut rng);
        let alone = [BankSection { section: &other, embeddings: other_embeddings.view() }];
        let cases: [Case; 5] = [
            (
                "genes.spb",
                &|p| {
                    build_bank(p, &alone, &genes(&["G3", "G2", "G7"]), Normalisation::MinMax, &sha).unwrap();
                },
                "gene 2 is G2, expected G1",
            ),
            (
                "encoder.spb",
                &|p| {
                    build_bank_with(
                        p,
                        &alone,
                        Normalise::As(&first.meta().norm),
                        EmbeddingPrecision::F32,
                        &"cd".repeat(32),
                    )
                    .unwrap();
                },
                "encoder sha256",
            ),
            (
                "fitted.spb",
                &|p| {
                    build_bank(p, &alone, &first.meta().genes, Normalisation::MinMax, &sha).unwrap();
                },
                "min-max statistics differ",
            ),
            (
                "method.spb",
                &|p| {
                    build_bank(p, &alone, &first.meta().genes, Normalisation::LogCounts, &sha).unwrap();
                },
                "normalisation LogCounts",
            ),
            (
                "again.spb",
                &|p| {
                    build_bank_with(p, &inputs[1..], Normalise::As(&first.meta().norm), EmbeddingPrecision::F32, &sha)
                        .unwrap();
                },
                "section B is in both",
            ),
        ];
        for (name, build, expected) in cases {
            let err = refused(name, build);
            assert!(err.contains(expected) && err.contains(name) && err.contains("bank.spb"), "{name}: {err}");
        }

        // A shard rewritten after the list was made is refused, naming it.
        let second = second_bank(dir.path(), &first);
        let list = dir.path().join("joined.banks");
        join_banks(&list, &[first.path().into(), second.clone()]).unwrap();
        let moved = dir.path().join("moved.spb");
        std::fs::rename(&second, &moved).unwrap();
        std::fs::copy(dir.path().join("again.spb"), &second).unwrap();
        let err = ReferenceBank::open(&list).expect_err("a changed shard").to_string();
        assert!(err.contains("shard second.spb changed") && err.contains("joined.banks"), "{err}");
        std::fs::remove_file(&second).unwrap();
        let err = ReferenceBank::open(&list).expect_err("a missing shard").to_string();
        assert!(err.contains("second.spb"), "{err}");
        for (text, expected) in [
            ("{\"format\": \"spahgc-bank-shards\", \"version\": 2, \"shards\": []}", "version 2"),
            ("{\"format\": \"spahgc-bank-shards\", \"version\": 1, \"shards\": []}", "names no bank file"),
            ("{\"format\": \"other\", \"version\": 1, \"shards\": []}", "\"other\""),
            ("{\"shards\": ", "shard list:"),
        ] {
            std::fs::write(&list, text).unwrap();
            let err = ReferenceBank::open(&list).expect_err(expected).to_string();
            assert!(err.contains(expected) && err.contains("joined.banks"), "{err}");
        }
    }
}
