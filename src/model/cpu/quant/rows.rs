//! Inputs quantized to signed bytes as llama.cpp quantizes them for the same formats ([`Rows`]):
//! per block of 32 with an f16-rounded scale (its Q8_0 and Q8_1), or per super-block of 256
//! with an f32 scale (its Q8_K).

use half::f16;
use rayon::prelude::*;

use super::{Format, BLOCK, SUPER};

/// How input rows are quantized to bytes: per block of 32 with an f16-rounded scale, as
/// llama.cpp's Q8_0 and Q8_1 (for the 32-weight formats), or per 256 with an f32 scale, as its
/// Q8_K (for K-quants, whose scales then combine in integers over a whole super-block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Block,
    Super,
}

impl Scheme {
    /// Inputs per scale.
    pub const fn unit(self) -> usize {
        match self {
            Scheme::Block => BLOCK,
            Scheme::Super => SUPER,
        }
    }
}

impl Format {
    /// How this format's inputs are quantized.
    pub const fn scheme(self) -> Scheme {
        if self.k_quant() {
            Scheme::Super
        } else {
            Scheme::Block
        }
    }
}

/// Input rows quantized to bytes: `x = d * q`, one `d` per [`Scheme::unit`] inputs.
pub struct Rows {
    pub(crate) m: usize,
    /// Values per row.
    pub(crate) k: usize,
    pub(crate) scheme: Scheme,
    pub(crate) q: Vec<i8>,
    /// Per unit: `d` (f16-rounded for [`Scheme::Block`]).
    pub(crate) d: Vec<f32>,
    /// Per block of 32: the sum of its `q`.
    pub(crate) sum: Vec<i32>,
    /// Per block of 32: the sum of its first 16 `q` (Q6_K's scales change there).
    pub(crate) sum16: Vec<i32>,
    /// Per block of 32 ([`Scheme::Block`]): `d * sum`, f16-rounded as llama.cpp's Q8_1 keeps it.
    pub(crate) s: Vec<f32>,
    /// Per two blocks ([`Scheme::Super`]): their sums as two i16 in one i32 (low: the first),
    /// for `vpdpwssd` against the K-quants' minimums.
    pub(crate) pairs: Vec<i32>,
    /// `q` regrouped for tiles of 16 rows ([`Rows::tile`]): per group of 16 rows, per 64
    /// inputs, 16 x 64 bytes; empty until asked for.
    pub(crate) tiled: Vec<i8>,
}

impl Rows {
    /// Quantizes `m` rows of `k` values (row-major). `k` must be a multiple of the scheme's
    /// unit. `simd`: use the widest vectors this CPU has (AVX-512 or AVX2: the same bytes,
    /// faster).
    pub fn quantize(x: &[f32], k: usize, scheme: Scheme, simd: bool) -> Self {
        let isa = if simd { Isa::detect() } else { Isa::Portable };
        let unit = scheme.unit();
        assert!(
            k.is_multiple_of(unit) && x.len().is_multiple_of(k),
            "quantized rows: bad shape"
        );
        let m = x.len() / k;
        let nb = m * k / BLOCK;
        let mut rows = Self {
            m,
            k,
            scheme,
            q: vec![0; m * k],
            d: vec![0.0; m * k / unit],
            sum: vec![0; nb],
            sum16: vec![0; nb],
            s: Vec::new(),
            pairs: Vec::new(),
            tiled: Vec::new(),
        };
        const CHUNK: usize = 8 * SUPER;
        let parts = rows
            .q
            .par_chunks_mut(CHUNK)
            .zip(rows.d.par_chunks_mut(CHUNK / unit))
            .zip(rows.sum.par_chunks_mut(CHUNK / BLOCK))
            .zip(rows.sum16.par_chunks_mut(CHUNK / BLOCK))
            .zip(x.par_chunks(CHUNK));
        parts.for_each(|((((q, d), sum), sum16), x)| {
            for ((xu, qu), du) in x.chunks_exact(unit).zip(q.chunks_exact_mut(unit)).zip(d) {
                *du = quantize_unit(scheme, xu, qu, isa);
            }
            for ((qb, s), s16) in q.chunks_exact(BLOCK).zip(sum).zip(sum16) {
                *s = qb.iter().map(|&v| v as i32).sum();
                *s16 = qb[..16].iter().map(|&v| v as i32).sum();
            }
        });
        match scheme {
            Scheme::Block => {
                let f16 = |v: f32| f16::from_f32(v).to_f32();
                for d in &mut rows.d {
                    *d = f16(*d);
                }
                rows.s = rows
                    .d
                    .iter()
                    .zip(&rows.sum)
                    .map(|(&d, &sum)| f16(d * sum as f32))
                    .collect();
            }
            Scheme::Super => {
                rows.pairs = rows
                    .sum
                    .chunks_exact(2)
                    .map(|s| (s[0] as i16 as u16 as i32) | (s[1] << 16))
                    .collect();
            }
        }
        rows
    }

    /// Fills [`Rows::tiled`]: whole groups of 16 rows, each 64 inputs' 16 x 64 bytes together
    /// (zero past the end of a row), so a tile of inputs is one contiguous 1 KB load.
    pub(crate) fn tile(&mut self) {
        let k = self.k;
        let steps = k.div_ceil(STEP);
        let groups = self.m / 16;
        let mut tiled = vec![0i8; groups * steps * 16 * STEP];
        for g in 0..groups {
            for t in 0..steps {
                let len = (k - t * STEP).min(STEP);
                for r in 0..16 {
                    let src = &self.q[(g * 16 + r) * k + t * STEP..][..len];
                    tiled[((g * steps + t) * 16 + r) * STEP..][..len].copy_from_slice(src);
                }
            }
        }
        self.tiled = tiled;
    }
}

/// Inputs per row of a tile of inputs ([`Rows::tile`]).
pub const STEP: usize = 64;

/// The instructions [`quantize_unit`] runs: the bytes are the same whichever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    /// The widest this CPU has.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if crate::model::cpu::avx2::available() {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }
}

/// One unit of `scheme` ([`quantize_block`] or [`quantize_super`]) with `isa`; returns `d`.
fn quantize_unit(scheme: Scheme, x: &[f32], q: &mut [i8], isa: Isa) -> f32 {
    use crate::model::cpu as isas;
    // SAFETY: `Isa::detect` picked an instruction set this CPU has.
    unsafe {
        match (isa, scheme) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Scheme::Block) => isas::avx512::quantize_block(x, q),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Scheme::Super) => isas::avx512::quantize_super(x, q),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Scheme::Block) => isas::avx2::quantize_block(x, q),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, Scheme::Super) => isas::avx2::quantize_super(x, q),
            (Isa::Portable, Scheme::Block) => quantize_block(x, q),
            (Isa::Portable, Scheme::Super) => quantize_super(x, q),
        }
    }
}

/// One block of 32 values to bytes, rounding to nearest (ties to even); returns `d`.
pub(crate) fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    if x.iter().any(|v| !v.is_finite()) {
        // Overflowed activations stay visible: every output of the block becomes NaN.
        q.fill(0);
        return f32::NAN;
    }
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (o, &v) in q.iter_mut().zip(x) {
        *o = (v * id).round_ties_even() as i32 as i8;
    }
    d
}

/// 256 values to bytes as llama.cpp's Q8_K does: the value of largest magnitude (the first
/// such) maps to -127, `q = min(127, round(x * -127 / max))` with ties to even, `d = 1 / scale`
/// in f32; returns `d`.
pub(crate) fn quantize_super(x: &[f32], q: &mut [i8]) -> f32 {
    if x.iter().any(|v| !v.is_finite()) {
        q.fill(0);
        return f32::NAN;
    }
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (o, &v) in q.iter_mut().zip(x) {
        *o = ((iscale * v).round_ties_even() as i32).min(127) as i8;
    }
    1.0 / iscale
}
