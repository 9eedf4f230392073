//! Hugging Face checkpoints: `config.json` plus one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, in f32, f16 or bf16.
//!
//! bf16 and f16 weights stay at their stored width: on the CPU for personas' half-precision
//! kernels (the forward pass in f32 around them), and where candle runs the network (GPUs, or
//! `--kernels candle`) as candle tensors, the network then computing in that dtype
//! ([`Llama::dtype`]). f32 checkpoints stay f32. Hugging Face's rotary layout (rotate halves)
//! is kept and recorded in the config rather than permuting Q and K.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::llama::{Llama3RopeType, LlamaConfig};

use crate::model::cpu::{Half, HalfKind, Kernels};
use crate::model::net::{llama3_freq_factors, Block, Config, Embedding, Linear, Llama};
use crate::model::LoadError;

/// The safetensors files of a checkpoint directory, in a stable order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| LoadError::io(&index, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| LoadError::format(&index, e))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| LoadError::missing(&index, "weight_map"))?;
        let files: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    Err(LoadError::missing(
        dir,
        "model.safetensors or model.safetensors.index.json",
    ))
}

/// Reads `config.json` into [`Config`].
pub fn config(dir: &Path) -> Result<Config, LoadError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| LoadError::io(&path, e))?;
    let raw: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LoadError::format(&path, e))?;
    if let Some(arch) = raw.get("model_type").and_then(|v| v.as_str()) {
        if arch != "llama" {
            return Err(LoadError::Architecture {
                path,
                what: format!("model_type `{arch}`"),
            });
        }
    }
    let cfg: LlamaConfig =
        serde_json::from_value(raw.clone()).map_err(|e| LoadError::format(&path, e))?;
    let head_dim = raw
        .get("head_dim")
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .unwrap_or(cfg.hidden_size / cfg.num_attention_heads);
    let rope_theta = cfg.rope_theta as f64;
    let rope_freq_factors = match &cfg.rope_scaling {
        Some(s) if matches!(s.rope_type, Llama3RopeType::Llama3) => Some(llama3_freq_factors(
            head_dim,
            rope_theta,
            s.factor as f64,
            s.low_freq_factor as f64,
            s.high_freq_factor as f64,
            s.original_max_position_embeddings as f64,
        )),
        _ => None,
    };
    Ok(Config {
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        vocab_size: cfg.vocab_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: cfg.num_key_value_heads(),
        head_dim,
        rms_norm_eps: cfg.rms_norm_eps,
        rope_theta,
        max_position_embeddings: cfg.max_position_embeddings,
        rope_freq_factors,
        rope_linear_factor: None,
        rope_interleaved: false,
    })
}

/// Where the bf16 and f16 matrices of a checkpoint's files are, from their headers (8 bytes
/// of length, then JSON: name -> dtype, shape, data offsets after the header).
struct HalfMatrices(HashMap<String, (PathBuf, u64, HalfKind, usize, usize)>);

impl HalfMatrices {
    fn read(files: &[PathBuf]) -> Result<Self, LoadError> {
        let mut found = HashMap::new();
        for path in files {
            let bad = |what: &str| LoadError::format(path, what);
            let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
            let mut len = [0u8; 8];
            file.read_exact(&mut len)
                .map_err(|e| LoadError::io(path, e))?;
            let len = u64::from_le_bytes(len);
            if len > 100 << 20 {
                return Err(bad("safetensors header over 100 MB"));
            }
            let mut header = vec![0u8; len as usize];
            file.read_exact(&mut header)
                .map_err(|e| LoadError::io(path, e))?;
            let header: HashMap<String, serde_json::Value> =
                serde_json::from_slice(&header).map_err(|e| LoadError::format(path, e))?;
            for (name, info) in header {
                let kind = match info.get("dtype").and_then(|d| d.as_str()) {
                    Some("BF16") => HalfKind::Bf16,
                    Some("F16") => HalfKind::F16,
                    _ => continue,
                };
                let dims: Vec<u64> = info
                    .get("shape")
                    .and_then(|s| s.as_array())
                    .map(|s| s.iter().filter_map(|d| d.as_u64()).collect())
                    .unwrap_or_default();
                let start = info
                    .get("data_offsets")
                    .and_then(|o| o.get(0))
                    .and_then(|o| o.as_u64())
                    .ok_or_else(|| bad("a tensor without data_offsets"))?;
                if let [n, k] = dims[..] {
                    if Half::fits(k as usize) {
                        let at = 8 + len + start;
                        found.insert(name, (path.clone(), at, kind, n as usize, k as usize));
                    }
                }
            }
        }
        Ok(Self(found))
    }

    /// Matrix `name` read from its file, if it is a bf16 or f16 matrix.
    fn load(&self, name: &str) -> Result<Option<Arc<Half>>, LoadError> {
        let Some((path, at, kind, n, k)) = self.0.get(name) else {
            return Ok(None);
        };
        let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
        Half::read(*kind, *n, *k, &mut file, *at)
            .map(|h| Some(Arc::new(h)))
            .map_err(|e| LoadError::tensor(path, name, e))
    }
}

/// Loads a checkpoint directory onto `device` (see the module documentation for dtypes).
pub fn load(dir: &Path, device: &Device, kernels: Kernels) -> Result<Llama, LoadError> {
    let cfg = config(dir)?;
    let files = weight_files(dir)?;
    // SAFETY: the files are memory-mapped read-only; personas never writes them while loaded.
    let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(|e| LoadError::format(dir, e))?;
    let kernels = if device.is_cpu() {
        kernels
    } else {
        Kernels::Candle
    };
    let stored = |name: &str| -> Result<Tensor, LoadError> {
        st.load(name, device)
            .map_err(|e| LoadError::tensor(dir, name, e))
    };
    // bf16/f16 matrices for personas' kernels are read from the files into place rather than
    // through the memory map, whose pages would count as resident beside the copy.
    let halves = if kernels.packs() {
        HalfMatrices::read(&files)?
    } else {
        HalfMatrices(HashMap::new())
    };
    const EMBED: &str = "model.embed_tokens.weight";
    let half_table = halves.load(EMBED)?;
    // What candle computes in: f32 beside personas' CPU kernels; where candle runs the network
    // (GPUs), the checkpoint's own bf16 or f16.
    let dtype = if kernels.packs() {
        DType::F32
    } else {
        let stored: DType = st
            .get(EMBED)
            .map_err(|e| LoadError::tensor(dir, EMBED, e))?
            .dtype()
            .try_into()
            .map_err(|e| LoadError::tensor(dir, EMBED, e))?;
        match stored {
            DType::BF16 | DType::F16 => stored,
            _ => DType::F32,
        }
    };
    let get = |name: &str| -> Result<Tensor, LoadError> {
        stored(name)?
            .to_dtype(dtype)
            .map_err(|e| LoadError::tensor(dir, name, e))
    };
    let linear = |name: &str| -> Result<Linear, LoadError> {
        match halves.load(name)? {
            Some(h) => Ok(Linear::half(h)),
            None => Ok(Linear::new(QMatMul::Tensor(get(name)?))),
        }
    };
    let has_head = st.get("lm_head.weight").is_ok();
    let (embed, lm_head) = match half_table {
        Some(h) => {
            let head = if has_head {
                linear("lm_head.weight")?
            } else {
                Linear::half(h.clone())
            };
            (Embedding::Half(h), head)
        }
        None => {
            let embed = stored(EMBED)?
                .to_dtype(dtype)
                .map_err(|e| LoadError::tensor(dir, EMBED, e))?;
            let head = if has_head {
                linear("lm_head.weight")?
            } else {
                Linear::new(QMatMul::Tensor(embed.clone()))
            };
            (Embedding::Dense(embed), head)
        }
    };
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        blocks.push(Block {
            attn_norm: get(&format!("{p}.input_layernorm.weight"))?,
            wq: linear(&format!("{p}.self_attn.q_proj.weight"))?,
            wk: linear(&format!("{p}.self_attn.k_proj.weight"))?,
            wv: linear(&format!("{p}.self_attn.v_proj.weight"))?,
            wo: linear(&format!("{p}.self_attn.o_proj.weight"))?,
            ffn_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
            w_gate: linear(&format!("{p}.mlp.gate_proj.weight"))?,
            w_up: linear(&format!("{p}.mlp.up_proj.weight"))?,
            w_down: linear(&format!("{p}.mlp.down_proj.weight"))?,
        });
    }
    let norm = get("model.norm.weight")?;
    let mut llama = Llama::new(cfg, embed, blocks, norm, lm_head, device.clone());
    llama.fuse(kernels);
    Ok(llama)
}
