//! The library's error: one variant per phase of the pipeline, each wrapping that phase's own
//! typed error, so the CLI can print one line that says where things went wrong ([`render`]),
//! then the hints of every error of the chain.

use thiserror::Error;

use crate::diagnostics::{one_line, Hint, Hinted};

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
    /// A file of a run (journal, share baseline) that cannot be read, written or copied.
    #[error("cannot {action} `{}`: {source}", path.display())]
    File {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error found by the runner or the CLI, with what to do about it.
    #[error(transparent)]
    Hinted(#[from] Hinted),
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

impl Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Registry(e) => e.hint(),
            Error::Download(e) => e.hint(),
            Error::Load(e) => e.hint(),
            Error::Inference(e) => e.hint(),
            Error::Study(e) => e.hint(),
            Error::Hinted(e) => e.hint(),
            Error::Answer { source, .. } => source.hint(),
            Error::Tokenize(_) | Error::Report(_) | Error::Output(_) | Error::File { .. } => None,
        }
    }
}

/// The hint of one error of a chain, for the error types that can carry one.
fn hint_of(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    macro_rules! first_of {
        ($($kind:ty),*) => {
            $(if let Some(e) = err.downcast_ref::<$kind>() {
                return e.hint();
            })*
        };
    }
    first_of!(
        Error,
        Hinted,
        crate::source::RegistryError,
        crate::source::HubError,
        crate::model::LoadError,
        crate::engine::EngineError,
        crate::study::StudyError
    );
    None
}

/// The text `personas` prints for an error: its chain of causes on one `error:` line (a cause
/// already said by the error above it is not repeated), then every hint of the chain on its
/// own `hint:` line, the outermost first.
pub fn render(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut hints: Vec<String> = Vec::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        let said = e.to_string();
        let said = said.trim();
        if message.is_empty() {
            message = said.to_string();
        } else if !said.is_empty() && !message.contains(said) {
            message.push_str(": ");
            message.push_str(said);
        }
        if let Some(hint) = hint_of(e).map(|h| one_line(&h)) {
            if !hint.is_empty() && !hints.contains(&hint) {
                hints.push(hint);
            }
        }
        cause = e.source();
    }
    // Messages from toml, csv and the OS sometimes break lines; an error is one line.
    let message: Vec<&str> = message.lines().map(str::trim).collect();
    let mut out = format!("error: {}\n", message.join(" "));
    for hint in hints {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

impl Error {
    /// A file that cannot be dealt with: `action` is `read`, `write` or `copy`.
    pub(crate) fn file(
        action: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        Error::File {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::RegistryError;

    #[test]
    fn hints_go_on_lines_of_their_own_after_the_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = Hinted::new("study.toml: model: cannot load", "run `personas models`")
            .because(Hinted::new("cannot read `a.toml`", "check the path").because(io));
        assert_eq!(
            err.to_string(),
            "study.toml: model: cannot load: cannot read `a.toml`: no such file"
        );
        assert_eq!(
            render(&err),
            "error: study.toml: model: cannot load: cannot read `a.toml`: no such file\n\
             hint: run `personas models`\n\
             hint: check the path\n"
        );
    }

    #[test]
    fn typed_errors_keep_their_hints_under_any_wrapping() {
        let missing = || RegistryError::MissingPath {
            path: "m.gguf".into(),
        };
        let printed = "error: study.toml: model: model path `m.gguf` does not exist\n\
                       hint: check the path, or name a preset (`personas models` lists them)\n";
        let wrapped =
            anyhow::Error::from(crate::Error::from(missing())).context("study.toml: model");
        assert_eq!(render(wrapped.as_ref()), printed);
        // Around an error, its words are said once and both hints are kept.
        let around = Hinted::around(crate::Error::from(missing()), "or this");
        assert_eq!(
            render(&around),
            "error: model path `m.gguf` does not exist\nhint: or this\n\
             hint: check the path, or name a preset (`personas models` lists them)\n"
        );
        assert_eq!(render(anyhow::anyhow!("plain").as_ref()), "error: plain\n");
    }

    #[test]
    fn a_cause_already_said_is_not_repeated_nor_its_hint() {
        let inner = Hinted::new("bad value", "use 1");
        let err = anyhow::Error::new(inner).context("file.toml:1:2: x: bad value");
        assert_eq!(
            render(err.as_ref()),
            "error: file.toml:1:2: x: bad value\nhint: use 1\n"
        );
        let twice = Hinted::around(Hinted::new("bad value", "use 1"), "use 1");
        assert_eq!(render(&twice), "error: bad value\nhint: use 1\n");
    }
}
