//! Attention on the CPU for many short rows at once.
//!
//! Decoding 64 sequences asks, per layer, for 192 tiny products (3 query heads against one key
//! head of one row); through candle each is a separate matmul with its own thread handoff, which
//! cost more than the projections around them. Here one parallel pass walks every (row, key
//! head) pair and does scores, softmax and the weighted sum of values in registers.
//!
//! Hidden positions (padding, filler after a shared prefix, the future) are skipped, not masked:
//! the visible keys are summed in the same order whatever their positions, so a row gives the
//! same bits alone, left-padded, or among other rows. A filler token's own output is zero (it
//! sees nothing; nothing reads it).

use rayon::prelude::*;

/// Where attention reads one row's keys and values in one layer: runs of consecutive positions,
/// in order, each at a pointer into a (batch, heads, capacity, head_dim) buffer.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub k: *const f32,
    pub v: *const f32,
    /// Floats from one head to the next (capacity x head_dim).
    pub head_stride: usize,
    pub len: usize,
}

// SAFETY: a run is read-only addresses into cache buffers that outlive the call (see `attend`).
unsafe impl Send for Run {}
unsafe impl Sync for Run {}

/// Head sizes the kernel takes.
pub const HEAD_DIMS: [usize; 3] = [32, 64, 128];

/// Whether this CPU runs the AVX-512 version of [`attend`]; the portable one (compiled for AVX2
/// and FMA where the CPU has them) runs everywhere.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub batch: usize,
    /// New tokens per row.
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// One of [`HEAD_DIMS`].
    pub head_dim: usize,
    /// Positions cached before the new tokens.
    pub start: usize,
}

/// `q`: (batch, heads, seq, head_dim); `runs[b]`: where row `b`'s keys and values for
/// positions `0..start+seq` are, the new tokens' included (see [`Run`]); `hidden[b][j]`:
/// position `j` of row `b` is filler. A new token sees the visible positions before it and
/// itself; a hidden new token gets zeros. Returns (batch, seq, heads, head_dim). `simd`: the
/// AVX-512 version ([`simd_available`]); each version gives a row the same bits wherever it
/// sits.
///
/// # Safety
/// Every run must point at `len` positions of `kv_heads` heads of `head_dim` floats, heads
/// `head_stride` floats apart, alive and unchanged for the whole call.
pub unsafe fn attend(
    q: &[f32],
    runs: &[Vec<Run>],
    hidden: &[Vec<bool>],
    d: Dims,
    simd: bool,
) -> Vec<f32> {
    assert!(
        HEAD_DIMS.contains(&d.head_dim) && (!simd || simd_available()),
        "attention kernel unavailable"
    );
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    assert_eq!(q.len(), d.batch * d.heads * d.seq * d.head_dim);
    assert!(runs.len() == d.batch && hidden.len() == d.batch);
    for (r, h) in runs.iter().zip(hidden) {
        let len: usize = r.iter().map(|run| run.len).sum();
        assert!(
            len == d.start + d.seq && h.len() >= len,
            "runs cover {len} positions"
        );
    }
    let mut out = vec![0f32; q.len()];
    let out_addr = out.as_mut_ptr() as usize;
    // Long prompts of few rows split their new tokens too, so every core gets work.
    let pairs = d.batch * d.kv_heads;
    let per_task = d
        .seq
        .div_ceil((4 * rayon::current_num_threads()).div_ceil(pairs))
        .max(1);
    let chunks = d.seq.div_ceil(per_task);
    (0..pairs * chunks).into_par_iter().for_each(|task| {
        let (pair, chunk) = (task / chunks, task % chunks);
        let tokens = chunk * per_task..((chunk + 1) * per_task).min(d.seq);
        let b = pair / d.kv_heads;
        let task = Task {
            q,
            runs: &runs[b],
            hidden: &hidden[b],
            d,
            pair,
            tokens,
            out: out_addr as *mut f32,
        };
        // SAFETY: checked above that the CPU has AVX-512 F (for `simd`) and the shapes; the
        // caller vouches for the runs; each task writes the output of its own (row, head
        // group, tokens) only.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if simd {
                x86::group(task)
            } else if avx2 {
                x86::group_avx2(task)
            } else {
                portable::group(task)
            }
            #[cfg(not(target_arch = "x86_64"))]
            portable::group(task)
        }
    });
    out
}

/// One task of [`attend`]: a (row, key head) pair for some of its new tokens.
struct Task<'a> {
    q: &'a [f32],
    runs: &'a [Run],
    hidden: &'a [bool],
    d: Dims,
    pair: usize,
    tokens: std::ops::Range<usize>,
    out: *mut f32,
}

impl Task<'_> {
    /// The batch row and the key head of the task's pair.
    fn row_and_kv_head(&self) -> (usize, usize) {
        (self.pair / self.d.kv_heads, self.pair % self.d.kv_heads)
    }
}

/// Positions up to `end` that key head `kvh` of a row may see (not `hidden`), with the
/// addresses of their keys and values in `runs`.
///
/// # Safety
/// The runs point at `len` positions of heads of `hd` floats, `head_stride` apart.
#[inline(always)]
unsafe fn visible_keys(
    runs: &[Run],
    hidden: &[bool],
    kvh: usize,
    hd: usize,
    end: usize,
) -> (Vec<usize>, Vec<(*const f32, *const f32)>) {
    let mut visible: Vec<usize> = Vec::with_capacity(end);
    let mut keys: Vec<(*const f32, *const f32)> = Vec::with_capacity(end);
    let mut pos = 0;
    for run in runs {
        let head = kvh * run.head_stride;
        for i in 0..run.len.min(end.saturating_sub(pos)) {
            if !hidden[pos + i] {
                visible.push(pos + i);
                keys.push((run.k.add(head + i * hd), run.v.add(head + i * hd)));
            }
        }
        pos += run.len;
    }
    (visible, keys)
}

/// The keys at `keys` transposed (`hd` x `width`, zeros past the keys): a query's scores are
/// then multiply-adds along rows, vectorized over keys.
///
/// # Safety
/// Each key points at `hd` floats.
#[inline(always)]
unsafe fn transposed(keys: &[(*const f32, *const f32)], hd: usize, width: usize) -> Vec<f32> {
    let mut kt = vec![0f32; hd * width];
    for (j, &(kp, _)) in keys.iter().enumerate() {
        for (c, &x) in std::slice::from_raw_parts(kp, hd).iter().enumerate() {
            kt[c * width + j] = x;
        }
    }
    kt
}

/// Whether new token `i` of row `b` is filler; if so, zeros its outputs for the query heads of
/// key head `kvh` (nothing reads them; zeros keep them finite).
///
/// # Safety
/// `out` is [`attend`]'s output.
#[inline(always)]
unsafe fn filler(
    d: Dims,
    hidden: &[bool],
    out: *mut f32,
    (b, kvh): (usize, usize),
    i: usize,
) -> bool {
    if !hidden[d.start + i] {
        return false;
    }
    let group = d.heads / d.kv_heads;
    for h in 0..group {
        let o = out.add(((b * d.seq + i) * d.heads + kvh * group + h) * d.head_dim);
        std::ptr::write_bytes(o, 0, d.head_dim);
    }
    true
}

/// The portable kernel: the steps of the AVX-512 one in plain Rust (scores key by key over
/// the head's dimensions in order, `exp`, values summed key by key in order), so a row's bits
/// do not depend on where its keys sit either.
mod portable {
    use super::{filler, transposed, visible_keys, Task};

    /// One (row, key head) pair for some of its new tokens: every query head of the group.
    ///
    /// # Safety
    /// Slices and `out` sized as [`super::attend`] checks.
    #[inline(always)]
    pub unsafe fn group(task: Task) {
        let (b, kvh) = task.row_and_kv_head();
        let (q, runs, hidden, d) = (task.q, task.runs, task.hidden, task.d);
        let (tokens, out) = (task.tokens, task.out);
        let hd = d.head_dim;
        let group = d.heads / d.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let (visible, keys) = visible_keys(runs, hidden, kvh, hd, d.start + tokens.end);
        // Keys transposed (head_dim x keys): a query's scores are then plain multiply-adds
        // along a row, which the compiler vectorizes over keys.
        let n = keys.len();
        let kt = transposed(&keys, hd, n);
        let mut scores = vec![0f32; n];
        let mut qs = vec![0f32; hd];
        let mut acc = vec![0f32; hd];
        for i in tokens {
            let at = d.start + i;
            if filler(d, hidden, out, (b, kvh), i) {
                continue;
            }
            let count = visible.partition_point(|&j| j <= at);
            for h in 0..group {
                let qp = q
                    .as_ptr()
                    .add(((b * d.heads + kvh * group + h) * d.seq + i) * hd);
                for (c, x) in qs.iter_mut().enumerate() {
                    *x = *qp.add(c) * scale;
                }
                let s = &mut scores[..count];
                s.fill(0.0);
                for (c, &qc) in qs.iter().enumerate() {
                    for (sj, &k) in s.iter_mut().zip(&kt[c * n..c * n + count]) {
                        *sj = qc.mul_add(k, *sj);
                    }
                }
                let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                for x in s.iter_mut() {
                    *x = (*x - max).exp();
                }
                let mut sum = 0f32;
                acc.fill(0.0);
                for (&(_, vp), &p) in keys.iter().zip(s.iter()) {
                    sum += p;
                    for (a, &x) in acc.iter_mut().zip(std::slice::from_raw_parts(vp, hd)) {
                        *a = p.mul_add(x, *a);
                    }
                }
                let inv = 1.0 / sum;
                let o = out.add(((b * d.seq + i) * d.heads + kvh * group + h) * hd);
                for (c, a) in acc.iter().enumerate() {
                    *o.add(c) = a * inv;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::x86::exp_shifted;
    use super::Task;

    /// Largest head the kernel takes, in floats.
    pub(super) const MAX_HEAD: usize = 128;

    /// [`super::portable::group`] compiled for AVX2 and FMA: the same bits (`mul_add` is one
    /// rounding either way), vectorized.
    ///
    /// # Safety
    /// AVX2 and FMA; as [`super::portable::group`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn group_avx2(task: Task) {
        super::portable::group(task)
    }

    /// One (row, key head) pair for some of its new tokens: every query head of the group.
    ///
    /// # Safety
    /// AVX-512 F; slices and `out` sized as [`super::attend`] checks; `head_dim` one of
    /// [`super::HEAD_DIMS`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn group(task: Task) {
        let d = task.d;
        let group = d.heads / d.kv_heads;
        // Query heads scored together share each load of the keys.
        let together = [4, 3, 2, 1]
            .into_iter()
            .find(|h| group.is_multiple_of(*h))
            .unwrap_or(1);
        macro_rules! go {
            ($v:literal, $h:literal) => {
                heads::<$v, $h>(task)
            };
        }
        match (d.head_dim / 16, together) {
            (2, 4) => go!(2, 4),
            (2, 3) => go!(2, 3),
            (2, 2) => go!(2, 2),
            (2, _) => go!(2, 1),
            (4, 4) => go!(4, 4),
            (4, 3) => go!(4, 3),
            (4, 2) => go!(4, 2),
            (4, _) => go!(4, 1),
            (8, 4) => go!(8, 4),
            (8, 3) => go!(8, 3),
            (8, 2) => go!(8, 2),
            (_, _) => go!(8, 1),
        }
    }

    /// Keys are copied transposed (head_dim x keys) once per task, so a query's scores come 16
    /// keys at a time from plain FMAs, with no horizontal sums; values are summed key by key in
    /// order, so a row's result does not depend on where its keys sit.
    #[target_feature(enable = "avx512f")]
    unsafe fn heads<const V: usize, const H: usize>(task: Task) {
        let (b, kvh) = task.row_and_kv_head();
        let (q, runs, hidden, d) = (task.q, task.runs, task.hidden, task.d);
        let (tokens, out) = (task.tokens, task.out);
        let hd = V * 16;
        let group = d.heads / d.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let (visible, keys) = super::visible_keys(runs, hidden, kvh, hd, d.start + tokens.end);
        let padded = visible.len().div_ceil(16) * 16;
        // Keys transposed once serve every token and head group of the task; a task of one
        // (a decoding step) transposes them in registers as it scores, with no copy.
        let kt = (tokens.len() * (group / H) > 1).then(|| transposed::<V>(&keys, padded));
        let mut scores = vec![0f32; H * padded];
        for i in tokens {
            let at = d.start + i;
            if super::filler(d, hidden, out, (b, kvh), i) {
                continue;
            }
            let count = visible.partition_point(|&j| j <= at);
            for g0 in (0..group).step_by(H) {
                let mut qs = [[0f32; MAX_HEAD]; H];
                for (h, qh) in qs.iter_mut().enumerate() {
                    let qp = q
                        .as_ptr()
                        .add(((b * d.heads + kvh * group + g0 + h) * d.seq + i) * hd);
                    for (c, x) in qh.iter_mut().take(hd).enumerate() {
                        *x = *qp.add(c) * scale;
                    }
                }
                for jb in (0..count).step_by(16) {
                    let acc = match &kt {
                        Some(kt) => scores_transposed::<V, H>(&kt[jb..], padded, &qs),
                        None => scores_in_place::<V, H>(
                            &keys[jb..count.min(jb + 16)],
                            &keys[(jb + 16).min(count)..count.min(jb + 32)],
                            &qs,
                        ),
                    };
                    for (h, a) in acc.iter().enumerate() {
                        _mm512_storeu_ps(scores.as_mut_ptr().add(h * padded + jb), *a);
                    }
                }
                for h in 0..H {
                    let s = &mut scores[h * padded..h * padded + count];
                    let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                    exp_shifted(s, max);
                }
                let o = out.add(((b * d.seq + i) * d.heads + kvh * group + g0) * hd);
                let at = |h: usize| (scores.as_ptr().add(h * padded), o.add(h * hd));
                // Each value row is loaded once for as many heads as the registers hold.
                if V * H <= 16 {
                    weighted_values::<V, H>(&keys[..count], std::array::from_fn(at));
                } else if H.is_multiple_of(2) {
                    for h in (0..H).step_by(2) {
                        weighted_values::<V, 2>(&keys[..count], [at(h), at(h + 1)]);
                    }
                } else {
                    for h in 0..H {
                        weighted_values::<V, 1>(&keys[..count], [at(h)]);
                    }
                }
            }
        }
    }

    /// Scores of 16 keys for `H` query heads (`qs`, scaled) from keys transposed (row `c` of
    /// `kt`, `width` apart, holds dimension `c` of the 16 keys): multiply-adds over the head's
    /// dimensions in order.
    #[inline(always)]
    pub(super) unsafe fn scores_transposed<const V: usize, const H: usize>(
        kt: &[f32],
        width: usize,
        qs: &[[f32; MAX_HEAD]; H],
    ) -> [__m512; H] {
        let mut acc = [_mm512_setzero_ps(); H];
        for c in 0..V * 16 {
            let kc = _mm512_loadu_ps(kt.as_ptr().add(c * width));
            for (a, qh) in acc.iter_mut().zip(qs) {
                *a = _mm512_fmadd_ps(_mm512_set1_ps(qh[c]), kc, *a);
            }
        }
        acc
    }

    /// [`scores_transposed`] for up to 16 keys read where they are, transposed in registers
    /// 16 dimensions at a time: the same multiply-adds in the same order. The `next` keys are
    /// asked of memory meanwhile: a step's keys are read once and rarely still cached.
    #[inline(always)]
    pub(super) unsafe fn scores_in_place<const V: usize, const H: usize>(
        keys: &[(*const f32, *const f32)],
        next: &[(*const f32, *const f32)],
        qs: &[[f32; MAX_HEAD]; H],
    ) -> [__m512; H] {
        let mut acc = [_mm512_setzero_ps(); H];
        for c0 in (0..V * 16).step_by(16) {
            for &(kp, _) in next {
                _mm_prefetch::<_MM_HINT_T0>(kp.add(c0) as *const i8);
            }
            for (c, kc) in dims_of_keys(keys, c0).iter().enumerate() {
                for (a, qh) in acc.iter_mut().zip(qs) {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(qh[c0 + c]), *kc, *a);
                }
            }
        }
        acc
    }

    /// For each of `H` heads (`(p, o)`: its softmax numerators, one per key, and where its
    /// output goes), the values at `keys` summed key by key in order with weights `p`, divided
    /// by the sum of `p` (also in key order): the same operations per head as one head at a
    /// time, with each value row loaded once for all of them.
    #[inline(always)]
    unsafe fn weighted_values<const V: usize, const H: usize>(
        keys: &[(*const f32, *const f32)],
        heads: [(*const f32, *mut f32); H],
    ) {
        let mut sum = [0f32; H];
        let mut acc = [[_mm512_setzero_ps(); V]; H];
        for (j, &(_, vj)) in keys.iter().enumerate() {
            // Values a few keys ahead asked of memory, as the keys were.
            if let Some(&(_, ahead)) = keys.get(j + 8) {
                for c in 0..V {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.add(c * 16) as *const i8);
                }
            }
            let mut row = [_mm512_setzero_ps(); V];
            for (c, r) in row.iter_mut().enumerate() {
                *r = _mm512_loadu_ps(vj.add(c * 16));
            }
            for ((a, s), &(p, _)) in acc.iter_mut().zip(&mut sum).zip(&heads) {
                let p = *p.add(j);
                *s += p;
                let pv = _mm512_set1_ps(p);
                for (a, r) in a.iter_mut().zip(&row) {
                    *a = _mm512_fmadd_ps(pv, *r, *a);
                }
            }
        }
        for ((a, s), &(_, o)) in acc.iter().zip(&sum).zip(&heads) {
            let inv = _mm512_set1_ps(1.0 / s);
            for (c, a) in a.iter().enumerate() {
                _mm512_storeu_ps(o.add(c * 16), _mm512_mul_ps(*a, inv));
            }
        }
    }

    /// The keys at `keys` transposed as [`super::transposed`] lays them out (`16 V` x `width`,
    /// zeros past the keys), 16 keys x 16 dimensions at a time through registers (a 16 x 16
    /// transpose is 64 shuffles; element by element it was 256 scattered stores and the
    /// larger part of a decoding step's attention).
    #[inline(always)]
    pub(super) unsafe fn transposed<const V: usize>(
        keys: &[(*const f32, *const f32)],
        width: usize,
    ) -> Vec<f32> {
        let hd = V * 16;
        let mut kt = vec![0f32; hd * width];
        for (jb, block) in keys.chunks(16).enumerate() {
            for c0 in (0..hd).step_by(16) {
                for (c, v) in dims_of_keys(block, c0).iter().enumerate() {
                    _mm512_storeu_ps(kt.as_mut_ptr().add((c0 + c) * width + jb * 16), *v);
                }
            }
        }
        kt
    }

    /// Dimensions `c0..c0 + 16` of up to 16 keys, one vector per dimension (lane `j`: key `j`,
    /// zero past the keys).
    #[inline(always)]
    unsafe fn dims_of_keys(keys: &[(*const f32, *const f32)], c0: usize) -> [__m512; 16] {
        let mut r = [_mm512_setzero_ps(); 16];
        for (r, &(kp, _)) in r.iter_mut().zip(keys) {
            *r = _mm512_loadu_ps(kp.add(c0));
        }
        transpose16(r)
    }

    /// Rows `r` of a 16 x 16 matrix as its columns.
    #[inline(always)]
    unsafe fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows interleaved within 128-bit lanes, then pairs of those as 64-bit
        // halves: u[4g + m] holds, in 128-bit lane l, element 4l + m of rows 4g..4g + 4.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let (a, b, c, d) = (r[4 * g], r[4 * g + 1], r[4 * g + 2], r[4 * g + 3]);
            let t0 = _mm512_castps_pd(_mm512_unpacklo_ps(a, b));
            let t1 = _mm512_castps_pd(_mm512_unpackhi_ps(a, b));
            let t2 = _mm512_castps_pd(_mm512_unpacklo_ps(c, d));
            let t3 = _mm512_castps_pd(_mm512_unpackhi_ps(c, d));
            u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
            u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
            u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
            u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
        }
        // Then 128-bit lanes gathered across the four row groups: column 4l + m is lane l of
        // u[m], u[4 + m], u[8 + m], u[12 + m].
        let mut out = [_mm512_setzero_ps(); 16];
        for m in 0..4 {
            let w0 = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
            let w1 = _mm512_shuffle_f32x4::<0xDD>(u[m], u[4 + m]);
            let w2 = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
            let w3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + m], u[12 + m]);
            out[m] = _mm512_shuffle_f32x4::<0x88>(w0, w2);
            out[8 + m] = _mm512_shuffle_f32x4::<0xDD>(w0, w2);
            out[4 + m] = _mm512_shuffle_f32x4::<0x88>(w1, w3);
            out[12 + m] = _mm512_shuffle_f32x4::<0xDD>(w1, w3);
        }
        out
    }
}

#[cfg(test)]
mod tests;
