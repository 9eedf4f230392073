//! Key/value cache for a batch of rows.
//!
//! Keys and values live in buffers allocated ahead and written in place, so a decode step costs
//! no concatenation of the whole history; when a buffer fills up it doubles, which keeps the
//! context free of any fixed cap. Each row may carry gaps of its own: positions that attention
//! ignores and rotary positions skip. Left padding is a gap at the start (prompts of different
//! lengths in one batch); a gap after a shared prefix lets rows whose suffixes differ in length
//! start from one computed prefix and still end together.
//!
//! Forks share their prefix. Where the CPU attention kernel runs (see
//! [`crate::model::cpu::attention`]), [`Cache::rows`] and [`Cache::repeat_rows`] copy nothing: every new
//! row points at the [`Segment`]s it continues from (the system prompt once, a persona once for
//! all its questions, ...) and only what it computes after the fork goes into its own buffer.
//! Elsewhere (candle's attention, as on a GPU, which wants one contiguous tensor) forks copy.

use std::sync::Arc;

use candle_core::{DType, Device, Storage, Tensor};

pub use crate::model::cpu::attention::Run;

#[derive(Clone)]
struct LayerCache {
    k: Tensor,
    v: Tensor,
}

impl LayerCache {
    fn alloc(
        batch: usize,
        heads: usize,
        head_dim: usize,
        cap: usize,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            k: Tensor::zeros((batch, heads, cap, head_dim), dtype, device)?,
            v: Tensor::zeros((batch, heads, cap, head_dim), dtype, device)?,
        })
    }

    fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    /// A copy with room for `cap` positions holding the first `keep`.
    fn copy_to(&self, cap: usize, keep: usize) -> candle_core::Result<Self> {
        let (b, h, _, d) = self.k.dims4()?;
        let bigger = Self::alloc(b, h, d, cap, self.k.dtype(), self.k.device())?;
        if keep > 0 {
            bigger
                .k
                .slice_set(&self.k.narrow(2, 0, keep)?.contiguous()?, 2, 0)?;
            bigger
                .v
                .slice_set(&self.v.narrow(2, 0, keep)?.contiguous()?, 2, 0)?;
        }
        Ok(bigger)
    }

    /// The listed rows (copies).
    fn select(&self, idx: &Tensor) -> candle_core::Result<Self> {
        Ok(Self {
            k: self.k.index_select(idx, 0)?,
            v: self.v.index_select(idx, 0)?,
        })
    }

    fn pointers(&self) -> candle_core::Result<Pointers> {
        let (_, heads, cap, head_dim) = self.k.dims4()?;
        let ptr = |t: &Tensor| -> candle_core::Result<*const f32> {
            let (storage, layout) = t.storage_and_layout();
            let Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("the attention kernel reads caches on the CPU only");
            };
            // The buffers are contiguous tensors owned by the cache; the pointer outlives the
            // guard, which is sound while the cache is alive and nobody writes it (attention
            // only reads, after this layer's keys and values are written).
            Ok(cpu.as_slice::<f32>()?[layout.start_offset()..].as_ptr())
        };
        Ok(Pointers {
            k: ptr(&self.k)?,
            v: ptr(&self.v)?,
            heads,
            head_stride: cap * head_dim,
        })
    }

    /// Stores keys and values (B, heads, T, head_dim) at positions `start..start+T`.
    fn write(&self, k: &Tensor, v: &Tensor, start: usize) -> candle_core::Result<()> {
        self.k.slice_set(k, 2, start)?;
        self.v.slice_set(v, 2, start)
    }

    /// The first `len` positions of keys and values, as views without copies.
    fn view(&self, len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((self.k.narrow(2, 0, len)?, self.v.narrow(2, 0, len)?))
    }
}

/// Positions computed once and read by every row forked from them: `len` positions of `row`
/// in a parent's buffers, from buffer offset 0.
#[derive(Clone)]
struct Segment {
    layers: Arc<Vec<LayerCache>>,
    row: usize,
    len: usize,
}

pub struct Cache {
    /// This cache's own buffers: position `base + i` of a row at offset `i`.
    layers: Arc<Vec<LayerCache>>,
    /// Positions every row reads from shared segments (the same count for every row).
    base: usize,
    /// Per row: the segments covering positions `0..base`, in order (empty when `base` is 0).
    shared: Vec<Vec<Segment>>,
    batch: usize,
    len: usize,
    /// Per row: (first position, length) of each run of positions to ignore, in order.
    gaps: Vec<Vec<(usize, usize)>>,
    /// Whether forks share their prefix (see the module documentation).
    share: bool,
}

impl Cache {
    /// Keys and values in `dtype` (f32 on the CPU; the weights' bf16 or f16 on a GPU).
    /// `share`: forks point at their prefix instead of copying it; only for callers that read
    /// the cache through [`Cache::runs`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n_layers: usize,
        batch: usize,
        heads: usize,
        head_dim: usize,
        capacity: usize,
        dtype: DType,
        device: &Device,
        share: bool,
    ) -> candle_core::Result<Self> {
        let capacity = capacity.max(16);
        let layers = (0..n_layers)
            .map(|_| LayerCache::alloc(batch, heads, head_dim, capacity, dtype, device))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            layers: Arc::new(layers),
            base: 0,
            shared: vec![Vec::new(); batch],
            batch,
            len: 0,
            gaps: vec![Vec::new(); batch],
            share,
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Positions filled so far (padding included).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions read from shared segments rather than this cache's own buffers.
    pub fn shared_len(&self) -> usize {
        self.base
    }

    /// Declares left padding per row; only valid on an empty cache, before the first forward.
    pub fn set_pads(&mut self, pads: Vec<usize>) -> candle_core::Result<()> {
        if pads.len() != self.batch || self.len != 0 {
            candle_core::bail!("padding is set once per row, before the first forward");
        }
        self.gaps = pads
            .into_iter()
            .map(|p| if p > 0 { vec![(0, p)] } else { Vec::new() })
            .collect();
        Ok(())
    }

    /// Declares that the next `lens[row]` positions of each row, from the current length on,
    /// are filler: the caller feeds placeholder tokens there, which nothing attends to.
    pub fn open_gaps(&mut self, lens: &[usize]) -> candle_core::Result<()> {
        if lens.len() != self.batch {
            candle_core::bail!("one gap length per row");
        }
        for (gaps, &len) in self.gaps.iter_mut().zip(lens) {
            if len > 0 {
                gaps.push((self.len, len));
            }
        }
        Ok(())
    }

    /// Whether any row has a gap (then attention needs a mask even for one new token).
    pub fn has_gaps(&self) -> bool {
        self.gaps.iter().any(|g| !g.is_empty())
    }

    /// Whether position `j` of `row` is filler.
    pub fn hidden(&self, row: usize, j: usize) -> bool {
        self.gaps[row]
            .iter()
            .any(|&(start, len)| j >= start && j < start + len)
    }

    /// Rotary position of cache position `j` in `row`: gaps do not count.
    pub fn position(&self, row: usize, j: usize) -> usize {
        let mut skipped = 0;
        for &(start, len) in &self.gaps[row] {
            if j >= start + len {
                skipped += len;
            } else if j >= start {
                return start - skipped;
            }
        }
        j - skipped
    }

    fn own_capacity(&self) -> usize {
        self.layers.first().map_or(0, |l| l.capacity())
    }

    /// Makes room for `total` positions in this cache's own buffers.
    pub(crate) fn reserve(&mut self, total: usize) -> candle_core::Result<()> {
        let need = total.saturating_sub(self.base);
        let cap = self.own_capacity();
        if need > cap {
            self.reallocate(need.max(cap * 2))?;
        }
        Ok(())
    }

    /// Fresh own buffers of `cap` positions holding what the old ones held.
    fn reallocate(&mut self, cap: usize) -> candle_core::Result<()> {
        let keep = self.len - self.base;
        let layers = self
            .layers
            .iter()
            .map(|l| l.copy_to(cap, keep))
            .collect::<candle_core::Result<_>>()?;
        self.layers = Arc::new(layers);
        Ok(())
    }

    /// Stores keys and values (B, heads, T, head_dim) of layer `layer` at positions
    /// `start..start+T` (after [`Cache::reserve`]).
    pub(crate) fn write(
        &self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        start: usize,
    ) -> candle_core::Result<()> {
        self.layers[layer].write(k, v, start - self.base)
    }

    /// Keys and values of the first `len` positions of layer `layer`, (B, heads, len, head_dim),
    /// for candle's attention: views without copies unless rows share segments, which are then
    /// put together (forks made by callers of [`Cache::runs`] only).
    pub(crate) fn view(&self, layer: usize, len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let own = &self.layers[layer];
        if self.base == 0 {
            return own.view(len);
        }
        let mut ks = Vec::with_capacity(self.batch);
        let mut vs = Vec::with_capacity(self.batch);
        for (row, segments) in self.shared.iter().enumerate() {
            let mut k_parts = Vec::new();
            let mut v_parts = Vec::new();
            for seg in segments {
                let l = &seg.layers[layer];
                k_parts.push(l.k.narrow(0, seg.row, 1)?.narrow(2, 0, seg.len)?);
                v_parts.push(l.v.narrow(0, seg.row, 1)?.narrow(2, 0, seg.len)?);
            }
            k_parts.push(own.k.narrow(0, row, 1)?.narrow(2, 0, len - self.base)?);
            v_parts.push(own.v.narrow(0, row, 1)?.narrow(2, 0, len - self.base)?);
            ks.push(Tensor::cat(&k_parts, 2)?);
            vs.push(Tensor::cat(&v_parts, 2)?);
        }
        Ok((Tensor::cat(&ks, 0)?, Tensor::cat(&vs, 0)?))
    }

    /// Per row, where layer `layer`'s first `len` positions live, for the CPU attention kernel.
    /// The pointers stay valid while this cache is alive and not written. A parent writes only
    /// past what its forks read (or moves to new buffers first), but the writes go through the
    /// whole buffer: a parent and its forks are not run on different threads at the same time
    /// (nothing in personas does).
    pub(crate) fn runs(&self, layer: usize, len: usize) -> candle_core::Result<Vec<Vec<Run>>> {
        let own = self.layers[layer].pointers()?;
        let mut out = Vec::with_capacity(self.batch);
        for (row, segments) in self.shared.iter().enumerate() {
            let mut runs = Vec::with_capacity(segments.len() + 1);
            for seg in segments {
                runs.push(seg.layers[layer].pointers()?.run(seg.row, seg.len));
            }
            runs.push(own.run(row, len - self.base));
            out.push(runs);
        }
        Ok(out)
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Forgets the positions from `len` on (used to rewind after scoring continuations, and
    /// by chat to keep the part of a conversation that did not change).
    pub fn truncate(&mut self, len: usize) -> candle_core::Result<()> {
        if len >= self.len {
            return Ok(());
        }
        if len < self.base {
            // Rewinding into the shared prefix: keep the segments up to `len`, own buffers empty.
            for segments in &mut self.shared {
                let mut left = len;
                segments.retain_mut(|seg| {
                    let keep = left > 0;
                    seg.len = seg.len.min(left);
                    left -= seg.len;
                    keep
                });
            }
            self.base = len;
        }
        self.len = len;
        if Arc::strong_count(&self.layers) > 1 {
            // Forks read these buffers up to the old length: write new positions elsewhere.
            self.reallocate(self.own_capacity())?;
        }
        Ok(())
    }

    /// A cache of `n` rows each continuing this single-row cache: how N samples of one prompt
    /// start after the prompt was computed once. `extra`: room for the positions to come.
    pub fn repeat_rows(&self, n: usize, extra: usize) -> candle_core::Result<Self> {
        if self.batch != 1 {
            candle_core::bail!("only a single-row cache can be repeated");
        }
        self.fork(&vec![0; n], extra)
    }

    /// Keeps only the listed rows (finished samples leave the batch so they cost nothing more).
    pub fn retain_rows(&mut self, keep: &[usize]) -> candle_core::Result<()> {
        if keep.len() == self.batch && keep.iter().enumerate().all(|(i, &k)| i == k) {
            return Ok(());
        }
        // Only the rows' own positions are copied; their shared segments stay shared.
        let idx = Tensor::from_vec(
            keep.iter().map(|&i| i as u32).collect::<Vec<u32>>(),
            keep.len(),
            self.layers[0].k.device(),
        )?;
        let layers = self
            .layers
            .iter()
            .map(|l| l.select(&idx))
            .collect::<candle_core::Result<_>>()?;
        self.layers = Arc::new(layers);
        self.shared = keep.iter().map(|&i| self.shared[i].clone()).collect();
        self.gaps = keep.iter().map(|&i| self.gaps[i].clone()).collect();
        self.batch = keep.len();
        Ok(())
    }

    /// A new cache made of the listed rows of this one, in that order; a row listed twice
    /// appears twice, so each prompt of a batch can fan out into its samples. This cache is
    /// unchanged.
    pub fn rows(&self, rows: &[usize]) -> candle_core::Result<Self> {
        self.fork(rows, 16)
    }

    fn fork(&self, rows: &[usize], extra: usize) -> candle_core::Result<Self> {
        let first = &self.layers[0];
        let (_, heads, _, head_dim) = first.k.dims4()?;
        let (dtype, device) = (first.k.dtype(), first.k.device().clone());
        if !self.share {
            let idx: Vec<u32> = rows.iter().map(|&i| i as u32).collect();
            let idx = Tensor::from_vec(idx, rows.len(), &device)?;
            let cap = (self.len + extra).max(16);
            let layers = self
                .layers
                .iter()
                .map(|l| l.select(&idx)?.copy_to(cap, self.len))
                .collect::<candle_core::Result<_>>()?;
            return Ok(Self {
                layers: Arc::new(layers),
                base: 0,
                shared: vec![Vec::new(); rows.len()],
                batch: rows.len(),
                len: self.len,
                gaps: rows.iter().map(|&i| self.gaps[i].clone()).collect(),
                share: false,
            });
        }
        let own_len = self.len - self.base;
        let shared = rows
            .iter()
            .map(|&r| {
                let mut segments = self.shared[r].clone();
                if own_len > 0 {
                    segments.push(Segment {
                        layers: self.layers.clone(),
                        row: r,
                        len: own_len,
                    });
                }
                segments
            })
            .collect();
        let layers = (0..self.layers.len())
            .map(|_| LayerCache::alloc(rows.len(), heads, head_dim, extra.max(16), dtype, &device))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            layers: Arc::new(layers),
            base: self.len,
            shared,
            batch: rows.len(),
            len: self.len,
            gaps: rows.iter().map(|&i| self.gaps[i].clone()).collect(),
            share: true,
        })
    }
}

/// Raw addresses of one layer's buffers.
struct Pointers {
    k: *const f32,
    v: *const f32,
    heads: usize,
    head_stride: usize,
}

impl Pointers {
    fn run(&self, row: usize, len: usize) -> Run {
        let at = row * self.heads * self.head_stride;
        // SAFETY: `row` is a row of the buffer, so the offset stays inside it.
        unsafe {
            Run {
                k: self.k.add(at),
                v: self.v.add(at),
                head_stride: self.head_stride,
                len,
            }
        }
    }
}
