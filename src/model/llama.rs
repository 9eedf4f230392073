//! The Llama architecture, written once for every weight format and every batch shape.
//!
//! candle-transformers' own Llama keeps one KV cache per model, a fixed context cap and a
//! single sequence; personas needs many sequences at once, per-row positions and logits at
//! chosen positions only. GGUF and safetensors checkpoints both load into [`Llama`]; they differ
//! only in how the rotary embedding pairs dimensions (GGUF permutes Q/K for llama.cpp's
//! interleaved rope, Hugging Face checkpoints rotate halves), which [`Config::rope_interleaved`]
//! records.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor, D};

use super::attention;
use super::cache::Cache;
use super::int8::{self, Packed};
use super::{simd, with_cpu_f32};

/// Hyper-parameters, named as in Hugging Face's `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Training context length; a hint for users, never a cap (the cache grows on demand).
    pub max_position_embeddings: usize,
    /// Llama 3.x frequency scaling, already folded into per-pair divisors.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// Linear position scaling (`rope.scaling.type = linear`).
    pub rope_linear_factor: Option<f64>,
    /// True for GGUF (adjacent pairs), false for Hugging Face layouts (rotate halves).
    pub rope_interleaved: bool,
}

impl Config {
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Inverse frequencies per rotary pair, with Llama 3 scaling and linear scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let half = self.head_dim / 2;
        (0..half)
            .map(|i| {
                let mut f = 1.0 / self.rope_theta.powf(2.0 * i as f64 / self.head_dim as f64);
                if let Some(factors) = &self.rope_freq_factors {
                    f /= factors.get(i).copied().unwrap_or(1.0) as f64;
                }
                if let Some(linear) = self.rope_linear_factor {
                    f /= linear;
                }
                f
            })
            .collect()
    }
}

/// Llama 3 rope scaling as Hugging Face describes it in `config.json`, turned into the per-pair
/// divisors that llama.cpp stores as `rope_freqs.weight`, so both formats share one code path.
pub fn llama3_freq_factors(
    head_dim: usize,
    rope_theta: f64,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max_position: f64,
) -> Vec<f32> {
    let low_wavelen = original_max_position / low_freq_factor;
    let high_wavelen = original_max_position / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / rope_theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let scaled = if wavelen < high_wavelen {
                freq
            } else if wavelen > low_wavelen {
                freq / factor
            } else {
                let smooth = (original_max_position / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * freq / factor + smooth * freq
            };
            (freq / scaled) as f32
        })
        .collect()
}

/// Dense products of at least this many rows give each row the same result whatever the count.
const BATCH_INVARIANT_ROWS: usize = 16;

/// A projection whose weights are either quantized blocks or a dense matrix.
///
/// A quantized projection may also hold a dense f32 copy of its weights ([`Llama::densify`]):
/// candle's CPU kernels for k-quant-less formats such as Q4_1 run at about 6 GFLOP/s whatever the
/// batch, while a dense GEMM reaches 70 to 90 GFLOP/s once a few dozen rows go through together,
/// which is what batched sampling and prefill feed it. When the copy exists it is used for every
/// call, one row or many, so a sequence's numbers never depend on its batch neighbours.
///
/// On CPUs with AVX-512 VNNI, Q4_0/Q4_1/Q8_0 weights are instead packed for the int8 kernels of
/// [`super::int8`] ([`Llama::pack_int8`]), which read the quantized integers exactly and beat the
/// dense copy on every batch size while taking a quarter of its memory.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: QMatMul,
    dense: Option<Tensor>,
    packed: Option<std::sync::Arc<Packed>>,
}

impl Linear {
    pub fn new(inner: QMatMul) -> Self {
        Self {
            inner,
            dense: None,
            packed: None,
        }
    }

    /// `min_rows`: see [`Llama::set_batch_invariant`].
    pub fn forward(&self, xs: &Tensor, min_rows: usize) -> candle_core::Result<Tensor> {
        if let Some(p) = &self.packed {
            if let Some(out) = packed_forward(p, xs)? {
                return Ok(out);
            }
        }
        let Some(w) = &self.dense else {
            return self.inner.forward(xs);
        };
        #[cfg(openblas)]
        if let Some(out) = super::blas::matmul_t(xs, w, min_rows)? {
            return Ok(out);
        }
        let dims = xs.dims().to_vec();
        let k = *dims.last().unwrap_or(&0);
        let rows = xs.elem_count() / k.max(1);
        if rows >= min_rows {
            return xs.broadcast_matmul(&w.t()?);
        }
        let flat = xs.reshape((rows, k))?;
        let pad = Tensor::zeros((min_rows - rows, k), xs.dtype(), xs.device())?;
        let out = Tensor::cat(&[&flat, &pad], 0)?.matmul(&w.t()?)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("dims") = w.dim(0)?;
        out.narrow(0, 0, rows)?.reshape(out_dims)
    }

    /// Bytes a dense f32 copy of a quantized weight would take (0 when already dense or
    /// packed for the int8 kernels).
    fn dense_bytes(&self) -> usize {
        match &self.inner {
            QMatMul::QTensor(q) if self.dense.is_none() && self.packed.is_none() => {
                q.shape().elem_count() * 4
            }
            _ => 0,
        }
    }

    fn packed(&self) -> Option<&Packed> {
        self.packed.as_deref()
    }

    fn pack_int8(&mut self) -> candle_core::Result<bool> {
        if let QMatMul::QTensor(q) = &self.inner {
            if self.packed.is_none() && matches!(q.device(), Device::Cpu) {
                self.packed = Packed::from_qtensor(q)?.map(std::sync::Arc::new);
                if self.packed.is_some() {
                    self.dense = None;
                }
            }
        }
        Ok(self.packed.is_some())
    }

    fn densify(&mut self, device: &Device) -> candle_core::Result<()> {
        if let QMatMul::QTensor(q) = &self.inner {
            if self.dense.is_none() {
                self.dense = Some(q.dequantize(device)?);
            }
        }
        Ok(())
    }
}

/// `xs (.., k) x w^T` through the int8 kernel, or `None` when `xs` is not f32 on the CPU.
fn packed_forward(w: &Packed, xs: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let Some(out) = packed_gemm(w, xs)? else {
        return Ok(None);
    };
    let mut dims = xs.dims().to_vec();
    *dims.last_mut().expect("at least one dim") = w.n();
    Tensor::from_vec(out, dims, xs.device()).map(Some)
}

/// `xs (.., k)` through side-by-side weights ([`Packed::concat`]), the output cut back into the
/// parts' column counts `sizes`; `None` when `xs` is not f32 on the CPU.
fn packed_parts(
    w: &Packed,
    xs: &Tensor,
    sizes: &[usize],
) -> candle_core::Result<Option<Vec<Vec<f32>>>> {
    let Some(out) = packed_gemm(w, xs)? else {
        return Ok(None);
    };
    let n = w.n();
    let rows = out.len() / n;
    let mut parts: Vec<Vec<f32>> = sizes.iter().map(|s| Vec::with_capacity(rows * s)).collect();
    for row in out.chunks_exact(n) {
        let mut at = 0;
        for (part, &size) in parts.iter_mut().zip(sizes) {
            part.extend_from_slice(&row[at..at + size]);
            at += size;
        }
    }
    Ok(Some(parts))
}

/// The rows of `xs (.., k)` times `w`, row-major, or `None` when `xs` is not f32 on the CPU.
fn packed_gemm(w: &Packed, xs: &Tensor) -> candle_core::Result<Option<Vec<f32>>> {
    if !matches!(xs.device(), Device::Cpu) || xs.dtype() != DType::F32 {
        return Ok(None);
    }
    let xs = xs.contiguous()?;
    with_cpu_f32(&xs, |data| int8::gemm(w, data)).map(Some)
}

/// Projections of one block that read the same input, side by side for one int8 call each
/// (the parts then keep no packed copy of their own).
#[derive(Debug, Clone, Default)]
struct Fused {
    qkv: Option<Packed>,
    gate_up: Option<Packed>,
}

/// What hides cached positions from attention: an additive mask for candle's matmuls, or
/// per-row flags for the CPU kernel of [`super::attention`].
enum Mask {
    Tensor(Option<Tensor>),
    Rows(Vec<Vec<bool>>),
}

/// Token embeddings: quantized tables are looked up row by row without dequantizing the whole.
#[derive(Debug, Clone)]
pub enum Embedding {
    Quantized(std::sync::Arc<candle_core::quantized::QTensor>),
    Dense(Tensor),
}

impl Embedding {
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Quantized(q) => q.embedding(ids),
            Embedding::Dense(t) => {
                let mut shape = ids.dims().to_vec();
                shape.push(t.dim(1)?);
                t.index_select(&ids.flatten_all()?, 0)?.reshape(shape)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: Tensor,
    pub wq: Linear,
    pub wk: Linear,
    pub wv: Linear,
    pub wo: Linear,
    pub ffn_norm: Tensor,
    pub w_gate: Linear,
    pub w_up: Linear,
    pub w_down: Linear,
}

/// Where the caller wants logits: sampling needs the last position, scoring every position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsAt {
    Last,
    All,
}

pub struct Llama {
    pub cfg: Config,
    pub embed: Embedding,
    pub blocks: Vec<Block>,
    pub norm: Tensor,
    pub lm_head: Linear,
    pub device: Device,
    inv_freq: Vec<f64>,
    /// Rows below which a dense product is padded (see [`Llama::set_batch_invariant`]).
    min_rows: usize,
    /// Whether attention on the CPU may use [`attention::attend`] (see [`Llama::set_cpu_attention`]).
    cpu_attention: bool,
    /// Per block, its side-by-side int8 weights (see [`Llama::pack_int8`]).
    fused: Vec<Fused>,
}

impl Llama {
    pub fn new(
        cfg: Config,
        embed: Embedding,
        blocks: Vec<Block>,
        norm: Tensor,
        lm_head: Linear,
        device: Device,
    ) -> Self {
        let inv_freq = cfg.inv_freq();
        Self {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            device,
            inv_freq,
            min_rows: BATCH_INVARIANT_ROWS,
            cpu_attention: true,
            fused: Vec::new(),
        }
    }

    /// On (the default), attention on a CPU with AVX-512 runs personas' own kernel; off, it runs
    /// through candle's matmuls as on a GPU (so tests can check that path on the CPU too).
    pub fn set_cpu_attention(&mut self, on: bool) {
        self.cpu_attention = on;
    }

    /// On (the default), every dense product of fewer than 16 rows is padded to 16, so a
    /// sequence's numbers are the same whether it runs alone or among many: seeded studies and
    /// `ask --samples` give the same bytes whatever `--batch`. Off suits a single interactive
    /// sequence (chat), where it makes decoding about twice as fast.
    pub fn set_batch_invariant(&mut self, on: bool) {
        self.min_rows = if on { BATCH_INVARIANT_ROWS } else { 1 };
    }

    /// A cache for `batch` rows sized for `capacity` tokens; it grows past that when needed.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> candle_core::Result<Cache> {
        Cache::new(
            self.cfg.num_hidden_layers,
            batch,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
            capacity,
            &self.device,
            self.uses_cpu_attention(),
        )
    }

    /// Whether attention runs personas' CPU kernel (then forks of a cache share their prefix).
    fn uses_cpu_attention(&self) -> bool {
        self.cpu_attention
            && matches!(self.device, Device::Cpu)
            && attention::available()
            && attention::HEAD_DIMS.contains(&self.cfg.head_dim)
    }

    /// What the CLI does after loading (`--int8`, `--dense-mb`): int8 kernels for the
    /// projections they read (when `int8` and the CPU has them), then dense copies of the rest
    /// within `dense_max_bytes`. Returns (projections packed, bytes of dense copies).
    pub fn use_fast_kernels(
        &mut self,
        int8: bool,
        dense_max_bytes: usize,
    ) -> candle_core::Result<(usize, usize)> {
        let packed = if int8 { self.pack_int8()? } else { 0 };
        Ok((packed, self.densify(dense_max_bytes)?))
    }

    /// Packs every quantized projection the int8 kernels can read (see [`Linear`]) when this
    /// CPU has them; returns how many were packed. Packed projections need no dense copy.
    pub fn pack_int8(&mut self) -> candle_core::Result<usize> {
        if !int8::available() {
            return Ok(0);
        }
        let mut packed = 0;
        for l in self.linears_mut() {
            packed += l.pack_int8()? as usize;
        }
        let fuse = |parts: &mut [&mut Linear]| {
            let packed: Option<Vec<&Packed>> = parts.iter().map(|l| l.packed()).collect();
            let joint = Packed::concat(&packed?)?;
            for l in parts.iter_mut() {
                l.packed = None;
            }
            Some(joint)
        };
        self.fused = self
            .blocks
            .iter_mut()
            .map(|b| Fused {
                qkv: fuse(&mut [&mut b.wq, &mut b.wk, &mut b.wv]),
                gate_up: fuse(&mut [&mut b.w_gate, &mut b.w_up]),
            })
            .collect();
        Ok(packed)
    }

    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut linears: Vec<&mut Linear> = vec![&mut self.lm_head];
        for b in &mut self.blocks {
            linears.extend([
                &mut b.wq,
                &mut b.wk,
                &mut b.wv,
                &mut b.wo,
                &mut b.w_gate,
                &mut b.w_up,
                &mut b.w_down,
            ]);
        }
        linears
    }

    /// Keeps a dense f32 copy of every quantized projection when all of them together take at
    /// most `max_bytes`, trading memory for batched speed (see [`Linear`]). Returns the bytes
    /// added, 0 when the model is over budget or already dense.
    pub fn densify(&mut self, max_bytes: usize) -> candle_core::Result<usize> {
        let device = self.device.clone();
        let linears = self.linears_mut();
        let total: usize = linears.iter().map(|l| l.dense_bytes()).sum();
        if total == 0 || total > max_bytes {
            return Ok(0);
        }
        for l in linears {
            l.densify(&device)?;
        }
        Ok(total)
    }

    /// cos/sin tables for the given absolute positions, shaped (B, T, head_dim/2).
    fn rope_tables(
        &self,
        positions: &[u32],
        batch: usize,
        seq: usize,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &self.inv_freq {
                let angle = p as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let cos = Tensor::from_vec(cos, (batch, seq, half), &self.device)?;
        let sin = Tensor::from_vec(sin, (batch, seq, half), &self.device)?;
        Ok((cos, sin))
    }

    /// Runs `tokens` (B rows of T tokens) after what `cache` already holds, appending their keys
    /// and values. Row `b` may ignore cached positions listed in `pad` (left padding), so rows of
    /// different prompt lengths share one batch. Returns logits (B, vocab) or (B, T, vocab).
    pub fn forward(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut Cache,
        at: LogitsAt,
    ) -> candle_core::Result<Tensor> {
        let batch = tokens.len();
        let seq = tokens.first().map_or(0, |t| t.len());
        if batch == 0 || seq == 0 {
            candle_core::bail!("forward needs at least one token per row");
        }
        if tokens.iter().any(|t| t.len() != seq) {
            candle_core::bail!("every row of a batch must have the same number of new tokens");
        }
        if cache.batch() != batch {
            candle_core::bail!(
                "cache holds {} rows but the batch has {batch}",
                cache.batch()
            );
        }
        let start = cache.len();
        let mut positions = Vec::with_capacity(batch * seq);
        for row in 0..batch {
            for i in 0..seq {
                positions.push(cache.position(row, start + i) as u32);
            }
        }
        let (cos, sin) = self.rope_tables(&positions, batch, seq)?;
        let mask = if self.uses_cpu_attention() {
            let total = start + seq;
            Mask::Rows(
                (0..batch)
                    .map(|b| (0..total).map(|j| cache.hidden(b, j)).collect())
                    .collect(),
            )
        } else {
            Mask::Tensor(self.mask(cache, seq)?)
        };
        let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (batch, seq), &self.device)?;
        let mut xs = self.embed.forward(&ids)?;
        cache.reserve(start + seq)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&xs, &block.attn_norm, self.cfg.rms_norm_eps as f32)?;
            let h = self.attention(block, &h, cache, layer, start, &cos, &sin, &mask)?;
            xs = (xs + h)?;
            let h = candle_nn::ops::rms_norm(&xs, &block.ffn_norm, self.cfg.rms_norm_eps as f32)?;
            let ffn = self.cfg.intermediate_size;
            let gated = match self.fused_parts(layer, |f| f.gate_up.as_ref(), &h, [ffn, ffn])? {
                Some([gate, up]) => {
                    let mut out = vec![0f32; gate.len()];
                    simd::silu_mul(&gate, &up, &mut out);
                    let mut dims = h.dims().to_vec();
                    *dims.last_mut().expect("dims") = ffn;
                    Tensor::from_vec(out, dims, &self.device)?
                }
                None => {
                    let gate = candle_nn::ops::silu(&block.w_gate.forward(&h, self.min_rows)?)?;
                    (gate * block.w_up.forward(&h, self.min_rows)?)?
                }
            };
            xs = (xs + block.w_down.forward(&gated, self.min_rows)?)?;
        }
        cache.advance(seq);
        let xs = match at {
            LogitsAt::Last => xs.narrow(1, seq - 1, 1)?.squeeze(1)?.contiguous()?,
            LogitsAt::All => xs,
        };
        let xs = candle_nn::ops::rms_norm(&xs, &self.norm, self.cfg.rms_norm_eps as f32)?;
        self.lm_head
            .forward(&xs, self.min_rows)?
            .to_dtype(DType::F32)
    }

    /// The outputs of block `layer`'s side-by-side weights chosen by `pick` for `xs`, one per
    /// part, or `None` when the block has none (or `xs` is not on the CPU).
    fn fused_parts<const N: usize>(
        &self,
        layer: usize,
        pick: impl Fn(&Fused) -> Option<&Packed>,
        xs: &Tensor,
        sizes: [usize; N],
    ) -> candle_core::Result<Option<[Vec<f32>; N]>> {
        let Some(w) = self.fused.get(layer).and_then(pick) else {
            return Ok(None);
        };
        let parts = packed_parts(w, xs, &sizes)?.map(|parts| parts.try_into());
        match parts {
            Some(Ok(parts)) => Ok(Some(parts)),
            Some(Err(_)) => candle_core::bail!("side-by-side weights with {N} parts expected"),
            None if xs.device().is_cpu() => candle_core::bail!("int8 weights need f32 inputs"),
            None => candle_core::bail!("int8 weights run on the CPU only"),
        }
    }

    /// Additive mask of shape (B, 1, group*T, L): causal inside the new tokens, and hiding each
    /// row's gap (left padding, or filler after a shared prefix). `None` when nothing is hidden
    /// (one new token, no gaps).
    fn mask(&self, cache: &Cache, seq: usize) -> candle_core::Result<Option<Tensor>> {
        let batch = cache.batch();
        let start = cache.len();
        let total = start + seq;
        if seq == 1 && !cache.has_gaps() {
            return Ok(None);
        }
        let group = self.cfg.group_size();
        let mut data = Vec::with_capacity(batch * group * seq * total);
        let mut row = Vec::with_capacity(seq * total);
        for b in 0..batch {
            row.clear();
            for i in 0..seq {
                let at = start + i;
                for j in 0..total {
                    // A filler query still sees itself, so its (unused) output stays finite:
                    // NaN in the cache would poison later rows via 0 * NaN.
                    let hidden = j > at || (j != at && cache.hidden(b, j));
                    row.push(if hidden { f32::NEG_INFINITY } else { 0.0 });
                }
            }
            for _ in 0..group {
                data.extend_from_slice(&row);
            }
        }
        Tensor::from_vec(data, (batch, 1, group * seq, total), &self.device).map(Some)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        block: &Block,
        xs: &Tensor,
        cache: &Cache,
        layer: usize,
        start: usize,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Mask,
    ) -> candle_core::Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let (q, k, v) =
            match self.fused_parts(layer, |f| f.qkv.as_ref(), xs, [nh * hd, nkv * hd, nkv * hd])? {
                Some([q, k, v]) => (
                    Tensor::from_vec(q, (b, t, nh * hd), &self.device)?,
                    Tensor::from_vec(k, (b, t, nkv * hd), &self.device)?,
                    Tensor::from_vec(v, (b, t, nkv * hd), &self.device)?,
                ),
                None => (
                    block.wq.forward(xs, self.min_rows)?,
                    block.wk.forward(xs, self.min_rows)?,
                    block.wv.forward(xs, self.min_rows)?,
                ),
            };
        let q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let (q, k) = if cfg.rope_interleaved {
            (
                candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
            )
        } else {
            (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            )
        };

        cache.write(layer, &k, &v, start)?;
        let mask = match mask {
            Mask::Rows(hidden) => {
                let dims = attention::Dims {
                    batch: b,
                    seq: t,
                    heads: nh,
                    kv_heads: nkv,
                    head_dim: hd,
                    start,
                };
                let runs = cache.runs(layer, start + t)?;
                let q = q.contiguous()?;
                // SAFETY: the runs point into `cache`'s buffers (and the segments it holds),
                // alive and not written until this call returns.
                let out =
                    with_cpu_f32(&q, |q| unsafe { attention::attend(q, &runs, hidden, dims) })?;
                let out = Tensor::from_vec(out, (b, t, nh * hd), &self.device)?;
                return block.wo.forward(&out, self.min_rows);
            }
            Mask::Tensor(m) => m.as_ref(),
        };
        let (k_all, v_all) = cache.view(layer, start + t)?;
        // Heads sharing a KV head sit next to each other, so folding the group into the query
        // axis lets one matmul serve the whole group without repeating K/V per head.
        let q = q.reshape((b, nkv, cfg.group_size() * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k_all.t()?)? * scale)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&v_all)?;
        let out = out
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        block.wo.forward(&out, self.min_rows)
    }

    /// Log-softmax over the vocabulary of a logits row, in f32 on the host.
    pub fn log_softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::log_softmax(logits, D::Minus1)
    }
}
