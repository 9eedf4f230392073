//! [`super::gemm`] with AVX2 and FMA: the 16 lanes of a dot product in two registers (inputs
//! `j % 16` below 8 in the first), tiles of up to 2 rows by 2 columns so the 8 sums, the
//! widened weights and an input pair stay within the 16 registers.

use std::arch::x86_64::*;

use super::{Half, HalfKind, LANES};

/// Whether this CPU has what [`columns`] uses.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
}

/// Columns c0..c1 of every row of `x (m, k)`.
///
/// # Safety
/// AVX2, FMA and F16C; `out` is the (m, n) row-major output.
pub unsafe fn columns(w: &Half, x: &[f32], m: usize, c0: usize, c1: usize, out: *mut f32) {
    match w.kind {
        HalfKind::Bf16 => columns_of::<true>(w, x, m, c0, c1, out),
        HalfKind::F16 => columns_of::<false>(w, x, m, c0, c1, out),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn columns_of<const BF16: bool>(
    w: &Half,
    x: &[f32],
    m: usize,
    c0: usize,
    c1: usize,
    out: *mut f32,
) {
    let mut c = c0;
    while c + 2 <= c1 {
        group::<BF16, 2>(w, x, m, c, out);
        c += 2;
    }
    if c < c1 {
        group::<BF16, 1>(w, x, m, c, out);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group<const BF16: bool, const NR: usize>(
    w: &Half,
    x: &[f32],
    m: usize,
    c: usize,
    out: *mut f32,
) {
    let mut r = 0;
    while r + 2 <= m {
        tile::<BF16, 2, NR>(w, x, r, c, out);
        r += 2;
    }
    if r < m {
        tile::<BF16, 1, NR>(w, x, r, c, out);
    }
}

/// 8 weights from `p`, widened to f32.
#[inline(always)]
unsafe fn load<const BF16: bool>(p: *const u16) -> __m256 {
    let h = _mm_loadu_si128(p as *const __m128i);
    if BF16 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    } else {
        _mm256_cvtph_ps(h)
    }
}

/// Lanes 0-7 in `lo` and 8-15 in `hi`, added as [`super::reduce`] adds them.
#[inline(always)]
unsafe fn reduce(lo: __m256, hi: __m256) -> f32 {
    let half = _mm256_add_ps(lo, hi);
    let quarter = _mm_add_ps(
        _mm256_castps256_ps128(half),
        _mm256_extractf128_ps::<1>(half),
    );
    let pairs = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
}

/// Rows r..r+MR by columns c..c+NR.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<const BF16: bool, const MR: usize, const NR: usize>(
    w: &Half,
    x: &[f32],
    r: usize,
    c: usize,
    out: *mut f32,
) {
    let (n, k) = (w.n, w.k);
    let wp = w.bits.as_ptr().add(c * k);
    let xp = x.as_ptr().add(r * k);
    let mut acc = [[[_mm256_setzero_ps(); 2]; NR]; MR];
    let mut wv = [[_mm256_setzero_ps(); 2]; NR];
    for j in (0..k).step_by(LANES) {
        for (q, halves) in wv.iter_mut().enumerate() {
            for (h, v) in halves.iter_mut().enumerate() {
                *v = load::<BF16>(wp.add(q * k + j + 8 * h));
            }
        }
        for (i, sums) in acc.iter_mut().enumerate() {
            for h in 0..2 {
                let xv = _mm256_loadu_ps(xp.add(i * k + j + 8 * h));
                for (sum, wq) in sums.iter_mut().zip(&wv) {
                    sum[h] = _mm256_fmadd_ps(wq[h], xv, sum[h]);
                }
            }
        }
    }
    for (i, sums) in acc.iter().enumerate() {
        for (q, sum) in sums.iter().enumerate() {
            *out.add((r + i) * n + c + q) = reduce(sum[0], sum[1]);
        }
    }
}
