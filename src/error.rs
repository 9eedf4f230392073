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

pub type Result<T, E = Error> = std::result::Result<T, E>;
