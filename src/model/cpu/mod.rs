//! personas' own CPU kernels, by weight format ([`quant`] for GGUF's blocks, [`half`] for
//! bf16/f16) and instruction set ([`amx`],
//! [`avx512`], [`avx2`]; the portable Rust of [`quant`] elsewhere), chosen at run time
//! ([`Kernels`]).
//!
//! Each instruction set is a file; a new one (NEON) is a new file and a new
//! [`Kernels`] variant. Whatever runs, results are the same bits as the portable kernel's,
//! which is what the tests check on every path this machine has.

#[cfg(target_arch = "x86_64")]
pub mod amx;
#[cfg(target_arch = "x86_64")]
pub mod attention;
#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(openblas)]
pub mod blas;
pub mod ceilings;
pub mod half;
mod kernels;
pub mod pages;
pub mod quant;
pub mod simd;
mod tensor;

use rayon::prelude::*;

pub use half::{Half, HalfKind};
pub use kernels::{KernelChoice, Kernels};
pub use quant::{Format, Packed};
pub(crate) use tensor::with_cpu_f32;

/// The BLAS library dense f32 matmuls link (`openblas (pkg-config: DIR)`), if any; see build.rs.
pub fn blas() -> Option<&'static str> {
    option_env!("PERSONAS_BLAS_LIB")
}

/// Keeps memory the forward pass frees for its next use (glibc only; once per process).
///
/// Every step allocates activations of megabytes (a 1B model's feed-forward for 360 rows is
/// 12 MB) and frees them. glibc serves blocks that large with `mmap` and returns them with
/// `munmap` on free (its threshold adapts only up to the first such block freed), so every
/// step paid page faults and zeroing for memory it had a moment before: 15% of a survey's
/// time in the kernel. Serving them from the heap (up to glibc's 32 MB cap) and trimming only
/// far above the peak keeps them mapped; resident memory stays at the run's peak.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator parameters; called before the pass runs.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
            }
        });
    }
}

/// `x (m, k) * w^T -> (m, n)` row-major through `kernels` (one of the packed kernels).
pub fn gemm(w: &Packed, x: &[f32], kernels: Kernels) -> Vec<f32> {
    gemm_parts(&[w], x, kernels).pop().expect("one part")
}

/// Rows per call of a kernel at most: chunks that keep the quantized inputs in cache.
const ROW_CHUNK: usize = 192;

/// Rows per call for `m` rows: the fewest chunks of at most [`ROW_CHUNK`], of near-equal size
/// in whole tiles of 16 rows. Cutting 600 rows as 192 x 3 + 24 left a chunk too small for
/// AMX to pay, run by VNNI at a third of the speed (8% of a survey); 160 x 3 + 120 runs all
/// of them on the tiles. Which kernel runs a row does not change its bits.
fn row_chunk(m: usize) -> usize {
    let chunks = m.div_ceil(ROW_CHUNK).max(1);
    m.div_ceil(chunks).next_multiple_of(16).clamp(16, ROW_CHUNK)
}

/// `x (m, k)` times each of `parts` (matrices that read the same input: Q, K and V; gate and
/// up), one row-major (m, n_i) output each. The input is quantized once and the panels of all
/// parts are shared out over the threads together, so a group costs one call; each output is
/// what [`gemm`] of its part alone gives, bit for bit.
pub fn gemm_parts(parts: &[&Packed], x: &[f32], kernels: Kernels) -> Vec<Vec<f32>> {
    let k = parts.first().map_or(0, |p| p.k());
    assert!(
        parts.iter().all(|p| p.k() == k),
        "side-by-side parts must share their inputs"
    );
    assert!(
        kernels.packs() && kernels.available(),
        "{kernels} kernels here"
    );
    // The inputs are quantized with the widest vectors this CPU has, whichever kernels run
    // (the same bytes); the portable kernels quantize portably, to stand alone.
    let simd = kernels != Kernels::Portable;
    // The inputs quantized once for each scheme the parts need (Q8_K for K-quants, Q8_0/Q8_1
    // for the others).
    let quantized = |scheme: quant::Scheme| {
        parts
            .iter()
            .any(|p| p.format().scheme() == scheme)
            .then(|| {
                let mut rows = quant::Rows::quantize(x, k, scheme, simd);
                let first_chunk = rows.m.min(row_chunk(rows.m));
                if parts
                    .iter()
                    .any(|p| p.format().scheme() == scheme && amx_pays(kernels, p, first_chunk))
                {
                    rows.tile();
                }
                rows
            })
    };
    let (block, sup) = (
        quantized(quant::Scheme::Block),
        quantized(quant::Scheme::Super),
    );
    let rows_for = |w: &Packed| match w.format().scheme() {
        quant::Scheme::Block => block.as_ref(),
        quant::Scheme::Super => sup.as_ref(),
    };
    let m = x.len() / k.max(1);
    // Not zeroed: every kernel stores each element of its rows and panel once (zeroing the
    // outputs first cost 6% of a prefill in memset).
    let mut outs: Vec<Vec<f32>> = parts
        .iter()
        .map(|p| Vec::with_capacity(m * p.n()))
        .collect();
    // (part, panel) pairs, shared out in chunks of about a quarter of a thread's share.
    let tasks: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| (0..p.panels()).map(move |panel| (i, panel)))
        .collect();
    let threads = rayon::current_num_threads().max(1);
    let per_task = tasks.len().div_ceil(threads * 4).max(1);
    let addrs: Vec<usize> = outs.iter_mut().map(|o| o.as_mut_ptr() as usize).collect();
    let chunk = row_chunk(m);
    for r0 in (0..m).step_by(chunk) {
        let r1 = (r0 + chunk).min(m);
        tasks.par_chunks(per_task).for_each(|chunk| {
            for &(i, panel) in chunk {
                let out = addrs[i] as *mut f32;
                // SAFETY: each task writes only the columns of its own panels of part i, in
                // rows r0..r1 of that part's (m x n_i) output, alive until this function
                // returns, so no two tasks write the same element; the kernels' CPU features
                // were checked above.
                let rows = rows_for(parts[i]).expect("quantized for its scheme");
                unsafe { kernel_panel(kernels, parts[i], rows, panel, r0, r1, out) }
            }
        });
    }
    for (out, p) in outs.iter_mut().zip(parts) {
        // SAFETY: the loop above stored all m x n elements of every part (each row chunk,
        // each panel; the kernels store whole rows of a panel's columns below n).
        unsafe { out.set_len(m * p.n()) };
    }
    outs
}

/// Whether `kernels` are AMX and `rows` rows of `w` are worth its tiles ([`amx::pays`]).
fn amx_pays(kernels: Kernels, w: &Packed, rows: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return kernels == Kernels::Amx && amx::pays(w.format(), rows);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernels, w, rows);
        false
    }
}

/// Rows r0..r1 of one panel through `kernels`.
///
/// # Safety
/// `out` points at the (m x n) row-major output of `w`; the CPU has what `kernels` need.
unsafe fn kernel_panel(
    kernels: Kernels,
    w: &Packed,
    rows: &quant::Rows,
    panel: usize,
    r0: usize,
    r1: usize,
    out: *mut f32,
) {
    debug_assert_eq!(rows.scheme, w.format().scheme());
    match kernels {
        #[cfg(target_arch = "x86_64")]
        Kernels::Amx if amx_pays(kernels, w, r1 - r0) => amx::panel(w, rows, panel, r0, r1, out),
        #[cfg(target_arch = "x86_64")]
        Kernels::Amx | Kernels::Avx512 => avx512::panel(w, rows, panel, r0, r1, out),
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 => avx2::panel(w, rows, panel, r0, r1, out),
        _ => quant::panel_portable(w, rows, panel, r0, r1, out),
    }
}

#[cfg(test)]
mod tests;
