//! Why a command failed, as the process's exit code, so batch jobs and workflows can tell a bad
//! slide (skip it) from a crash (retry it).

use spahgc_bank::BankError;
use spahgc_bundle::BundleError;
use spahgc_datasets::DatasetError;
use spahgc_embed::EmbedError;
use spahgc_engine::EngineError;
use spahgc_slide::SlideError;
use spahgc_wasm_host::WasmError;

/// A command's input that cannot be used as given (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Returns early with a [`BadInput`] error built like `format!`.
macro_rules! bad_input {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::failure::BadInput(format!($($arg)*))))
    };
}
pub(crate) use bad_input;

/// The classes of failure, each with its exit code (0 is success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A bug or a problem of the machine (I/O, memory, the encoder's runtime): 1.
    Internal = 1,
    /// Arguments, region, resolution, genes, bundle or data files that cannot be used: 2, the
    /// code the argument parser also exits with.
    BadInput = 2,
    /// The slide is missing, not a slide, or corrupt: 3.
    UnreadableSlide = 3,
}

impl Failure {
    /// The class of `error`: the first cause in its chain that tells.
    pub fn of(error: &anyhow::Error) -> Self {
        error.chain().find_map(classify).unwrap_or(Failure::Internal)
    }

    /// The name of the class in `--json` output.
    pub fn kind(self) -> &'static str {
        match self {
            Failure::Internal => "internal",
            Failure::BadInput => "bad-input",
            Failure::UnreadableSlide => "unreadable-slide",
        }
    }
}

fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    if let Some(e) = cause.downcast_ref::<EngineError>() {
        return Some(match e {
            EngineError::Input(_) | EngineError::Bundle(_) => Failure::BadInput,
            EngineError::Slide(e) | EngineError::Embed(EmbedError::Slide(e)) => of_slide(e),
            EngineError::Embed(EmbedError::NoResolution(_)) => Failure::BadInput,
            _ => Failure::Internal,
        });
    }
    if let Some(e) = cause.downcast_ref::<SlideError>() {
        return Some(of_slide(e));
    }
    if let Some(e) = cause.downcast_ref::<WasmError>() {
        let bad = matches!(e, WasmError::BadInput(_) | WasmError::Bundle(_) | WasmError::Component { .. });
        return Some(if bad { Failure::BadInput } else { Failure::Internal });
    }
    if let Some(e) = cause.downcast_ref::<BankError>() {
        return Some(if matches!(e, BankError::Io { .. }) { Failure::Internal } else { Failure::BadInput });
    }
    let bad = cause.is::<BadInput>() || cause.is::<BundleError>() || cause.is::<DatasetError>();
    bad.then_some(Failure::BadInput)
}

fn of_slide(e: &SlideError) -> Failure {
    match e {
        SlideError::Open { .. } | SlideError::Read { .. } => Failure::UnreadableSlide,
        SlideError::BadRegion(_) | SlideError::Buffer { .. } => Failure::BadInput,
    }
}
