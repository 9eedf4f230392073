//! GGUF checkpoints (llama.cpp's format): metadata into [`Config`], tensors into [`Llama`].
//!
//! Quantized matrices stay quantized: packed for personas' CPU kernels as each is read (so the
//! file's bytes are held once, at their stored width; F16 and BF16 as stored for the
//! half-precision kernels), or candle's `QMatMul` on a GPU and for formats personas does not
//! pack. Norms are dequantized since they are tiny and used
//! element-wise. An absent `output.weight` means tied embeddings: one table serves both.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::Device;

use crate::model::cpu::{Half, HalfKind, Kernels, Packed};
use crate::model::net::{Block, Config, Embedding, Linear, Llama};
use crate::model::LoadError;

/// Opens a GGUF file and reads its header (metadata and tensor index, not the weights).
pub fn read_content(path: &Path) -> Result<Content, LoadError> {
    let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    let len = file.metadata().map_err(|e| LoadError::io(path, e))?.len();
    // candle divides by `general.alignment` without checking it (huggingface/candle#3876).
    if declared_alignment(&mut BufReader::new(&mut file), len) == Some(0) {
        return Err(LoadError::format(path, "`general.alignment` is 0"));
    }
    file.rewind().map_err(|e| LoadError::io(path, e))?;
    let content = Content::read(&mut file).map_err(|e| LoadError::format(path, e))?;
    // Every tensor must lie inside the file: a cut-off download fails here, by name, rather
    // than deep inside a read (and a hostile header cannot ask for a huge allocation).
    for (name, t) in &content.tensor_infos {
        let dtype = t.ggml_dtype;
        let dims = t.shape.dims();
        // No llama tensor is a scalar or empty (and candle cannot read an empty one).
        if dims.is_empty() || dims.contains(&0) {
            return Err(LoadError::format(
                path,
                format!("tensor `{name}` has shape {dims:?}; no model tensor is empty or 0-D"),
            ));
        }
        let bytes = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| (n / dtype.block_size()).checked_mul(dtype.type_size()))
            .and_then(|b| u64::try_from(b).ok());
        let end = bytes.and_then(|b| {
            (content.tensor_data_offset)
                .checked_add(t.offset)?
                .checked_add(b)
        });
        match end {
            Some(end) if end <= len => {}
            Some(end) => {
                return Err(LoadError::Truncated {
                    path: path.to_path_buf(),
                    tensor: name.clone(),
                    end,
                    len,
                })
            }
            None => {
                return Err(LoadError::format(
                    path,
                    format!(
                        "tensor `{name}` has an impossible size {:?}",
                        t.shape.dims()
                    ),
                ))
            }
        }
    }
    Ok(content)
}

/// `general.alignment` as the header declares it (the last one, as in candle's map), found
/// by walking the metadata without keeping it; `None` when absent, not an 8- to 32-bit
/// integer, or negative, as candle reads it. The walk accepts everything candle's reader
/// accepts (nesting up to 64 arrays deep, as candle), so no header candle reads to the end
/// escapes it; every length is bounded by the file, so a hostile count cannot make it long.
fn declared_alignment(r: &mut impl Read, len: u64) -> Option<u64> {
    struct Walk<'a, R> {
        r: &'a mut R,
        v1: bool,
        len: u64,
    }
    impl<R: Read> Walk<'_, R> {
        fn read<const N: usize>(&mut self) -> Option<[u8; N]> {
            let mut b = [0; N];
            self.r.read_exact(&mut b).ok()?;
            Some(b)
        }
        fn u32(&mut self) -> Option<u32> {
            self.read().map(u32::from_le_bytes)
        }
        fn length(&mut self) -> Option<u64> {
            let n = if self.v1 {
                u64::from(self.u32()?)
            } else {
                u64::from_le_bytes(self.read()?)
            };
            (n <= self.len).then_some(n)
        }
        fn skip(&mut self, n: u64) -> Option<()> {
            let copied = std::io::copy(&mut self.r.take(n), &mut std::io::sink()).ok()?;
            (copied == n).then_some(())
        }
        /// Skips one value of GGUF type `ty`.
        fn skip_value(&mut self, ty: u32, depth: u32) -> Option<()> {
            match ty {
                0 | 1 | 7 => self.skip(1),
                2 | 3 => self.skip(2),
                4..=6 => self.skip(4),
                10..=12 => self.skip(8),
                8 => {
                    let n = self.length()?;
                    self.skip(n)
                }
                9 if depth <= 64 => {
                    let item = self.u32()?;
                    for _ in 0..self.length()? {
                        self.skip_value(item, depth + 1)?;
                    }
                    Some(())
                }
                _ => None,
            }
        }
        /// Reads an integer of GGUF type `ty` as candle reads `general.alignment`.
        fn alignment(&mut self, ty: u32) -> Option<Option<u64>> {
            let size = match ty {
                0 | 1 => 1,
                2 | 3 => 2,
                4 | 5 => 4,
                _ => return self.skip_value(ty, 0).map(|_| None),
            };
            let mut b = [0; 4];
            self.r.read_exact(&mut b[..size]).ok()?;
            let negative = ty % 2 == 1 && b[size - 1] & 0x80 != 0;
            Some((!negative).then_some(u64::from(u32::from_le_bytes(b))))
        }
    }
    const KEY: &[u8] = b"general.alignment";
    let mut walk = Walk { r, v1: false, len };
    if walk.u32()? != 0x4655_4747 {
        return None;
    }
    walk.v1 = walk.u32()? == 1;
    let _tensors = walk.length()?;
    let mut alignment = None;
    for _ in 0..walk.length()? {
        let n = walk.length()?;
        let is_alignment = if n == KEY.len() as u64 {
            walk.read::<{ KEY.len() }>()? == KEY
        } else {
            walk.skip(n)?;
            false
        };
        let ty = walk.u32()?;
        if is_alignment {
            alignment = walk.alignment(ty)?;
        } else {
            walk.skip_value(ty, 0)?;
        }
    }
    alignment
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

    /// A count that must be at least 1 (a 0 would divide by zero or make an empty model).
    fn positive(&self, key: &str) -> Result<usize, LoadError> {
        match self.usize(key)? {
            0 => Err(self.invalid(format!("`{}.{key}` is 0", self.arch))),
            n => Ok(n),
        }
    }

    fn invalid(&self, message: String) -> LoadError {
        LoadError::format(self.path, message)
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
        return Err(LoadError::Architecture {
            path: path.to_path_buf(),
            what: format!("architecture `{arch}`"),
        });
    }
    let meta = Meta {
        content,
        arch,
        path,
    };
    let hidden = meta.positive("embedding_length")?;
    let heads = meta.positive("attention.head_count")?;
    let kv_heads = match meta.get("attention.head_count_kv") {
        Some(_) => meta.positive("attention.head_count_kv")?,
        None => heads,
    };
    if !heads.is_multiple_of(kv_heads) {
        return Err(meta.invalid(format!(
            "`{arch}.attention.head_count` ({heads}) is not a multiple of \
             `{arch}.attention.head_count_kv` ({kv_heads})",
            arch = meta.arch
        )));
    }
    let head_dim = match meta.get("attention.key_length") {
        Some(_) => meta.positive("attention.key_length")?,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => {
            return Err(meta.invalid(format!(
                "`{arch}.embedding_length` ({hidden}) is not a multiple of \
                 `{arch}.attention.head_count` ({heads})",
                arch = meta.arch
            )))
        }
    };
    let vocab = match meta.get("vocab_size") {
        Some(_) => meta.positive("vocab_size")?,
        None => content
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|t| t.shape.dims().first().copied())
            .filter(|&n| n > 0)
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
        intermediate_size: meta.positive("feed_forward_length")?,
        vocab_size: vocab,
        num_hidden_layers: meta.positive("block_count")?,
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

/// An F16 or BF16 matrix read from the file straight into [`Half`] (reading it as a `QTensor`
/// first held it twice while it was copied: 10% over llama.cpp's peak memory on a 1B F16);
/// `None` for other formats and shapes.
fn half_from_file(
    content: &Content,
    file: &mut File,
    path: &Path,
    name: &str,
) -> Result<Option<Half>, LoadError> {
    let Some(info) = content.tensor_infos.get(name) else {
        return Err(LoadError::missing(path, name));
    };
    let kind = match info.ggml_dtype {
        GgmlDType::F16 => HalfKind::F16,
        GgmlDType::BF16 => HalfKind::Bf16,
        _ => return Ok(None),
    };
    let Ok((n, k)) = info.shape.dims2() else {
        return Ok(None);
    };
    if !Half::fits(k) {
        return Ok(None);
    }
    let start = content.tensor_data_offset.saturating_add(info.offset);
    Half::read(kind, n, k, file, start)
        .map(Some)
        .map_err(|e| LoadError::tensor(path, name, e))
}

/// Loads every weight of a llama GGUF onto `device`, packed for `kernels` where they pack.
pub fn load(
    path: &Path,
    content: &Content,
    device: &Device,
    kernels: Kernels,
) -> Result<Llama, LoadError> {
    let cfg = config(content, path, device)?;
    let kernels = if device.is_cpu() {
        kernels
    } else {
        Kernels::Candle
    };
    let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
    let mut q = |name: &str| -> Result<QTensor, LoadError> {
        content
            .tensor(&mut file, name, device)
            .map_err(|e| LoadError::tensor(path, name, e))
    };
    fn err<'a>(path: &'a Path, name: &str) -> impl Fn(candle_core::Error) -> LoadError + 'a {
        let name = name.to_string();
        move |e| LoadError::tensor(path, &name, e)
    }
    let err = |name: &str| err(path, name);
    let dense = |name: &str, t: QTensor| t.dequantize(device).map_err(err(name));

    // F16/BF16 matrices for personas' kernels, read as stored (see `half_from_file`).
    let half = |name: &str| -> Result<Option<Arc<Half>>, LoadError> {
        if !kernels.packs() {
            return Ok(None);
        }
        let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
        Ok(half_from_file(content, &mut file, path, name)?.map(Arc::new))
    };
    let tied = !content.tensor_infos.contains_key("output.weight");
    let half_table = if tied {
        half("token_embd.weight")?
    } else {
        None
    };
    let (embed, lm_head) = if let Some(h) = half_table {
        (Embedding::Half(h.clone()), Linear::half(h))
    } else {
        let table = q("token_embd.weight")?;
        let packed_table = if kernels.packs() && tied {
            Packed::from_qtensor(&table)
                .map_err(err("token_embd.weight"))?
                .map(Arc::new)
        } else {
            None
        };
        match packed_table {
            Some(p) => (Embedding::Packed(p.clone()), Linear::packed(p)),
            None => {
                let table = Arc::new(table);
                let head = if tied {
                    QMatMul::from_arc(table.clone())
                        .map(Linear::new)
                        .map_err(err("token_embd.weight"))?
                } else if let Some(h) = half("output.weight")? {
                    Linear::half(h)
                } else {
                    Linear::from_qtensor(q("output.weight")?, kernels)
                        .map_err(err("output.weight"))?
                };
                (Embedding::Quantized(table), head)
            }
        }
    };
    let norm = dense("output_norm.weight", q("output_norm.weight")?)?;
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let mut linear = |name: &str| -> Result<Linear, LoadError> {
            let name = format!("blk.{i}.{name}.weight");
            match half(&name)? {
                Some(h) => Ok(Linear::half(h)),
                None => Linear::from_qtensor(q(&name)?, kernels).map_err(err(&name)),
            }
        };
        let (wq, wk, wv, wo) = (
            linear("attn_q")?,
            linear("attn_k")?,
            linear("attn_v")?,
            linear("attn_output")?,
        );
        let (w_gate, w_up, w_down) = (linear("ffn_gate")?, linear("ffn_up")?, linear("ffn_down")?);
        let mut norm = |name: &str| {
            let name = format!("blk.{i}.{name}.weight");
            dense(&name, q(&name)?)
        };
        blocks.push(Block {
            attn_norm: norm("attn_norm")?,
            wq,
            wk,
            wv,
            wo,
            ffn_norm: norm("ffn_norm")?,
            w_gate,
            w_up,
            w_down,
        });
    }
    let mut llama = Llama::new(cfg, embed, blocks, norm, lm_head, device.clone());
    llama.fuse(kernels);
    Ok(llama)
}
