//! The Llama architecture, written once for every weight format and every batch shape.
//!
//! candle-transformers' own Llama keeps one KV cache per model, a fixed context cap and a
//! single sequence; personas needs many sequences at once, per-row positions and logits at
//! chosen positions only. GGUF and safetensors checkpoints both load into [`Llama`]; they differ
//! only in how the rotary embedding pairs dimensions (GGUF permutes Q/K for llama.cpp's
//! interleaved rope, Hugging Face checkpoints rotate halves), which [`Config::rope_interleaved`]
//! records.

mod attention;
pub mod cache;
mod config;
pub mod linear;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, D};

use super::cpu::with_cpu_f32;
use super::cpu::{self, simd, Kernels, Packed};
pub use cache::Cache;
pub use config::{llama3_freq_factors, Config};
use linear::{packed_parts, BATCH_INVARIANT_ROWS};
pub use linear::{Embedding, Linear};

/// Packed projections of one block that read the same input, computed in one kernel call
/// per group (the input quantized once, all their panels shared out over the threads).
#[derive(Debug, Clone, Default)]
struct Fused {
    qkv: Option<[Arc<Packed>; 3]>,
    gate_up: Option<[Arc<Packed>; 2]>,
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
    /// Whether attention on the CPU may use [`cpu::attention::attend`] (see [`Llama::set_cpu_attention`]).
    cpu_attention: bool,
    /// Per block, its side-by-side packed weights (see [`Llama::fuse`]).
    fused: Vec<Fused>,
    /// What runs packed projections (see [`Llama::kernels`]).
    kernels: Kernels,
    /// What the hidden states, the KV cache and candle's products are in (see [`Llama::dtype`]).
    dtype: DType,
    /// Token positions run through the layers (filler included) and rows run through the head,
    /// since loading ([`Llama::multiply_adds_done`]).
    tokens_run: AtomicU64,
    head_rows_run: AtomicU64,
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
        let dtype = norm.dtype();
        Self {
            cfg,
            embed,
            blocks,
            norm,
            lm_head,
            device,
            inv_freq,
            min_rows: BATCH_INVARIANT_ROWS,
            tokens_run: AtomicU64::new(0),
            head_rows_run: AtomicU64::new(0),
            cpu_attention: true,
            fused: Vec::new(),
            kernels: Kernels::Candle,
            dtype,
        }
    }

    /// The dtype the network computes in, that of its norms as loaded: f32 on the CPU (and for
    /// GGUF everywhere), bf16 or f16 for such checkpoints on a GPU. Attention scores and their
    /// softmax are f32 whatever it is, and logits come out in f32.
    pub fn dtype(&self) -> DType {
        self.dtype
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
            self.dtype,
            &self.device,
            self.uses_cpu_attention(),
        )
    }

    /// Whether attention runs personas' CPU kernel (then forks of a cache share their prefix).
    fn uses_cpu_attention(&self) -> bool {
        self.cpu_attention
            && matches!(self.device, Device::Cpu)
            && self.dtype == DType::F32
            && cpu::attention::HEAD_DIMS.contains(&self.cfg.head_dim)
    }

    /// The kernels that run the packed projections, as loaded (`Kernels::Candle` when nothing
    /// is packed).
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Runs the packed projections through other kernels of the same layout (the tests run
    /// every path this CPU has on one loaded model). Weights loaded for candle stay candle's.
    pub fn set_kernels(&mut self, kernels: Kernels) {
        if self.kernels.packs() && kernels.packs() && kernels.available() {
            self.kernels = kernels;
        }
    }

    /// Projections run by personas' own kernels (packed blocks or half precision as stored).
    pub fn packed_count(&self) -> usize {
        self.linears()
            .iter()
            .filter(|l| l.as_packed().is_some() || l.as_half().is_some())
            .count()
    }

    /// Multiply-adds of the projections for one token: every layer's, and the output head's
    /// when `head` (a prefill computes logits for its last token only).
    pub fn multiply_adds_per_token(&self, head: bool) -> u64 {
        let c = &self.cfg;
        let (h, hd) = (c.hidden_size as u64, c.head_dim as u64);
        let attn = h * hd * (2 * c.num_attention_heads as u64 + 2 * c.num_key_value_heads as u64);
        let ffn = 3 * h * c.intermediate_size as u64;
        let layers = c.num_hidden_layers as u64 * (attn + ffn);
        layers + if head { c.vocab_size as u64 * h } else { 0 }
    }

    /// Whether the layers' projections run personas' half-precision kernels (bf16/f16 weights
    /// multiplied in f32) rather than its byte products.
    pub fn packed_half(&self) -> bool {
        self.blocks
            .first()
            .is_some_and(|b| b.wq.as_half().is_some())
    }

    /// Multiply-adds of the projections computed since loading: every forward pass's tokens
    /// through the layers (filler included) and its logit rows through the head. A run's work,
    /// to set against the machine's peak.
    pub fn multiply_adds_done(&self) -> u64 {
        let layers = self.multiply_adds_per_token(false);
        let head = self.multiply_adds_per_token(true) - layers;
        self.tokens_run.load(Ordering::Relaxed) * layers
            + self.head_rows_run.load(Ordering::Relaxed) * head
    }

    /// Bytes of the projections personas' kernels read for one token (every layer's and the
    /// head's, as held), or `None` when candle runs some of them.
    pub fn projection_bytes(&self) -> Option<usize> {
        let mut total = 0;
        for l in self.linears() {
            total += match (l.as_packed(), l.as_half()) {
                (Some(p), _) => p.bytes(),
                (_, Some(h)) => h.bytes(),
                _ => return None,
            };
        }
        Some(total)
    }

    /// Bytes of the weights personas' kernels hold (a table shared by the embedding and the
    /// head counted once).
    pub fn packed_bytes(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let mut held = |at: usize, bytes: usize| if seen.insert(at) { bytes } else { 0 };
        let mut total = 0;
        for l in self.linears() {
            if let Some(p) = l.as_packed() {
                total += held(Arc::as_ptr(p) as usize, p.bytes());
            }
            if let Some(h) = l.as_half() {
                total += held(Arc::as_ptr(h) as usize, h.bytes());
            }
        }
        total += match &self.embed {
            Embedding::Packed(p) => held(Arc::as_ptr(p) as usize, p.bytes()),
            Embedding::Half(h) => held(Arc::as_ptr(h) as usize, h.bytes()),
            _ => 0,
        };
        total
    }

    /// Records that the projections were packed for `kernels` at load, and groups the packed
    /// projections that read the same input (Q, K, V; gate, up) so each group is one kernel
    /// call that quantizes its input once.
    pub fn fuse(&mut self, kernels: Kernels) {
        self.kernels = kernels;
        if !kernels.packs() {
            return;
        }
        fn group<const N: usize>(parts: [&Linear; N]) -> Option<[Arc<Packed>; N]> {
            let packed: Vec<Arc<Packed>> = parts
                .iter()
                .map(|l| l.as_packed().cloned())
                .collect::<Option<_>>()?;
            packed.try_into().ok()
        }
        self.fused = self
            .blocks
            .iter()
            .map(|b| Fused {
                qkv: group([&b.wq, &b.wk, &b.wv]),
                gate_up: group([&b.w_gate, &b.w_up]),
            })
            .collect();
    }

    fn linears(&self) -> Vec<&Linear> {
        let mut linears: Vec<&Linear> = vec![&self.lm_head];
        for b in &self.blocks {
            linears.extend([&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down]);
        }
        linears
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

    /// Runs `tokens` (B rows of T tokens) after what `cache` already holds, appending their keys
    /// and values. Row `b` may ignore cached positions listed in `pad` (left padding), so rows of
    /// different prompt lengths share one batch. Returns logits (B, vocab) or (B, T, vocab).
    pub fn forward(
        &self,
        tokens: &[Vec<u32>],
        cache: &mut Cache,
        at: LogitsAt,
    ) -> candle_core::Result<Tensor> {
        if !self.device.is_cpu() || rayon::current_thread_index().is_some() {
            return self.forward_here(tokens, cache, at);
        }
        // On a thread of rayon's pool, the pass hands each product's second half to the other
        // threads, which are still looking for work between the products of a step; called
        // from outside, every one of a step's ~100 products went to the pool and back, and
        // the caller slept and woke for each.
        rayon::scope(|_| self.forward_here(tokens, cache, at))
    }

    fn forward_here(
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
        let mask = self.hiding(cache, seq)?;
        let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (batch, seq), &self.device)?;
        let mut xs = self.embed.forward(&ids)?;
        cache.reserve(start + seq)?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&xs, &block.attn_norm, self.cfg.rms_norm_eps as f32)?;
            let h = self.attention(block, &h, cache, layer, start, &cos, &sin, &mask)?;
            xs = residual(&xs, &h)?;
            let h = candle_nn::ops::rms_norm(&xs, &block.ffn_norm, self.cfg.rms_norm_eps as f32)?;
            let ffn = self.cfg.intermediate_size;
            let gated = match self.fused_parts(layer, |f| f.gate_up.as_ref(), &h)? {
                Some([mut gate, up]) => {
                    simd::silu_mul(&mut gate, &up, self.avx512_allowed());
                    let out = gate;
                    let mut dims = h.dims().to_vec();
                    *dims.last_mut().expect("dims") = ffn;
                    Tensor::from_vec(out, dims, &self.device)?
                }
                None => {
                    let gate = candle_nn::ops::silu(&block.w_gate.forward(&h, self.run())?)?;
                    (gate * block.w_up.forward(&h, self.run())?)?
                }
            };
            xs = residual(&xs, &block.w_down.forward(&gated, self.run())?)?;
        }
        cache.advance(seq);
        self.tokens_run
            .fetch_add((batch * seq) as u64, Ordering::Relaxed);
        let head_rows = match at {
            LogitsAt::Last => batch,
            LogitsAt::All => batch * seq,
        };
        self.head_rows_run
            .fetch_add(head_rows as u64, Ordering::Relaxed);
        let xs = match at {
            LogitsAt::Last => xs.narrow(1, seq - 1, 1)?.squeeze(1)?.contiguous()?,
            LogitsAt::All => xs,
        };
        let xs = candle_nn::ops::rms_norm(&xs, &self.norm, self.cfg.rms_norm_eps as f32)?;
        self.lm_head.forward(&xs, self.run())?.to_dtype(DType::F32)
    }

    /// Whether the helpers around the projections (attention, SwiGLU) may use AVX-512: not when
    /// the projections were asked to run without it, so a forced path is the whole path an
    /// older CPU runs.
    fn avx512_allowed(&self) -> bool {
        !matches!(self.kernels, Kernels::Portable | Kernels::Avx2)
    }

    fn run(&self) -> linear::Run {
        linear::Run {
            min_rows: self.min_rows,
            kernels: self.kernels,
        }
    }

    /// The outputs of block `layer`'s group of packed weights chosen by `pick` for `xs`, one
    /// per part, or `None` when the block has none.
    fn fused_parts<const N: usize>(
        &self,
        layer: usize,
        pick: impl Fn(&Fused) -> Option<&[Arc<Packed>; N]>,
        xs: &Tensor,
    ) -> candle_core::Result<Option<[Vec<f32>; N]>> {
        let Some(parts) = self.fused.get(layer).and_then(pick) else {
            return Ok(None);
        };
        packed_parts(parts, xs, self.kernels).map(Some)
    }

    /// Log-softmax over the vocabulary of a logits row, in f32 on the host.
    pub fn log_softmax(logits: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::log_softmax(logits, D::Minus1)
    }
}

/// `xs + h`, the residual stream. On the CPU a plain loop (the same float additions as
/// candle's): candle's own add of large tensors goes through its barrier pool, whose workers
/// then spin for a while and take a core from the kernels' threads.
fn residual(xs: &Tensor, h: &Tensor) -> candle_core::Result<Tensor> {
    if !(xs.device().is_cpu() && xs.dtype() == DType::F32 && h.dtype() == DType::F32)
        || xs.dims() != h.dims()
    {
        return xs + h;
    }
    let (xs_c, h_c) = (xs.contiguous()?, h.contiguous()?);
    let sum = with_cpu_f32(&xs_c, |a| {
        with_cpu_f32(&h_c, |b| {
            a.iter().zip(b).map(|(a, b)| a + b).collect::<Vec<f32>>()
        })
    })??;
    Tensor::from_vec(sum, xs.dims(), xs.device())
}
