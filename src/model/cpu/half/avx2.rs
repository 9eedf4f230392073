//! [`super::gemm`] with AVX2 and FMA: the 16 lanes of a dot product in two registers (inputs
//! `j % 16` below 8 in the first), tiles of 2 rows by 2 columns so that the 8 sums, the widened
//! weights and an input pair stay within the 16 registers.

use std::arch::x86_64::*;

use super::tiles::{half_tiles, Lanes};
use super::Half;

/// Whether this CPU has what [`columns`] uses.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
}

half_tiles!(Ymm2, "avx2,fma,f16c", 2, 2);

/// Lanes 0-7 and 8-15.
#[derive(Clone, Copy)]
struct Ymm2([__m256; 2]);

/// 8 weights from `p`, widened to f32.
#[inline(always)]
unsafe fn widen8<const BF16: bool>(p: *const u16) -> __m256 {
    let h = _mm_loadu_si128(p as *const __m128i);
    if BF16 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    } else {
        _mm256_cvtph_ps(h)
    }
}

/// Eight lanes already holding `l + (l + 8)`, added on in the order of [`super::reduce`].
#[inline(always)]
pub(super) unsafe fn reduce8(half: __m256) -> f32 {
    let quarter = _mm_add_ps(
        _mm256_castps256_ps128(half),
        _mm256_extractf128_ps::<1>(half),
    );
    let pairs = _mm_add_ps(quarter, _mm_movehl_ps(quarter, quarter));
    _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps::<1>(pairs, pairs)))
}

impl Lanes for Ymm2 {
    #[inline(always)]
    unsafe fn zero() -> Self {
        Ymm2([_mm256_setzero_ps(); 2])
    }

    #[inline(always)]
    unsafe fn weights<const BF16: bool>(p: *const u16) -> Self {
        Ymm2([widen8::<BF16>(p), widen8::<BF16>(p.add(8))])
    }

    #[inline(always)]
    unsafe fn inputs(p: *const f32) -> Self {
        Ymm2([_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))])
    }

    #[inline(always)]
    unsafe fn fma(self, w: Self, x: Self) -> Self {
        Ymm2([
            _mm256_fmadd_ps(w.0[0], x.0[0], self.0[0]),
            _mm256_fmadd_ps(w.0[1], x.0[1], self.0[1]),
        ])
    }

    #[inline(always)]
    unsafe fn reduce(self) -> f32 {
        reduce8(_mm256_add_ps(self.0[0], self.0[1]))
    }
}
