//! Dense f32 matrix products through OpenBLAS (`sgemm`), when the build found it (see
//! `build.rs`). On this project's 2-core AVX-512 machines it reaches 170-200 GFLOP/s from 64
//! rows up, where candle's gemm gives 70-90; single rows gain too (13 against 5).

use std::os::raw::c_int;
use std::sync::Once;

use candle_core::{Device, Storage, Tensor};
use rayon::prelude::*;

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

#[link(name = "openblas")]
extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(n: c_int);
}

/// Whether personas was built with OpenBLAS.
pub const ENABLED: bool = true;

/// `xs (.., k) x w(n, k)^T -> (.., n)`, or `None` when this path does not apply (not on the
/// CPU, or not f32), in which case the caller uses candle's matmul. Fewer than `min_rows` rows
/// are padded with zeros to that many: OpenBLAS takes other kernels for one row and for a few
/// rows than for 16 and more, whose sums round differently, so padding makes a row's result
/// independent of how many rows share the call.
pub fn matmul_t(xs: &Tensor, w: &Tensor, min_rows: usize) -> candle_core::Result<Option<Tensor>> {
    if !matches!(xs.device(), Device::Cpu) || xs.dtype() != candle_core::DType::F32 {
        return Ok(None);
    }
    static THREADS: Once = Once::new();
    THREADS.call_once(|| {
        // OpenBLAS's own threads spin (sched_yield) between calls and steal the cores from the
        // rayon pool that runs everything else; one thread per call, split over rayon instead.
        // SAFETY: sets OpenBLAS's thread count once, before any product runs.
        unsafe { openblas_set_num_threads(1) }
    });
    let (n, k) = w.dims2()?;
    let dims = xs.dims();
    if dims.last() != Some(&k) || !w.is_contiguous() {
        return Ok(None);
    }
    let rows = xs.elem_count() / k;
    let m = rows.max(min_rows);
    let xs = xs.contiguous()?;
    let mut a = super::tensor::with_cpu_f32(&xs, <[f32]>::to_vec)?;
    a.resize(m * k, 0.0);
    let (w_storage, w_layout) = w.storage_and_layout();
    let Storage::Cpu(w_cpu) = &*w_storage else {
        return Ok(None);
    };
    let b = &w_cpu.as_slice::<f32>()?[w_layout.start_offset()..w_layout.start_offset() + n * k];
    let mut c = vec![0f32; m * n];
    // Each task computes a block of output columns: C[:, j0..j1] = A x W[j0..j1]^T.
    let tasks = candle_core::utils::get_num_threads().clamp(1, n.div_ceil(64).max(1));
    let step = n.div_ceil(tasks);
    let c_addr = c.as_mut_ptr() as usize;
    let (a_ptr, b_ptr) = (a.as_ptr() as usize, b.as_ptr() as usize);
    (0..tasks).into_par_iter().for_each(|t| {
        let j0 = t * step;
        let cols = step.min(n.saturating_sub(j0));
        if cols == 0 {
            return;
        }
        // SAFETY: A is m x k, W is n x k and C is m x n, row-major, contiguous and alive for
        // the whole parallel section; block t reads W rows j0..j0+cols and writes only C's
        // columns j0..j0+cols (leading dimension n), disjoint from every other block.
        unsafe {
            cblas_sgemm(
                ROW_MAJOR,
                NO_TRANS,
                TRANS,
                m as c_int,
                cols as c_int,
                k as c_int,
                1.0,
                a_ptr as *const f32,
                k as c_int,
                (b_ptr as *const f32).add(j0 * k),
                k as c_int,
                0.0,
                (c_addr as *mut f32).add(j0),
                n as c_int,
            );
        }
    });
    c.truncate(rows * n);
    let mut out_dims = dims.to_vec();
    *out_dims.last_mut().expect("at least one dim") = n;
    Tensor::from_vec(c, out_dims, xs.device()).map(Some)
}
