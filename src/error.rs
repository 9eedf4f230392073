//! The library's error: one variant per phase of the pipeline, each wrapping that phase's own
//! typed error, so the CLI can print one line that says where things went wrong.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] crate::source::RegistryError),
    #[error(transparent)]
    Download(#[from] crate::source::HubError),
    #[error(transparent)]
    Load(#[from] crate::model::LoadError),
    #[error(transparent)]
    Tokenize(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Inference(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Study(#[from] crate::study::StudyError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    #[error("{0}")]
    Output(String),
    /// An error found by the runner or the CLI, with what to do about it.
    #[error(transparent)]
    Hinted(#[from] crate::diagnostics::Hinted),
    /// A study the model cannot answer: `what` is the question (or the ask mode) at fault.
    #[error("{}: {what}: {source}", path.display())]
    Answer {
        path: std::path::PathBuf,
        what: String,
        source: Box<Error>,
    },
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Inference(crate::engine::EngineError::Candle(e))
    }
}

impl crate::diagnostics::Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Registry(e) => e.hint(),
            Error::Download(e) => e.hint(),
            Error::Load(e) => e.hint(),
            Error::Inference(e) => e.hint(),
            Error::Study(e) => e.hint(),
            Error::Hinted(e) => e.hint(),
            Error::Answer { source, .. } => source.hint(),
            Error::Tokenize(_) | Error::Report(_) | Error::Output(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
