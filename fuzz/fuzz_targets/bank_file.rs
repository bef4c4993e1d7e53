//! The reference-bank file: `BankFile::open`, every array, then `ReferenceBank::open` and a
//! retrieval; bytes that are no bank file go to `ReferenceBank::open` as a possible shard list.
//!
//! Inputs are either any bytes, or a real bank (built here by `build_bank` at a shape the input
//! picks) with bytes overwritten and the end cut. Either way the checksum can be repaired (the
//! SHA-256 at bytes 24..56 over bytes 64..end), so that the checks behind it are reached too.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ndarray::Array2;
use spahgc_bank::{BankFile, BankSection, ReferenceBank, build_bank};
use spahgc_core::{CountMatrix, Normalisation, Section, Spot};
use spahgc_fuzz::MadeOnce;

const HEADER_LEN: usize = 64;
const CHECKSUM: std::ops::Range<usize> = 24..56;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw { bytes: Vec<u8>, repair: bool },
    Edited { spots: u8, dim: u8, genes: u8, edits: Vec<(u16, u8)>, cut: Option<u16>, repair: bool },
}

/// A bank of `spots` spots (two sections), `dim`-wide embeddings and `genes` genes, as bytes.
fn real_bank(spots: usize, dim: usize, genes: usize) -> Vec<u8> {
    static BUILT: MadeOnce<(usize, usize, usize)> = MadeOnce::new();
    BUILT.get((spots, dim, genes), || {
        let names: Vec<String> = (0..genes).map(|g| format!("G{g}")).collect();
        let section = |name: &str, rows: usize| Section {
            name: name.into(),
            spots: (0..rows).map(|i| Spot { id: format!("{name}{i}"), x: i as f64, y: 1.0 }).collect(),
            counts: CountMatrix::from_csr(
                names.clone(),
                (0..=rows).map(|r| r * genes).collect(),
                (0..rows).flat_map(|_| 0..genes as u32).collect(),
                (0..rows * genes).map(|v| (v % 7 + 1) as f32).collect(),
            )
            .unwrap(),
            image: None,
            microns_per_pixel: None,
            spot_diameter_px: None,
        };
        let (a, b) = (section("A", spots.div_ceil(2)), section("B", spots / 2));
        let embed = |rows: usize| Array2::from_shape_fn((rows, dim), |(r, c)| ((r * 31 + c * 7) % 11) as f32 - 5.0);
        let (ea, eb) = (embed(a.spots.len()), embed(b.spots.len()));
        let mut parts = vec![BankSection { section: &a, embeddings: ea.view() }];
        if !b.spots.is_empty() {
            parts.push(BankSection { section: &b, embeddings: eb.view() });
        }
        let path = spahgc_fuzz::fresh_dir("bank-build").join("bank.spb");
        build_bank(&path, &parts, &names, Normalisation::MinMax, &"ab".repeat(32)).expect("building a small bank");
        std::fs::read(&path).unwrap()
    })
}

fuzz_target!(|input: Input| {
    let (mut bytes, repair) = match input {
        Input::Raw { bytes, repair } => (bytes, repair),
        Input::Edited { spots, dim, genes, edits, cut, repair } => {
            let mut bytes = real_bank(usize::from(spots % 6) + 1, usize::from(dim % 8) + 1, usize::from(genes % 4) + 1);
            for (at, value) in edits {
                let at = usize::from(at) % bytes.len();
                bytes[at] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(usize::from(cut));
            }
            (bytes, repair)
        }
    };
    if repair && bytes.len() >= HEADER_LEN {
        let sum = spahgc_fuzz::sha256_of(&[&bytes[HEADER_LEN..]]);
        bytes[CHECKSUM].copy_from_slice(&sum);
    }
    let path = spahgc_fuzz::fresh_dir("bank").join("bank.spb");
    spahgc_fuzz::write(&path, &bytes);
    let Ok(file) = BankFile::open(&path) else {
        // Not a bank file: perhaps a shard list (JSON), which must fail or open just as cleanly.
        let _ = ReferenceBank::open(&path);
        return;
    };
    let (embeddings, expression, centres) = (file.embeddings(), file.expression(), file.centres());
    assert_eq!(embeddings.nrows(), file.len());
    assert_eq!(expression.nrows(), file.len());
    assert_eq!(centres.nrows(), file.len());
    assert!(file.section_of().iter().all(|&s| (s as usize) < file.meta().sections.len()), "sections in range");
    let bank = ReferenceBank::open(&path).expect("a bank file that opens is a bank");
    let query = Array2::from_elem((2, bank.meta().embedding_dim), 0.5f32);
    if let Ok(found) = bank.top_k(query.view(), 3, Some("A")) {
        for n in found.iter().flatten() {
            assert!(n.index < bank.len(), "neighbour {n:?} is not a bank row");
            assert!(n.similarity.abs() <= 1.0 + 2e-3, "neighbour {n:?}: a cosine similarity is in [-1, 1]");
        }
    }
});
