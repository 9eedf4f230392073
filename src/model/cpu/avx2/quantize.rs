//! The inputs' quantization to bytes with AVX2 (what [`super::super::quant::rows`] does
//! portably, the same bytes).

use std::arch::x86_64::*;

use super::super::quant::{BLOCK, SUPER};

/// 32 i32 (four vectors, in order) as 32 bytes in order, truncated (the values fit).
#[inline(always)]
unsafe fn bytes(v: [__m256i; 4], out: *mut i8) {
    // The packs work within 128-bit lanes: [v0 lo, v1 lo, v2 lo, v3 lo | v0 hi, ...] by 4
    // bytes, put back in order by one permutation.
    let ab = _mm256_packs_epi32(v[0], v[1]);
    let cd = _mm256_packs_epi32(v[2], v[3]);
    let all = _mm256_packs_epi16(ab, cd);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(out as *mut __m256i, _mm256_permutevar8x32_epi32(all, order));
}

/// Whether any of `v` is infinite or NaN (`x - x` is NaN exactly there).
#[inline(always)]
unsafe fn bad(v: __m256) -> bool {
    let z = _mm256_sub_ps(v, v);
    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(z, z)) != 0
}

/// `|v|`.
#[inline(always)]
unsafe fn abs(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// The largest of `v`'s lanes.
#[inline(always)]
unsafe fn reduce_max(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// [`super::super::quant::rows::quantize_block`] with AVX2: the same rounding (to nearest, ties to
/// even, the default MXCSR mode) and the same `1 / d`, so the same bytes.
///
/// # Safety
/// The CPU must have what [`super::available`] checks; `x` and `q` hold 32 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == BLOCK && q.len() == BLOCK);
    let mut v = [_mm256_setzero_ps(); 4];
    let mut finite = true;
    for (i, v) in v.iter_mut().enumerate() {
        *v = _mm256_loadu_ps(x.as_ptr().add(8 * i));
        finite &= !bad(*v);
    }
    if !finite {
        q.fill(0);
        return f32::NAN;
    }
    let amax = reduce_max(_mm256_max_ps(
        _mm256_max_ps(abs(v[0]), abs(v[1])),
        _mm256_max_ps(abs(v[2]), abs(v[3])),
    ));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let mut n = [_mm256_setzero_si256(); 4];
    for (n, v) in n.iter_mut().zip(v) {
        *n = _mm256_cvtps_epi32(_mm256_mul_ps(v, id));
    }
    bytes(n, q.as_mut_ptr());
    d
}

/// [`super::super::quant::rows::quantize_super`] with AVX2: the same largest value, scale and
/// rounding, so the same bytes.
///
/// # Safety
/// The CPU must have what [`super::available`] checks; `x` and `q` hold 256 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_super(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == SUPER && q.len() == SUPER);
    let mut amax = _mm256_setzero_ps();
    let mut finite = true;
    for c in x.chunks_exact(8) {
        let v = _mm256_loadu_ps(c.as_ptr());
        finite &= !bad(v);
        amax = _mm256_max_ps(amax, abs(v));
    }
    if !finite {
        q.fill(0);
        return f32::NAN;
    }
    let amax = reduce_max(amax);
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    // The first value of that magnitude, with its sign.
    let top = _mm256_set1_ps(amax);
    let mut max = amax;
    for (i, c) in x.chunks_exact(8).enumerate() {
        let hit = _mm256_cmp_ps::<_CMP_EQ_OQ>(abs(_mm256_loadu_ps(c.as_ptr())), top);
        let hit = _mm256_movemask_ps(hit);
        if hit != 0 {
            max = x[i * 8 + hit.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0 / max;
    let is = _mm256_set1_ps(iscale);
    let cap = _mm256_set1_epi32(127);
    for (c, o) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)) {
        let mut n = [_mm256_setzero_si256(); 4];
        for (i, n) in n.iter_mut().enumerate() {
            let v = _mm256_loadu_ps(c.as_ptr().add(8 * i));
            *n = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v, is)), cap);
        }
        bytes(n, o.as_mut_ptr());
    }
    1.0 / iscale
}
