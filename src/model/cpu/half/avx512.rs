//! [`super::gemm`] with AVX-512: the 16 lanes of a dot product in one register, tiles of up to
//! 4 rows by 4 columns (16 sums, 4 widened weight vectors, one input vector at a time), so each
//! weight load serves 4 rows and each input load 4 columns.

use std::arch::x86_64::*;

use super::{Half, HalfKind, LANES};

/// Whether this CPU has what [`columns`] uses.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// Columns c0..c1 of every row of `x (m, k)`.
///
/// # Safety
/// AVX-512 F; `out` is the (m, n) row-major output.
pub unsafe fn columns(w: &Half, x: &[f32], m: usize, c0: usize, c1: usize, out: *mut f32) {
    match w.kind {
        HalfKind::Bf16 => columns_of::<true>(w, x, m, c0, c1, out),
        HalfKind::F16 => columns_of::<false>(w, x, m, c0, c1, out),
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn columns_of<const BF16: bool>(
    w: &Half,
    x: &[f32],
    m: usize,
    c0: usize,
    c1: usize,
    out: *mut f32,
) {
    let mut c = c0;
    while c + 4 <= c1 {
        group::<BF16, 4>(w, x, m, c, out);
        c += 4;
    }
    match c1 - c {
        3 => group::<BF16, 3>(w, x, m, c, out),
        2 => group::<BF16, 2>(w, x, m, c, out),
        1 => group::<BF16, 1>(w, x, m, c, out),
        _ => {}
    }
}

/// Columns c..c+NR of every row, 4 rows a tile (the group's weights stay in L1 meanwhile).
#[target_feature(enable = "avx512f")]
unsafe fn group<const BF16: bool, const NR: usize>(
    w: &Half,
    x: &[f32],
    m: usize,
    c: usize,
    out: *mut f32,
) {
    let mut r = 0;
    while r + 4 <= m {
        tile::<BF16, 4, NR>(w, x, r, c, out);
        r += 4;
    }
    match m - r {
        3 => tile::<BF16, 3, NR>(w, x, r, c, out),
        2 => tile::<BF16, 2, NR>(w, x, r, c, out),
        1 => tile::<BF16, 1, NR>(w, x, r, c, out),
        _ => {}
    }
}

/// 16 weights from `p`, widened to f32.
#[inline(always)]
unsafe fn load<const BF16: bool>(p: *const u16) -> __m512 {
    let h = _mm256_loadu_si256(p as *const __m256i);
    if BF16 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    } else {
        _mm512_cvtph_ps(h)
    }
}

/// The 16 lanes added as [`super::reduce`] adds them.
#[inline(always)]
unsafe fn reduce(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let half = _mm256_add_ps(lo, hi);
    let quarter = _mm_add_ps(
        _mm256_castps256_ps128(half),
        _mm256_extractf128_ps::<1>(half),
    );
    let pairs = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
}

/// Rows r..r+MR by columns c..c+NR.
#[target_feature(enable = "avx512f")]
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
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let mut wv = [_mm512_setzero_ps(); NR];
    for j in (0..k).step_by(LANES) {
        for (q, v) in wv.iter_mut().enumerate() {
            *v = load::<BF16>(wp.add(q * k + j));
        }
        for (i, sums) in acc.iter_mut().enumerate() {
            let xv = _mm512_loadu_ps(xp.add(i * k + j));
            for (sum, wq) in sums.iter_mut().zip(&wv) {
                *sum = _mm512_fmadd_ps(*wq, xv, *sum);
            }
        }
    }
    for (i, sums) in acc.iter().enumerate() {
        for (q, sum) in sums.iter().enumerate() {
            *out.add((r + i) * n + c + q) = reduce(*sum);
        }
    }
}
