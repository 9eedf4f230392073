//! Key/value cache for a batch of rows.
//!
//! Keys and values live in buffers allocated ahead and written in place, so a decode step costs
//! no concatenation of the whole history; when a buffer fills up it doubles, which keeps the
//! context free of any fixed cap. Each row may carry gaps of its own: positions that attention
//! ignores and rotary positions skip. Left padding is a gap at the start (prompts of different
//! lengths in one batch); a gap after a shared prefix lets rows whose suffixes differ in length
//! start from one computed prefix and still end together.

use candle_core::{DType, Device, Tensor};

pub struct LayerCache {
    k: Tensor,
    v: Tensor,
}

impl LayerCache {
    fn alloc(
        batch: usize,
        heads: usize,
        head_dim: usize,
        cap: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            k: Tensor::zeros((batch, heads, cap, head_dim), DType::F32, device)?,
            v: Tensor::zeros((batch, heads, cap, head_dim), DType::F32, device)?,
        })
    }

    fn capacity(&self) -> usize {
        self.k.dims()[2]
    }

    fn grow(&mut self, len: usize, cap: usize) -> candle_core::Result<()> {
        let (b, h, _, d) = self.k.dims4()?;
        let bigger = Self::alloc(b, h, d, cap, self.k.device())?;
        if len > 0 {
            bigger
                .k
                .slice_set(&self.k.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            bigger
                .v
                .slice_set(&self.v.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
        }
        *self = bigger;
        Ok(())
    }

    /// Stores keys and values (B, heads, T, head_dim) at positions `start..start+T`.
    pub fn write(&mut self, k: &Tensor, v: &Tensor, start: usize) -> candle_core::Result<()> {
        self.k.slice_set(k, 2, start)?;
        self.v.slice_set(v, 2, start)
    }

    /// The whole key and value buffers, (batch, heads, capacity, head_dim).
    pub fn buffers(&self) -> (&Tensor, &Tensor) {
        (&self.k, &self.v)
    }

    /// The first `len` positions of keys and values, as views without copies.
    pub fn view(&self, len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((self.k.narrow(2, 0, len)?, self.v.narrow(2, 0, len)?))
    }
}

pub struct Cache {
    layers: Vec<LayerCache>,
    batch: usize,
    len: usize,
    /// Per row: (first position, length) of each run of positions to ignore, in order.
    gaps: Vec<Vec<(usize, usize)>>,
}

impl Cache {
    pub fn new(
        n_layers: usize,
        batch: usize,
        heads: usize,
        head_dim: usize,
        capacity: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let capacity = capacity.max(16);
        let layers = (0..n_layers)
            .map(|_| LayerCache::alloc(batch, heads, head_dim, capacity, device))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            layers,
            batch,
            len: 0,
            gaps: vec![Vec::new(); batch],
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

    pub(crate) fn reserve(&mut self, total: usize) -> candle_core::Result<()> {
        let cap = self.layers.first().map_or(total, |l| l.capacity());
        if total > cap {
            let new_cap = total.max(cap * 2);
            for layer in &mut self.layers {
                layer.grow(self.len, new_cap)?;
            }
        }
        Ok(())
    }

    pub(crate) fn layers_mut(&mut self) -> impl Iterator<Item = &mut LayerCache> {
        self.layers.iter_mut()
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// Forgets the last positions (used to rewind after scoring continuations).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A cache of `n` rows each holding a copy of this single-row cache: how N samples of one
    /// prompt start after the prompt was computed once.
    pub fn repeat_rows(&self, n: usize, extra: usize) -> candle_core::Result<Self> {
        if self.batch != 1 {
            candle_core::bail!("only a single-row cache can be repeated");
        }
        let cap = (self.len + extra).max(16);
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (_, h, _, d) = layer.k.dims4()?;
            let fresh = LayerCache::alloc(n, h, d, cap, layer.k.device())?;
            if self.len > 0 {
                let (k, v) = layer.view(self.len)?;
                let k = k.repeat((n, 1, 1, 1))?.contiguous()?;
                let v = v.repeat((n, 1, 1, 1))?.contiguous()?;
                fresh.k.slice_set(&k, 2, 0)?;
                fresh.v.slice_set(&v, 2, 0)?;
            }
            layers.push(fresh);
        }
        Ok(Self {
            layers,
            batch: n,
            len: self.len,
            gaps: vec![self.gaps[0].clone(); n],
        })
    }

    /// Keeps only the listed rows (finished samples leave the batch so they cost nothing more).
    pub fn retain_rows(&mut self, keep: &[usize]) -> candle_core::Result<()> {
        if keep.len() == self.batch && keep.iter().enumerate().all(|(i, &k)| i == k) {
            return Ok(());
        }
        *self = self.rows(keep)?;
        Ok(())
    }

    /// A new cache made of the listed rows of this one, in that order (copies; this cache is
    /// unchanged). A row listed twice is copied twice, so each prompt of a batch can fan out
    /// into its samples.
    pub fn rows(&self, rows: &[usize]) -> candle_core::Result<Self> {
        let mut layers = Vec::with_capacity(self.layers.len());
        if let Some(first) = self.layers.first() {
            let idx: Vec<u32> = rows.iter().map(|&i| i as u32).collect();
            let idx = Tensor::from_vec(idx, rows.len(), first.k.device())?;
            for layer in &self.layers {
                layers.push(LayerCache {
                    k: layer.k.index_select(&idx, 0)?,
                    v: layer.v.index_select(&idx, 0)?,
                });
            }
        }
        Ok(Self {
            layers,
            batch: rows.len(),
            len: self.len,
            gaps: rows.iter().map(|&i| self.gaps[i].clone()).collect(),
        })
    }
}
