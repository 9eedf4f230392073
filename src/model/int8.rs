//! Quantized matrix products on the CPU with int8 dot-product instructions (AVX-512 VNNI).
//!
//! GGUF's simple block formats (Q4_0, Q4_1, Q8_0) store every weight as a small integer with a
//! scale and an offset per block of 32: `w = d * u + m`. Those integers are kept as unsigned
//! bytes, packed once at load time into panels of 32 output columns laid out for `vpdpbusd`
//! (64 byte-products per instruction, four times the multiply rate of f32 FMA on the AVX-512
//! machines this project runs on), and each call quantizes its input rows to signed bytes per
//! block of 32 (`x = dx * q`, as llama.cpp's Q8_1 does, its f16 scales included). A block's
//! contribution to an output is then exact in integers, `d * dx * sum(u * q) + m * dx * sum(q)`,
//! and only the per-block scaling is done in f32.
//!
//! Every output element is computed by the same instructions in the same order whatever the
//! number of rows in the call and however the columns are split over threads, so a sequence's
//! numbers do not depend on its batch neighbours.
//!
//! [`gemm_reference`] is the same arithmetic written plainly, for the tests.

use candle_core::quantized::{GgmlDType, QTensor};
use rayon::prelude::*;

/// Weights per quantization block (every supported GGUF format uses 32).
pub const BLOCK: usize = 32;
/// Output columns per packed panel: two vectors of 16 i32 lanes.
const PANEL: usize = 32;
/// Bytes of one panel's block: 32 columns x 32 weights.
const PANEL_BLOCK_BYTES: usize = PANEL * BLOCK;

/// Whether this CPU runs the int8 kernels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How a format's stored integers map to weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offset {
    /// `w = d * (u - zero)`: the zero point is removed in integers (Q4_0: 8, Q8_0: 128).
    Zero(i32),
    /// `w = d * u + m`, with `m` per block (Q4_1).
    Min,
}

/// A weight matrix (n outputs x k inputs) packed for [`gemm`].
#[derive(Debug, Clone)]
pub struct Packed {
    n: usize,
    k: usize,
    offset: Offset,
    /// Panel-major, then block: for each group of 4 inputs, 16 columns x 4 bytes for the first
    /// half of the panel, then the same for the second half.
    data: Vec<u8>,
    /// Per panel and block: `d` of the 32 columns, then `m` of the 32 columns.
    scales: Vec<f32>,
}

impl Packed {
    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    fn blocks(&self) -> usize {
        self.k / BLOCK
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    /// Packs a quantized (n, k) weight, or `None` for formats this kernel does not read.
    pub fn from_qtensor(q: &QTensor) -> candle_core::Result<Option<Self>> {
        let (n, k) = match q.shape().dims() {
            &[n, k] => (n, k),
            _ => return Ok(None),
        };
        let (offset, block_bytes) = match q.dtype() {
            GgmlDType::Q4_0 => (Offset::Zero(8), 18),
            GgmlDType::Q4_1 => (Offset::Min, 20),
            GgmlDType::Q8_0 => (Offset::Zero(128), 34),
            _ => return Ok(None),
        };
        if !k.is_multiple_of(BLOCK) {
            return Ok(None);
        }
        let raw = q.data()?;
        let nb = k / BLOCK;
        if raw.len() != n * nb * block_bytes {
            candle_core::bail!(
                "int8 packing: {} bytes for a {n}x{k} {:?}",
                raw.len(),
                q.dtype()
            );
        }
        let mut packed = Self {
            n,
            k,
            offset,
            data: vec![0; n.div_ceil(PANEL) * nb * PANEL_BLOCK_BYTES],
            scales: vec![0.0; n.div_ceil(PANEL) * nb * 2 * PANEL],
        };
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let mut u = [0u8; BLOCK];
        for row in 0..n {
            for b in 0..nb {
                let blk = &raw[(row * nb + b) * block_bytes..][..block_bytes];
                let d = f16(blk);
                let m = match q.dtype() {
                    GgmlDType::Q4_0 | GgmlDType::Q4_1 => {
                        let qs = if q.dtype() == GgmlDType::Q4_0 {
                            &blk[2..18]
                        } else {
                            &blk[4..20]
                        };
                        for (j, &byte) in qs.iter().enumerate() {
                            u[j] = byte & 0x0f;
                            u[j + 16] = byte >> 4;
                        }
                        if q.dtype() == GgmlDType::Q4_1 {
                            f16(&blk[2..4])
                        } else {
                            0.0
                        }
                    }
                    _ => {
                        for (j, &byte) in blk[2..34].iter().enumerate() {
                            u[j] = (byte as i8 as i32 + 128) as u8;
                        }
                        0.0
                    }
                };
                packed.put(row, b, &u, d, m);
            }
        }
        Ok(Some(packed))
    }

    /// Weights that read the same input side by side (Q, K and V; gate and up), so one call
    /// quantizes the input once and computes all of them; `None` unless every part but the last
    /// fills whole panels and all share `k` and format.
    pub fn concat(parts: &[&Packed]) -> Option<Packed> {
        let first = parts.first()?;
        let (init, _) = parts.split_at(parts.len() - 1);
        if parts
            .iter()
            .any(|p| p.k != first.k || p.offset != first.offset)
            || init.iter().any(|p| !p.n.is_multiple_of(PANEL))
        {
            return None;
        }
        Some(Packed {
            n: parts.iter().map(|p| p.n).sum(),
            k: first.k,
            offset: first.offset,
            data: parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
            scales: parts
                .iter()
                .flat_map(|p| p.scales.iter().copied())
                .collect(),
        })
    }

    fn put(&mut self, row: usize, b: usize, u: &[u8; BLOCK], d: f32, m: f32) {
        let nb = self.blocks();
        let (panel, col) = (row / PANEL, row % PANEL);
        let base = (panel * nb + b) * PANEL_BLOCK_BYTES;
        let (half, lane) = (col / 16, col % 16);
        for (kk, &v) in u.iter().enumerate() {
            let (k4, j) = (kk / 4, kk % 4);
            self.data[base + k4 * 2 * 64 + half * 64 + lane * 4 + j] = v;
        }
        let s = (panel * nb + b) * 2 * PANEL;
        self.scales[s + col] = d;
        self.scales[s + PANEL + col] = m;
    }

    /// The weight at output `row`, input `col`, as the kernel sees it.
    pub fn weight(&self, row: usize, col: usize) -> f32 {
        let nb = self.blocks();
        let (b, kk) = (col / BLOCK, col % BLOCK);
        let (panel, c) = (row / PANEL, row % PANEL);
        let base = (panel * nb + b) * PANEL_BLOCK_BYTES;
        let u = self.data[base + (kk / 4) * 128 + (c / 16) * 64 + (c % 16) * 4 + kk % 4] as i32;
        let s = (panel * nb + b) * 2 * PANEL;
        let (d, m) = (self.scales[s + c], self.scales[s + PANEL + c]);
        match self.offset {
            Offset::Zero(z) => d * (u - z) as f32,
            Offset::Min => d * u as f32 + m,
        }
    }
}

/// Input rows quantized per block of 32: `x = d * q`.
pub struct Rows {
    m: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    /// Sum of the block's `q`.
    sum: Vec<i32>,
    /// `d * sum`, the block's sum in real units.
    s: Vec<f32>,
}

impl Rows {
    /// Quantizes `m` rows of `k` values (row-major). `k` must be a multiple of [`BLOCK`].
    pub fn quantize(x: &[f32], k: usize) -> Self {
        Self::quantize_with(x, k, available())
    }

    fn quantize_with(x: &[f32], k: usize, simd: bool) -> Self {
        assert!(
            k.is_multiple_of(BLOCK) && x.len().is_multiple_of(k),
            "int8 rows: bad shape"
        );
        let m = x.len() / k;
        let nb = m * k / BLOCK;
        let mut rows = Self {
            m,
            q: vec![0; m * k],
            d: vec![0.0; nb],
            sum: vec![0; nb],
            s: vec![0.0; nb],
        };
        const CHUNK: usize = 64 * BLOCK;
        let parts = rows
            .q
            .par_chunks_mut(CHUNK)
            .zip(rows.d.par_chunks_mut(CHUNK / BLOCK))
            .zip(rows.sum.par_chunks_mut(CHUNK / BLOCK))
            .zip(rows.s.par_chunks_mut(CHUNK / BLOCK))
            .zip(x.par_chunks(CHUNK));
        parts.for_each(|((((q, d), sum), s), x)| {
            for (b, xb) in x.chunks_exact(BLOCK).enumerate() {
                let qb = &mut q[b * BLOCK..][..BLOCK];
                // SAFETY: the AVX-512 version runs only where the CPU has it.
                let (db, sb) = if simd {
                    unsafe { x86::quantize_block(xb, qb) }
                } else {
                    quantize_block(xb, qb)
                };
                (d[b], sum[b], s[b]) = stored(db, sb);
            }
        });
        rows
    }
}

/// What is kept of a block's scale `d` and sum: llama.cpp stores `d` and `d * sum` as f16 (its
/// Q8_0 and Q8_1), and so does this, so both sides multiply by the same numbers.
fn stored(d: f32, sum: i32) -> (f32, i32, f32) {
    let f16 = |v: f32| half::f16::from_f32(v).to_f32();
    (f16(d), sum, f16(d * sum as f32))
}

/// One block of 32 values to bytes, rounding to nearest (ties to even); returns (d, sum of q).
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    if x.iter().any(|v| !v.is_finite()) {
        // Overflowed activations stay visible: every output of the block becomes NaN.
        q.fill(0);
        return (f32::NAN, 0);
    }
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0;
    for (o, &v) in q.iter_mut().zip(x) {
        let r = (v * id).round_ties_even() as i32;
        *o = r as i8;
        sum += r;
    }
    (d, sum)
}

/// `x (m, k) * w^T -> (m, n)` row-major. Needs [`available`].
pub fn gemm(w: &Packed, x: &[f32]) -> Vec<f32> {
    assert!(available(), "int8 gemm needs AVX-512 VNNI");
    let rows = Rows::quantize(x, w.k);
    let mut out = vec![0f32; rows.m * w.n];
    // Panels are split over threads; rows go in chunks that keep the quantized inputs in cache.
    const ROW_CHUNK: usize = 192;
    let panels = w.panels();
    let threads = rayon::current_num_threads().max(1);
    let per_task = panels.div_ceil(threads * 4).max(1);
    let out_addr = out.as_mut_ptr() as usize;
    for r0 in (0..rows.m).step_by(ROW_CHUNK) {
        let r1 = (r0 + ROW_CHUNK).min(rows.m);
        (0..panels.div_ceil(per_task))
            .into_par_iter()
            .for_each(|t| {
                for p in t * per_task..((t + 1) * per_task).min(panels) {
                    // SAFETY: the CPU has the features (checked above); the task writes only the
                    // columns of its own panels, in rows r0..r1 of `out` (m x n, alive until the end
                    // of this loop), so no two tasks write the same element.
                    unsafe { x86::panel(w, &rows, p, r0, r1, out_addr as *mut f32) }
                }
            });
    }
    out
}

/// [`gemm`]'s arithmetic without SIMD, in the same order, so results agree to the bit.
pub fn gemm_reference(w: &Packed, x: &[f32]) -> Vec<f32> {
    let rows = Rows::quantize_with(x, w.k, false);
    let nb = w.blocks();
    let mut out = vec![0f32; rows.m * w.n];
    for r in 0..rows.m {
        for col in 0..w.n {
            let (panel, c) = (col / PANEL, col % PANEL);
            let mut acc = 0f32;
            for b in 0..nb {
                let base = (panel * nb + b) * PANEL_BLOCK_BYTES;
                let mut dot = 0i32;
                for kk in 0..BLOCK {
                    let u = w.data[base + (kk / 4) * 128 + (c / 16) * 64 + (c % 16) * 4 + kk % 4];
                    dot += u as i32 * rows.q[r * w.k + b * BLOCK + kk] as i32;
                }
                let s = (panel * nb + b) * 2 * PANEL;
                let (d, m) = (w.scales[s + c], w.scales[s + PANEL + c]);
                let dx = rows.d[r * nb + b];
                let sum = rows.sum[r * nb + b];
                match w.offset {
                    Offset::Zero(z) => acc = ((dot - z * sum) as f32).mul_add(d * dx, acc),
                    Offset::Min => {
                        acc = (dot as f32).mul_add(d * dx, acc);
                        acc = m.mul_add(rows.s[r * nb + b], acc);
                    }
                }
            }
            out[r * w.n + col] = acc;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Offset, Packed, Rows, BLOCK, PANEL, PANEL_BLOCK_BYTES};

    /// Rows r0..r1 of one panel's 32 columns, in tiles of up to 4 rows (8 accumulators of
    /// block sums and 8 running totals; 6 rows spill registers and run slower).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F/BW/VNNI; `out` must point to an m x n row-major f32 buffer.
    pub unsafe fn panel(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
        let mut r = r0;
        while r < r1 {
            let rows = (r1 - r).min(4);
            match (rows, w.offset) {
                (4, Offset::Min) => tile::<4, true>(w, x, p, r, out),
                (3, Offset::Min) => tile::<3, true>(w, x, p, r, out),
                (2, Offset::Min) => tile::<2, true>(w, x, p, r, out),
                (1, Offset::Min) => tile::<1, true>(w, x, p, r, out),
                (4, _) => tile::<4, false>(w, x, p, r, out),
                (3, _) => tile::<3, false>(w, x, p, r, out),
                (2, _) => tile::<2, false>(w, x, p, r, out),
                _ => tile::<1, false>(w, x, p, r, out),
            }
            r += rows;
        }
    }

    /// [`super::quantize_block`] with AVX-512: the same rounding (to nearest, ties to even, the
    /// default MXCSR mode) and the same `1 / d`, so the same bytes.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `x` and `q` hold 32 values.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
        debug_assert!(x.len() == BLOCK && q.len() == BLOCK);
        let x0 = _mm512_loadu_ps(x.as_ptr());
        let x1 = _mm512_loadu_ps(x.as_ptr().add(16));
        // x - x is NaN exactly where x is infinite or NaN.
        let bad = |v: __m512| {
            let z = _mm512_sub_ps(v, v);
            _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(z, z)
        };
        if bad(x0) | bad(x1) != 0 {
            q.fill(0);
            return (f32::NAN, 0);
        }
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        let d = amax / 127.0;
        let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id));
        let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
        _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128(
            q.as_mut_ptr().add(16) as *mut __m128i,
            _mm512_cvtepi32_epi8(q1),
        );
        (d, _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const MR: usize, const MIN: bool>(
        w: &Packed,
        x: &Rows,
        p: usize,
        r0: usize,
        out: *mut f32,
    ) {
        let nb = w.blocks();
        let zero = match w.offset {
            Offset::Zero(z) => z,
            Offset::Min => 0,
        };
        let k = w.k;
        let xq = x.q.as_ptr().add(r0 * k) as *const u8;
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let mut wd = w.data.as_ptr().add(p * nb * PANEL_BLOCK_BYTES);
        let mut sc = w.scales.as_ptr().add(p * nb * 2 * PANEL);
        for b in 0..nb {
            let mut dot = [[_mm512_setzero_si512(); 2]; MR];
            for k4 in 0..BLOCK / 4 {
                let w0 = _mm512_loadu_si512(wd.add(k4 * 128) as *const _);
                let w1 = _mm512_loadu_si512(wd.add(k4 * 128 + 64) as *const _);
                for (i, row) in dot.iter_mut().enumerate() {
                    let a =
                        std::ptr::read_unaligned(xq.add(i * k + b * BLOCK + k4 * 4) as *const i32);
                    let a = _mm512_set1_epi32(a);
                    row[0] = _mm512_dpbusd_epi32(row[0], w0, a);
                    row[1] = _mm512_dpbusd_epi32(row[1], w1, a);
                }
            }
            let d0 = _mm512_loadu_ps(sc);
            let d1 = _mm512_loadu_ps(sc.add(16));
            let m0 = _mm512_loadu_ps(sc.add(PANEL));
            let m1 = _mm512_loadu_ps(sc.add(PANEL + 16));
            for i in 0..MR {
                let at = (r0 + i) * nb + b;
                let dx = _mm512_set1_ps(*x.d.get_unchecked(at));
                let sum = *x.sum.get_unchecked(at);
                if MIN {
                    let s = _mm512_set1_ps(*x.s.get_unchecked(at));
                    let a0 = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(dot[i][0]),
                        _mm512_mul_ps(d0, dx),
                        acc[i][0],
                    );
                    let a1 = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(dot[i][1]),
                        _mm512_mul_ps(d1, dx),
                        acc[i][1],
                    );
                    acc[i][0] = _mm512_fmadd_ps(m0, s, a0);
                    acc[i][1] = _mm512_fmadd_ps(m1, s, a1);
                } else {
                    let c = _mm512_set1_epi32(zero * sum);
                    let v0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot[i][0], c));
                    let v1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot[i][1], c));
                    acc[i][0] = _mm512_fmadd_ps(v0, _mm512_mul_ps(d0, dx), acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(v1, _mm512_mul_ps(d1, dx), acc[i][1]);
                }
            }
            wd = wd.add(PANEL_BLOCK_BYTES);
            sc = sc.add(2 * PANEL);
        }
        let col0 = p * PANEL;
        let cols = (w.n - col0).min(PANEL);
        let mask0: __mmask16 = if cols >= 16 {
            0xffff
        } else {
            (1u16 << cols) - 1
        };
        let mask1: __mmask16 = if cols >= 32 {
            0xffff
        } else if cols > 16 {
            (1u16 << (cols - 16)) - 1
        } else {
            0
        };
        for (i, a) in acc.iter().enumerate() {
            let o = out.add((r0 + i) * w.n + col0);
            _mm512_mask_storeu_ps(o, mask0, a[0]);
            if mask1 != 0 {
                _mm512_mask_storeu_ps(o.add(16), mask1, a[1]);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::{Packed, Rows};
    pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
        super::quantize_block(x, q)
    }
    pub unsafe fn panel(_: &Packed, _: &Rows, _: usize, _: usize, _: usize, _: *mut f32) {
        unreachable!("int8 kernels are x86_64 only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn weights(n: usize, k: usize, dtype: GgmlDType, seed: u64) -> (QTensor, Vec<f32>) {
        let mut state = seed;
        let vals: Vec<f32> = (0..n * k)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.2
            })
            .collect();
        let t = Tensor::from_vec(vals, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (q, deq)
    }

    fn inputs(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| {
                ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * if i % 97 == 0 { 20.0 } else { 1.0 }
            })
            .collect()
    }

    #[test]
    fn packing_keeps_every_weight_of_each_format() {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let (q, deq) = weights(40, 64, dtype, 3);
            let p = Packed::from_qtensor(&q).unwrap().expect("format supported");
            for row in 0..40 {
                for col in 0..64 {
                    let (a, b) = (p.weight(row, col), deq[row * 64 + col]);
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                        "{dtype:?} [{row},{col}] {a} vs {b}"
                    );
                }
            }
        }
        let (q, _) = weights(4, 64, GgmlDType::Q5_1, 1);
        assert!(
            Packed::from_qtensor(&q).unwrap().is_none(),
            "Q5_1 is not packed"
        );
    }

    #[test]
    fn kernel_matches_reference_bitwise_and_dense_product_closely() {
        if !available() {
            panic!("this machine has no AVX-512 VNNI: the int8 kernels cannot be checked here");
        }
        // Column counts off the 32-panel and row counts off the 6-row tile exercise the edges.
        for (dtype, n, k) in [
            (GgmlDType::Q4_1, 72, 96),
            (GgmlDType::Q4_0, 40, 64),
            (GgmlDType::Q8_0, 33, 128),
        ] {
            let (q, deq) = weights(n, k, dtype, 11);
            let p = Packed::from_qtensor(&q).unwrap().unwrap();
            for m in [1, 5, 6, 13] {
                let x = inputs(m, k);
                let fast = gemm(&p, &x);
                let slow = gemm_reference(&p, &x);
                assert_eq!(
                    fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{dtype:?} m={m}"
                );
                for r in 0..m {
                    for c in 0..n {
                        let exact: f32 = (0..k).map(|i| x[r * k + i] * deq[c * k + i]).sum();
                        let scale: f32 =
                            (0..k).map(|i| (x[r * k + i] * deq[c * k + i]).abs()).sum();
                        let err = (fast[r * n + c] - exact).abs();
                        assert!(
                            err <= 0.02 * scale + 1e-5,
                            "{dtype:?} [{r},{c}] {} vs {exact}",
                            fast[r * n + c]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn non_finite_inputs_give_nan_not_numbers() {
        let (q, _) = weights(32, 64, GgmlDType::Q4_1, 9);
        let p = Packed::from_qtensor(&q).unwrap().unwrap();
        let mut x = inputs(2, 64);
        x[70] = f32::INFINITY; // row 1, second block
        for out in [gemm(&p, &x), gemm_reference(&p, &x)] {
            assert!(
                out[..32].iter().all(|v| v.is_finite()),
                "row 0 is untouched"
            );
            assert!(
                out[32..].iter().all(|v| v.is_nan()),
                "row 1 shows the overflow"
            );
        }
    }

    #[test]
    fn side_by_side_weights_give_each_part_its_own_product() {
        let (qa, _) = weights(64, 96, GgmlDType::Q4_1, 21);
        let (qb, _) = weights(40, 96, GgmlDType::Q4_1, 22);
        let (a, b) = (
            Packed::from_qtensor(&qa).unwrap().unwrap(),
            Packed::from_qtensor(&qb).unwrap().unwrap(),
        );
        let both = Packed::concat(&[&a, &b]).expect("64 columns fill two panels");
        assert!(
            Packed::concat(&[&b, &a]).is_none(),
            "40 columns do not fill whole panels"
        );
        let x = inputs(3, 96);
        let (ya, yb, y) = (gemm(&a, &x), gemm(&b, &x), gemm(&both, &x));
        for r in 0..3 {
            assert_eq!(y[r * 104..r * 104 + 64], ya[r * 64..(r + 1) * 64]);
            assert_eq!(y[r * 104 + 64..(r + 1) * 104], yb[r * 40..(r + 1) * 40]);
        }
    }

    #[test]
    fn a_row_gets_the_same_bits_alone_or_among_others() {
        let (q, _) = weights(64, 128, GgmlDType::Q4_1, 5);
        let p = Packed::from_qtensor(&q).unwrap().unwrap();
        let x = inputs(9, 128);
        let all = gemm(&p, &x);
        for r in 0..9 {
            let one = gemm(&p, &x[r * 128..(r + 1) * 128]);
            assert_eq!(one, all[r * 64..(r + 1) * 64], "row {r}");
        }
    }
}
