//! GGUF checkpoints (llama.cpp's format): metadata into [`Config`], tensors into [`Llama`].
//!
//! Quantized matrices stay quantized (candle's `QMatMul`); norms are dequantized since they are
//! tiny and used element-wise. An absent `output.weight` means tied embeddings.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::Device;

use super::llama::{Block, Config, Embedding, Linear, Llama};
use super::LoadError;

/// Opens a GGUF file and reads its header (metadata and tensor index, not the weights).
pub fn read_content(path: &Path) -> Result<Content, LoadError> {
    let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    Content::read(&mut file).map_err(|e| LoadError::format(path, e))
}

struct Meta<'a> {
    content: &'a Content,
    arch: String,
    path: &'a Path,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(&format!("{}.{key}", self.arch))
    }

    fn usize(&self, key: &str) -> Result<usize, LoadError> {
        let v = self
            .get(key)
            .ok_or_else(|| LoadError::missing(self.path, &format!("{}.{key}", self.arch)))?;
        value_usize(v).ok_or_else(|| LoadError::missing(self.path, &format!("{}.{key}", self.arch)))
    }

    fn opt_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(value_f64)
    }
}

fn value_usize(v: &Value) -> Option<usize> {
    match v {
        Value::U8(x) => Some(*x as usize),
        Value::U16(x) => Some(*x as usize),
        Value::U32(x) => Some(*x as usize),
        Value::U64(x) => Some(*x as usize),
        Value::I32(x) if *x >= 0 => Some(*x as usize),
        Value::I64(x) if *x >= 0 => Some(*x as usize),
        _ => None,
    }
}

fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::F32(x) => Some(*x as f64),
        Value::F64(x) => Some(*x),
        other => value_usize(other).map(|x| x as f64),
    }
}

/// The model's hyper-parameters from `llama.*` metadata (and `rope_freqs.weight` if present).
pub fn config(content: &Content, path: &Path, device: &Device) -> Result<Config, LoadError> {
    let arch = match content.metadata.get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(LoadError::missing(path, "general.architecture")),
    };
    if arch != "llama" {
        return Err(LoadError::Unsupported {
            path: path.to_path_buf(),
            what: format!("architecture `{arch}` (personas runs the llama architecture)"),
        });
    }
    let meta = Meta {
        content,
        arch,
        path,
    };
    let hidden = meta.usize("embedding_length")?;
    let heads = meta.usize("attention.head_count")?;
    let kv_heads = meta.usize("attention.head_count_kv").unwrap_or(heads);
    let head_dim = meta.usize("attention.key_length").unwrap_or(hidden / heads);
    let vocab = match meta.usize("vocab_size") {
        Ok(v) => v,
        Err(_) => content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| LoadError::missing(path, "token_embd.weight"))?,
    };
    let rope_freq_factors = if content.tensor_infos.contains_key("rope_freqs.weight") {
        let t = tensor(content, path, "rope_freqs.weight", device)?
            .dequantize(&Device::Cpu)
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| LoadError::format(path, e))?;
        Some(t)
    } else {
        None
    };
    let scaling_type = match meta.get("rope.scaling.type") {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let rope_linear_factor = match scaling_type {
        Some("linear") => meta.opt_f64("rope.scaling.factor").filter(|f| *f > 0.0),
        _ => None,
    };
    Ok(Config {
        hidden_size: hidden,
        intermediate_size: meta.usize("feed_forward_length")?,
        vocab_size: vocab,
        num_hidden_layers: meta.usize("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        rms_norm_eps: meta
            .opt_f64("attention.layer_norm_rms_epsilon")
            .unwrap_or(1e-5),
        rope_theta: meta.opt_f64("rope.freq_base").unwrap_or(10_000.0),
        max_position_embeddings: meta.usize("context_length").unwrap_or(4096),
        rope_freq_factors,
        rope_linear_factor,
        rope_interleaved: true,
    })
}

fn tensor(
    content: &Content,
    path: &Path,
    name: &str,
    device: &Device,
) -> Result<QTensor, LoadError> {
    let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    content
        .tensor(&mut file, name, device)
        .map_err(|e| LoadError::tensor(path, name, e))
}

/// Loads every weight of a llama GGUF onto `device`.
pub fn load(path: &Path, content: &Content, device: &Device) -> Result<Llama, LoadError> {
    let cfg = config(content, path, device)?;
    let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    let mut q = |name: &str| -> Result<QTensor, LoadError> {
        content
            .tensor(&mut file, name, device)
            .map_err(|e| LoadError::tensor(path, name, e))
    };
    let linear = |t: QTensor| -> Result<Linear, LoadError> {
        QMatMul::from_qtensor(t)
            .map(Linear::new)
            .map_err(|e| LoadError::format(path, e))
    };
    let dense = |t: QTensor| t.dequantize(device).map_err(|e| LoadError::format(path, e));

    let embed = Arc::new(q("token_embd.weight")?);
    let lm_head = if content.tensor_infos.contains_key("output.weight") {
        linear(q("output.weight")?)?
    } else {
        QMatMul::from_arc(embed.clone())
            .map(Linear::new)
            .map_err(|e| LoadError::format(path, e))?
    };
    let norm = dense(q("output_norm.weight")?)?;
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = format!("blk.{i}");
        blocks.push(Block {
            attn_norm: dense(q(&format!("{p}.attn_norm.weight"))?)?,
            wq: linear(q(&format!("{p}.attn_q.weight"))?)?,
            wk: linear(q(&format!("{p}.attn_k.weight"))?)?,
            wv: linear(q(&format!("{p}.attn_v.weight"))?)?,
            wo: linear(q(&format!("{p}.attn_output.weight"))?)?,
            ffn_norm: dense(q(&format!("{p}.ffn_norm.weight"))?)?,
            w_gate: linear(q(&format!("{p}.ffn_gate.weight"))?)?,
            w_up: linear(q(&format!("{p}.ffn_up.weight"))?)?,
            w_down: linear(q(&format!("{p}.ffn_down.weight"))?)?,
        });
    }
    Ok(Llama::new(
        cfg,
        Embedding::Quantized(embed),
        blocks,
        norm,
        lm_head,
        device.clone(),
    ))
}
