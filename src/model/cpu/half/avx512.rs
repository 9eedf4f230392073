//! [`super::gemm`] with AVX-512: the 16 lanes of a dot product in one register, tiles of 4 rows
//! by 4 columns (16 sums, 4 widened weight vectors, one input vector at a time).

use std::arch::x86_64::*;

use super::tiles::{half_tiles, Lanes};
use super::Half;

/// Whether this CPU has what [`columns`] uses.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

half_tiles!(Zmm, "avx512f", 4, 4);

#[derive(Clone, Copy)]
struct Zmm(__m512);

impl Lanes for Zmm {
    #[inline(always)]
    unsafe fn zero() -> Self {
        Zmm(_mm512_setzero_ps())
    }

    #[inline(always)]
    unsafe fn weights<const BF16: bool>(p: *const u16) -> Self {
        let h = _mm256_loadu_si256(p as *const __m256i);
        Zmm(if BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_cvtph_ps(h)
        })
    }

    #[inline(always)]
    unsafe fn inputs(p: *const f32) -> Self {
        Zmm(_mm512_loadu_ps(p))
    }

    #[inline(always)]
    unsafe fn fma(self, w: Self, x: Self) -> Self {
        Zmm(_mm512_fmadd_ps(w.0, x.0, self.0))
    }

    #[inline(always)]
    unsafe fn reduce(self) -> f32 {
        let lo = _mm512_castps512_ps256(self.0);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(self.0)));
        super::avx2::reduce8(_mm256_add_ps(lo, hi))
    }
}
