//! Hugging Face checkpoints: `config.json` plus one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, in f32, f16 or bf16.
//!
//! bf16 and f16 weights stay at their stored width: on the CPU for personas' half-precision
//! kernels (the forward pass in f32 around them), and where candle runs the network (GPUs, or
//! `--kernels candle`) as candle tensors, the network then computing in that dtype
//! ([`Llama::dtype`]). f32 checkpoints stay f32. Hugging Face's rotary layout (rotate halves)
//! is kept and recorded in the config rather than permuting Q and K.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::llama::{Llama3RopeType, LlamaConfig};

use crate::model::cpu::{Half, Kernels};
use crate::model::net::{llama3_freq_factors, Block, Config, Embedding, Linear, Llama};
use crate::model::{LoadError, LLAMA_ONLY};

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
            return Err(LoadError::Unsupported {
                path,
                what: format!("model_type `{arch}`; {LLAMA_ONLY}"),
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
    const EMBED: &str = "model.embed_tokens.weight";
    let table = stored(EMBED)?;
    // What candle computes in: the checkpoint's own bf16 or f16 where candle runs the network
    // (GPUs), f32 beside personas' CPU kernels.
    let dtype = match table.dtype() {
        DType::BF16 | DType::F16 if !kernels.packs() => table.dtype(),
        _ => DType::F32,
    };
    let get = |name: &str| -> Result<Tensor, LoadError> {
        stored(name)?
            .to_dtype(dtype)
            .map_err(|e| LoadError::tensor(dir, name, e))
    };
    let linear = |name: &str| -> Result<Linear, LoadError> {
        Linear::from_tensor(stored(name)?, kernels, dtype)
            .map_err(|e| LoadError::tensor(dir, name, e))
    };
    let half_table = if kernels.packs() {
        Half::from_tensor(&table)
            .map_err(|e| LoadError::tensor(dir, EMBED, e))?
            .map(Arc::new)
    } else {
        None
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
            let embed = table
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
