//! Dense half-precision weights (bf16 and f16) kept at their stored width: two bytes a weight,
//! where candle would hold an f32 copy (twice the memory, twice the bytes read per token).
//!
//! Each weight is widened to f32 exactly when used (bf16 is the top half of an f32; f16
//! converts exactly) and multiplied into the f32 inputs with fused multiply-adds. Every output
//! element is one dot product in one fixed order, whichever kernel runs and however many rows
//! the call has: input `j` goes to lane `j % 16` of 16 running sums (`lane = w * x + lane`,
//! rounded once), and the lanes are added as `(l, l + 8)`, then `(l, l + 4)`, `(l, l + 2)`,
//! `(0, 1)`. [`dot_portable`] is that order in plain Rust; the AVX-512 kernel keeps the 16
//! lanes in one register and the AVX2 kernel in two, so all three give the same bits, and a
//! row's numbers never depend on its batch neighbours.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod tiles;

use half::{bf16, f16};
use rayon::prelude::*;

use super::kernels::Kernels;

/// Lanes of the running sums of one dot product (see the module documentation).
pub const LANES: usize = 16;

/// Output columns per task handed to a thread.
const COLUMNS_PER_TASK: usize = 64;

/// How the two bytes of a weight encode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HalfKind {
    Bf16,
    F16,
}

impl HalfKind {
    /// `bits` widened to f32, exactly.
    #[inline(always)]
    pub fn widen(self, bits: u16) -> f32 {
        match self {
            HalfKind::Bf16 => bf16::from_bits(bits).to_f32(),
            HalfKind::F16 => f16::from_bits(bits).to_f32(),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HalfKind::Bf16 => "bf16",
            HalfKind::F16 => "f16",
        }
    }
}

/// A row-major (n, k) matrix of half-precision weights: `n` outputs of `k` inputs each.
pub struct Half {
    kind: HalfKind,
    n: usize,
    k: usize,
    bits: Vec<u16>,
}

impl std::fmt::Debug for Half {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Half({}, {}x{})", self.kind.name(), self.n, self.k)
    }
}

impl Half {
    /// `bits` holds `n * k` weights, row after row; `k` must be a multiple of [`LANES`].
    pub fn new(kind: HalfKind, n: usize, k: usize, bits: Vec<u16>) -> Self {
        assert_eq!(bits.len(), n * k, "{n} x {k} weights");
        assert!(k.is_multiple_of(LANES), "inputs a multiple of {LANES}");
        Self { kind, n, k, bits }
    }

    /// Whether a matrix of `k` inputs can be kept as [`Half`].
    pub fn fits(k: usize) -> bool {
        k > 0 && k.is_multiple_of(LANES)
    }

    /// An (n, k) matrix of little-endian two-byte weights at byte `start` of `file`, read
    /// straight into place (no second copy of it is ever held).
    pub fn read(
        kind: HalfKind,
        n: usize,
        k: usize,
        file: &mut std::fs::File,
        start: u64,
    ) -> std::io::Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        let mut bits = vec![0u16; n * k];
        // SAFETY: u16 has no invalid bit patterns; the byte view covers exactly `bits`.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(bits.as_mut_ptr() as *mut u8, bits.len() * 2) };
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(bytes)?;
        if cfg!(target_endian = "big") {
            bits.iter_mut().for_each(|b| *b = u16::from_le(*b));
        }
        Ok(Self::new(kind, n, k, bits))
    }

    pub fn kind(&self) -> HalfKind {
        self.kind
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn bytes(&self) -> usize {
        self.bits.len() * 2
    }

    /// Output `i`'s weights, widened to f32 (an embedding lookup).
    pub fn row(&self, i: usize) -> impl Iterator<Item = f32> + '_ {
        self.row_bits(i).iter().map(|&b| self.kind.widen(b))
    }

    fn bits(&self) -> &[u16] {
        &self.bits
    }

    /// Output `i`'s weights as stored.
    fn row_bits(&self, i: usize) -> &[u16] {
        &self.bits[i * self.k..(i + 1) * self.k]
    }
}

/// One dot product of `k` half weights and `k` inputs in the order of the module
/// documentation.
pub fn dot_portable(kind: HalfKind, w: &[u16], x: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    for (w, x) in w.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for l in 0..LANES {
            lanes[l] = kind.widen(w[l]).mul_add(x[l], lanes[l]);
        }
    }
    reduce(lanes)
}

/// The 16 lanes added in the fixed order of the module documentation.
#[inline(always)]
pub fn reduce(lanes: [f32; LANES]) -> f32 {
    let mut half = [0f32; 8];
    for l in 0..8 {
        half[l] = lanes[l] + lanes[l + 8];
    }
    let mut quarter = [0f32; 4];
    for l in 0..4 {
        quarter[l] = half[l] + half[l + 4];
    }
    (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
}

/// `x (m, k) * w^T -> (m, n)` row-major, through `kernels`' instruction set (AVX-512 for
/// `amx` and `avx512`, AVX2 for `avx2`, plain Rust otherwise); the same bits whichever.
pub fn gemm(w: &Half, x: &[f32], kernels: Kernels) -> Vec<f32> {
    let k = w.k;
    assert!(
        x.len().is_multiple_of(k),
        "inputs of {k} values, got {}",
        x.len()
    );
    let (m, n) = (x.len() / k, w.n);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    let path = Path::for_kernels(kernels);
    let addr = out.as_mut_ptr() as usize;
    (0..n.div_ceil(COLUMNS_PER_TASK))
        .into_par_iter()
        .for_each(|task| {
            let c0 = task * COLUMNS_PER_TASK;
            let c1 = (c0 + COLUMNS_PER_TASK).min(n);
            // SAFETY: each task writes only columns c0..c1 of the (m, n) output, alive until
            // this function returns; the path's CPU features were checked by `for_kernels`.
            unsafe { path.columns(w, x, m, c0, c1, addr as *mut f32) };
        });
    out
}

/// The instruction set a [`gemm`] runs with.
#[derive(Clone, Copy)]
enum Path {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Path {
    fn for_kernels(kernels: Kernels) -> Self {
        match kernels {
            #[cfg(target_arch = "x86_64")]
            Kernels::Amx | Kernels::Avx512 if avx512::available() => Path::Avx512,
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx2 if avx2::available() => Path::Avx2,
            _ => Path::Portable,
        }
    }

    /// Columns c0..c1 of every row.
    ///
    /// # Safety
    /// `out` is the (m, n) row-major output; the CPU has the path's features.
    unsafe fn columns(self, w: &Half, x: &[f32], m: usize, c0: usize, c1: usize, out: *mut f32) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => match w.kind {
                HalfKind::Bf16 => avx512::columns::<true>(w, x, m, c0, c1, out),
                HalfKind::F16 => avx512::columns::<false>(w, x, m, c0, c1, out),
            },
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => match w.kind {
                HalfKind::Bf16 => avx2::columns::<true>(w, x, m, c0, c1, out),
                HalfKind::F16 => avx2::columns::<false>(w, x, m, c0, c1, out),
            },
            Path::Portable => {
                let (n, k) = (w.n, w.k);
                for r in 0..m {
                    let xr = &x[r * k..(r + 1) * k];
                    for c in c0..c1 {
                        *out.add(r * n + c) = dot_portable(w.kind, w.row_bits(c), xr);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights and inputs of every sign and many magnitudes, subnormal halves included.
    fn case(kind: HalfKind, n: usize, k: usize, m: usize, seed: u64) -> (Half, Vec<f32>) {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u32
        };
        let bits = (0..n * k)
            .map(|_| {
                let v = (next() % 2000) as f32 / 1000.0 - 1.0;
                let v = if next() % 50 == 0 { v * 1e-6 } else { v };
                match kind {
                    HalfKind::Bf16 => bf16::from_f32(v).to_bits(),
                    HalfKind::F16 => f16::from_f32(v).to_bits(),
                }
            })
            .collect();
        let x = (0..m * k)
            .map(|_| (next() % 20001) as f32 / 1000.0 - 10.0)
            .collect();
        (Half::new(kind, n, k, bits), x)
    }

    fn kernels_here() -> Vec<Kernels> {
        [
            Kernels::Avx512,
            Kernels::Avx2,
            Kernels::Portable,
            Kernels::Amx,
        ]
        .into_iter()
        .filter(|k| k.available())
        .collect()
    }

    /// Every path gives the portable kernel's bits, for every row count (tiles of 4 rows and
    /// their remainders) and column counts off the tile width; and the sums are right.
    #[test]
    fn every_path_gives_the_portable_bits() {
        for kind in [HalfKind::Bf16, HalfKind::F16] {
            for (n, k, m) in [
                (1, 16, 1),
                (7, 48, 3),
                (70, 64, 9),
                (131, 256, 6),
                (33, 1024, 17),
            ] {
                let (w, x) = case(kind, n, k, m, (n * 31 + k + m) as u64);
                let want = gemm(&w, &x, Kernels::Portable);
                for r in 0..m {
                    for c in 0..n {
                        let exact: f64 = w
                            .row(c)
                            .zip(&x[r * k..(r + 1) * k])
                            .map(|(a, &b)| a as f64 * b as f64)
                            .sum();
                        let scale: f64 = w
                            .row(c)
                            .zip(&x[r * k..(r + 1) * k])
                            .map(|(a, &b)| (a as f64 * b as f64).abs())
                            .sum();
                        let got = want[r * n + c] as f64;
                        assert!(
                            (got - exact).abs() <= 1e-6 * scale.max(1.0),
                            "{kind:?} {n}x{k} row {r} col {c}: {got} vs {exact}"
                        );
                    }
                }
                for kernels in kernels_here() {
                    let got = gemm(&w, &x, kernels);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{kind:?} {n}x{k}x{m}: {kernels} differs from portable"
                    );
                }
            }
        }
    }

    /// A row's outputs do not depend on the other rows of its call.
    #[test]
    fn rows_are_batch_invariant() {
        let (w, x) = case(HalfKind::Bf16, 40, 128, 11, 7);
        for kernels in kernels_here() {
            let all = gemm(&w, &x, kernels);
            for r in 0..11 {
                let one = gemm(&w, &x[r * 128..(r + 1) * 128], kernels);
                assert_eq!(one, all[r * 40..(r + 1) * 40], "{kernels} row {r}");
            }
        }
    }
}
