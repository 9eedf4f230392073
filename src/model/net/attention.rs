//! Attention of one block: the projections to queries, keys and values, the rotary embedding,
//! the cache, and either the CPU kernel of [`crate::model::cpu::attention`] or candle's matmuls
//! behind an additive mask.

use candle_core::{DType, Tensor};

use super::{Block, Cache, Llama};
use crate::model::cpu::attention;
use crate::model::cpu::with_cpu_f32;

/// What hides cached positions from attention: an additive mask for candle's matmuls, or
/// per-row flags for the CPU kernel of [`attention`].
pub(super) enum Mask {
    Tensor(Option<Tensor>),
    Rows(Vec<Vec<bool>>),
}

impl Llama {
    /// cos/sin tables for the given absolute positions, shaped (B, T, head_dim/2).
    pub(super) fn rope_tables(
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
        let cos = Tensor::from_vec(cos, (batch, seq, half), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, (batch, seq, half), &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// What hides cached positions from the `seq` new tokens of every row of `cache`: per-row
    /// flags for the CPU kernel, else [`Llama::mask`].
    pub(super) fn hiding(&self, cache: &Cache, seq: usize) -> candle_core::Result<Mask> {
        if !self.uses_cpu_attention() {
            return Ok(Mask::Tensor(self.mask(cache, seq)?));
        }
        let total = cache.len() + seq;
        Ok(Mask::Rows(
            (0..cache.batch())
                .map(|b| (0..total).map(|j| cache.hidden(b, j)).collect())
                .collect(),
        ))
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
    pub(super) fn attention(
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
        let (q, k, v) = match self.fused_parts(layer, |f| f.qkv.as_ref(), xs)? {
            Some([q, k, v]) => (
                Tensor::from_vec(q, (b, t, nh * hd), &self.device)?,
                Tensor::from_vec(k, (b, t, nkv * hd), &self.device)?,
                Tensor::from_vec(v, (b, t, nkv * hd), &self.device)?,
            ),
            None => (
                block.wq.forward(xs, self.run())?,
                block.wk.forward(xs, self.run())?,
                block.wv.forward(xs, self.run())?,
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
                let simd = self.avx512_allowed() && attention::simd_available();
                let out = with_cpu_f32(&q, |q| unsafe {
                    attention::attend(q, &runs, hidden, dims, simd)
                })?;
                let out = Tensor::from_vec(out, (b, t, nh * hd), &self.device)?;
                return block.wo.forward(&out, self.run());
            }
            Mask::Tensor(m) => m.as_ref(),
        };
        let (k_all, v_all) = cache.view(layer, start + t)?;
        // Heads sharing a KV head sit next to each other, so folding the group into the query
        // axis lets one matmul serve the whole group without repeating K/V per head.
        let q = q.reshape((b, nkv, cfg.group_size() * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k_all.t()?)?.to_dtype(DType::F32)? * scale)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
        let out = probs.matmul(&v_all)?;
        let out = out
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        block.wo.forward(&out, self.run())
    }
}
