//! Small vector helpers shared by the CPU kernels: e^x and the SwiGLU gate.

/// `gate <- silu(gate) * up`, element by element (the feed-forward gate of Llama), in place
/// (a fresh output cost a zeroed allocation per layer), with AVX-512 where the CPU has it and
/// `simd` allows it.
pub fn silu_mul(gate: &mut [f32], up: &[f32], simd: bool) {
    assert_eq!(gate.len(), up.len());
    #[cfg(target_arch = "x86_64")]
    if simd && std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F; the slices have the same length.
        unsafe { x86::silu_mul(gate, up) };
        return;
    }
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// [`super::silu_mul`] 16 at a time, the tail padded.
    ///
    /// # Safety
    /// AVX-512 F; `gate` and `up` of one length.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn silu_mul(gate: &mut [f32], up: &[f32]) {
        // A function rather than a closure: closures do not inherit target features.
        #[inline(always)]
        unsafe fn f(g: __m512, u: __m512) -> __m512 {
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
            _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0), e)), u)
        }
        let n = gate.len() / 16 * 16;
        for i in (0..n).step_by(16) {
            let v = f(
                _mm512_loadu_ps(gate.as_ptr().add(i)),
                _mm512_loadu_ps(up.as_ptr().add(i)),
            );
            _mm512_storeu_ps(gate.as_mut_ptr().add(i), v);
        }
        if n < gate.len() {
            let (mut g, mut u) = ([0f32; 16], [0f32; 16]);
            let rest = gate.len() - n;
            g[..rest].copy_from_slice(&gate[n..]);
            u[..rest].copy_from_slice(&up[n..]);
            let v = f(_mm512_loadu_ps(g.as_ptr()), _mm512_loadu_ps(u.as_ptr()));
            _mm512_storeu_ps(g.as_mut_ptr(), v);
            gate[n..].copy_from_slice(&g[..rest]);
        }
    }

    /// `x <- exp(x - max)` in place, 16 at a time (the tail padded), same result per element
    /// whatever its index.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_shifted(x: &mut [f32], max: f32) {
        let m = _mm512_set1_ps(max);
        let mut chunks = x.chunks_exact_mut(16);
        for c in &mut chunks {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), m));
            _mm512_storeu_ps(c.as_mut_ptr(), e);
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut buf = [0f32; 16];
            buf[..rest.len()].copy_from_slice(rest);
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(buf.as_ptr()), m));
            _mm512_storeu_ps(buf.as_mut_ptr(), e);
            rest.copy_from_slice(&buf[..rest.len()]);
        }
    }

    /// e^x as 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2, p a degree-7 polynomial (within
    /// about 1e-7, as libm's expf); below -87 (and for -inf) the result is e^-87, about 1e-38;
    /// above 88 it is infinite.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        // r = x - n ln2, in two steps for precision (Cody-Waite).
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn silu_mul_matches_the_formula() {
        let gate: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.7).collect();
        let up: Vec<f32> = (0..37).map(|i| 1.0 + i as f32 * 0.1).collect();
        let mut got = gate.clone();
        super::silu_mul(&mut got, &up, true);
        for ((g, u), o) in gate.iter().zip(&up).zip(&got) {
            let want = (*g as f64) / (1.0 + (-*g as f64).exp()) * *u as f64;
            assert!(
                (*o as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{g}: {o} vs {want}"
            );
        }
    }
}
