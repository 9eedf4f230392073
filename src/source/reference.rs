//! What a user types after `--model` when it is not a preset: a local `.gguf` file, a local
//! safetensors directory, or a hub file `owner/repo[@revision]:file`.

use std::path::{Path, PathBuf};

use super::error::RegistryError;
use super::preset::{check_file_name, check_repo, ModelSpec};

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

pub(super) fn expand_home(reference: &str) -> PathBuf {
    match (reference.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(reference),
    }
}

pub(super) fn local_source(path: PathBuf, is_dir: bool) -> Result<ModelSource, RegistryError> {
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
pub(super) fn parse_hub_ref(reference: &str) -> Result<Option<ModelSource>, RegistryError> {
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
