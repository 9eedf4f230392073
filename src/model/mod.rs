//! Model loading: weights already on disk (see `hub` for getting them there) into a runnable
//! [`Model`]: the Llama network, its tokenizer and its chat template.
//!
//! Finding files and loading them are separate steps, so every loader works offline on paths.
//!
//! Layout: [`net`] is the Llama network, written once for every device and weight format;
//! [`mod@format`] reads checkpoint files (GGUF, safetensors) into it; [`cpu`] holds personas' own
//! CPU kernels, by weight format and instruction set. GPUs run the network through candle's
//! kernels (the `Kernels::Candle` path of [`net`]).

pub mod cpu;
pub mod format;
pub mod net;

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::diagnostics::Hint;
use crate::tokenizer::Tokenizer;
pub use cpu::Kernels;
pub use format::{gguf, safetensors};
pub use net::{Cache, Config, Llama, LogitsAt};

/// How a model is loaded for the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// What runs the projections: personas' packed kernels (weights stay at their stored
    /// width) or candle's.
    pub kernels: Kernels,
    /// Bytes that dense f32 copies of weights left to candle may take (faster batched products
    /// on the CPU for formats personas does not pack); 0 for none.
    pub dense_max_bytes: usize,
}

impl Default for LoadOptions {
    /// The fastest kernels this CPU has, no dense copies.
    fn default() -> Self {
        Self {
            kernels: Kernels::detect(),
            dense_max_bytes: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid model file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("`{path}` has no `{key}`")]
    Missing { path: PathBuf, key: String },
    #[error("`{path}`: cannot load tensor `{name}`: {message}")]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error(
        "`{path}` is truncated: tensor `{tensor}` ends at byte {end} but the file has {len} bytes"
    )]
    Truncated {
        path: PathBuf,
        tensor: String,
        end: u64,
        len: u64,
    },
    /// A checkpoint of another architecture; `what` names it (`architecture `gemma``).
    #[error("`{path}`: unsupported {what}")]
    Architecture { path: PathBuf, what: String },
    #[error("device `{spec}`: {message}")]
    Device {
        spec: String,
        message: String,
        hint: Option<String>,
    },
    #[error("`{path}`: no tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
}

impl Hint for LoadError {
    fn hint(&self) -> Option<String> {
        match self {
            LoadError::Missing { .. } => Some("is this a complete llama checkpoint?".into()),
            LoadError::Truncated { .. } => {
                Some("download it again (`personas download` checks the sha256)".into())
            }
            LoadError::Architecture { .. } => Some(
                "personas runs the llama architecture (Llama 2 and 3, SmolLM, and others \
                 converted in its layout); `personas models` lists presets that run"
                    .into(),
            ),
            LoadError::Device { hint, .. } => hint.clone(),
            _ => None,
        }
    }
}

/// `text` up to its first line break.
pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim_end().to_string()
}

impl LoadError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        LoadError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    /// The first line of `e` only: candle's errors carry a backtrace after it when
    /// `RUST_BACKTRACE` is set, which is not for users.
    pub(crate) fn format(path: &Path, e: impl std::fmt::Display) -> Self {
        LoadError::Format {
            path: path.to_path_buf(),
            message: first_line(&e.to_string()),
        }
    }
    pub(crate) fn missing(path: &Path, key: &str) -> Self {
        LoadError::Missing {
            path: path.to_path_buf(),
            key: key.to_string(),
        }
    }
    pub(crate) fn tensor(path: &Path, name: &str, e: impl std::fmt::Display) -> Self {
        LoadError::Tensor {
            path: path.to_path_buf(),
            name: name.to_string(),
            message: first_line(&e.to_string()),
        }
    }
}

/// Parses `cpu`, `cuda`, `cuda:N` or `metal` into a candle device.
pub fn device(spec: &str) -> Result<Device, LoadError> {
    let err = |message: String, hint: Option<String>| LoadError::Device {
        spec: spec.to_string(),
        message,
        hint,
    };
    match spec {
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0).map_err(|e| {
            let hint = "build with `--features metal`".to_string();
            err(first_line(&e.to_string()), Some(hint))
        }),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| err("expected `cuda:N` with N a GPU number".into(), None))?,
                None => 0,
            };
            Device::new_cuda(ordinal).map_err(|e| {
                let hint = if cfg!(feature = "cuda") {
                    format!("is an NVIDIA driver loaded and GPU {ordinal} present (`nvidia-smi`)?")
                } else {
                    "this build has no CUDA: build with `--features cuda` (see README)".into()
                };
                err(first_line(&e.to_string()), Some(hint))
            })
        }
        _ => Err(err(
            "expected `cpu`, `cuda`, `cuda:N` or `metal`".into(),
            None,
        )),
    }
}

/// Files that make up one model on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelFiles {
    /// A GGUF file, with an optional tokenizer.json (+ tokenizer_config.json) beside it.
    Gguf {
        path: PathBuf,
        tokenizer: Option<PathBuf>,
    },
    /// A directory with config.json, safetensors weights and tokenizer files.
    Safetensors { dir: PathBuf },
}

impl ModelFiles {
    pub fn main_path(&self) -> &Path {
        match self {
            ModelFiles::Gguf { path, .. } => path,
            ModelFiles::Safetensors { dir } => dir,
        }
    }
}

/// A loaded model: network, tokenizer and chat template.
pub struct Model {
    pub llama: Llama,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    pub files: ModelFiles,
}

impl Model {
    /// Loads weights and tokenizer. `template_override` replaces the checkpoint's template.
    pub fn load(
        files: &ModelFiles,
        device: &Device,
        template_override: Option<String>,
        options: LoadOptions,
    ) -> Result<Self, LoadError> {
        let tokenizer = load_tokenizer(files)?;
        if device.is_cpu() {
            cpu::keep_freed_memory();
        }
        let mut llama = match files {
            ModelFiles::Gguf { path, .. } => {
                gguf::load(path, &gguf::read_content(path)?, device, options.kernels)?
            }
            ModelFiles::Safetensors { dir } => safetensors::load(dir, device, options.kernels)?,
        };
        if options.dense_max_bytes > 0 {
            llama
                .densify(options.dense_max_bytes)
                .map_err(|e| LoadError::format(files.main_path(), e))?;
        }
        let chat_template = template_override.or_else(|| tokenizer.chat_template());
        Ok(Self {
            llama,
            tokenizer,
            chat_template,
            files: files.clone(),
        })
    }
}

/// The tokenizer alone, without reading any weights: tokenizer.json where the model has one,
/// otherwise built from the GGUF metadata.
pub fn load_tokenizer(files: &ModelFiles) -> Result<Tokenizer, LoadError> {
    let (from, result) = match files {
        ModelFiles::Gguf {
            path,
            tokenizer: Some(json),
        } => {
            let cfg = json.with_file_name("tokenizer_config.json");
            let cfg = cfg.exists().then_some(cfg);
            (path, Tokenizer::from_file(json, cfg.as_deref()))
        }
        ModelFiles::Gguf {
            path,
            tokenizer: None,
        } => (path, Tokenizer::from_gguf(&gguf::read_content(path)?)),
        ModelFiles::Safetensors { dir } => {
            let cfg = dir.join("tokenizer_config.json");
            let cfg = cfg.exists().then_some(cfg);
            (
                dir,
                Tokenizer::from_file(&dir.join("tokenizer.json"), cfg.as_deref()),
            )
        }
    };
    result.map_err(|e| LoadError::Tokenizer {
        path: from.clone(),
        message: first_line(&e.to_string()),
    })
}
