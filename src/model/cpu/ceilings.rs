//! What this CPU can do at most, measured: integer and f32 multiply-adds per second on every
//! thread of the pool, and the memory's read bandwidth. `personas bench --ceilings` puts the
//! kernels' figures against them (a prefill is bound by multiply-adds, decoding one sequence by
//! reading every weight once a token).
//!
//! Each peak is one instruction in 12 independent chains (more than its latency times its
//! throughput on current cores), run on all threads at once: `vpdpbusd` (64 byte products into
//! 16 sums) where the CPU has AVX-512 VNNI, else `vpmaddubsw` (32 products, AVX2); f32 fused
//! multiply-adds on the widest vectors. Bandwidth is the best of a few passes summing a buffer
//! far larger than the caches, split between the threads.

use std::time::Instant;

use serde::Serialize;

use super::pages::Pages;

/// This CPU's measured ceilings.
#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    /// Threads that ran at once (rayon's pool).
    pub threads: usize,
    /// Byte multiply-adds per second, and the instruction measured; `None` without AVX2.
    pub int8_macs_per_s: Option<f64>,
    pub int8_instruction: Option<&'static str>,
    /// f32 fused multiply-adds per second (scalar `mul_add` without FMA vectors).
    pub f32_fmas_per_s: f64,
    /// Bytes read from memory per second.
    pub read_bytes_per_s: f64,
}

/// Measures all three (about a second).
pub fn measure() -> Ceilings {
    let (int8_instruction, int8_macs_per_s) = match int8_peak() {
        Some((name, rate)) => (Some(name), Some(rate)),
        None => (None, None),
    };
    Ceilings {
        threads: rayon::current_num_threads(),
        int8_macs_per_s,
        int8_instruction,
        f32_fmas_per_s: f32_peak(),
        read_bytes_per_s: read_bandwidth(256 << 20),
    }
}

/// Independent chains per thread.
const CHAINS: usize = 12;

/// Operations per second of `pass(iters)` (which does `per_iter` operations an iteration) on
/// every thread at once: the best of three timings of a pass long enough to time.
fn on_all_threads(per_iter: f64, pass: impl Fn(usize) -> u64 + Sync) -> f64 {
    // Warm up (and find a pass of about 50 ms on one thread).
    let mut iters = 1 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(pass(iters));
        if t.elapsed().as_secs_f64() > 0.02 || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    let iters = iters * 2;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        rayon::broadcast(|_| std::hint::black_box(pass(iters)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    per_iter * iters as f64 * rayon::current_num_threads() as f64 / best
}

/// The byte multiply-add peak: the instruction and its rate, or `None` without AVX2.
pub fn int8_peak() -> Option<(&'static str, f64)> {
    #[cfg(target_arch = "x86_64")]
    {
        if super::avx512::available() {
            // SAFETY: AVX-512 VNNI checked just above.
            let rate = on_all_threads((CHAINS * 64) as f64, |n| unsafe { x86::vnni(n) });
            return Some(("vpdpbusd zmm", rate));
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 checked just above.
            let rate = on_all_threads((CHAINS * 32) as f64, |n| unsafe { x86::maddubs(n) });
            return Some(("vpmaddubsw ymm", rate));
        }
    }
    None
}

/// The f32 fused multiply-add peak on the widest vectors this CPU has.
pub fn f32_peak() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F checked just above.
            return on_all_threads((CHAINS * 16) as f64, |n| unsafe { x86::fma512(n) });
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: FMA checked just above.
            return on_all_threads((CHAINS * 8) as f64, |n| unsafe { x86::fma256(n) });
        }
    }
    on_all_threads(CHAINS as f64, scalar_fma)
}

fn scalar_fma(iters: usize) -> u64 {
    let a = std::hint::black_box(0.999_f32);
    let mut acc = [1f32; CHAINS];
    for _ in 0..iters {
        for x in &mut acc {
            *x = x.mul_add(a, 0.5);
        }
    }
    acc.iter().sum::<f32>() as u64
}

/// Bytes per second summing `bytes` of memory (on huge pages where Linux gives them, as the
/// weights are), the threads each reading their own part: the best of five passes.
pub fn read_bandwidth(bytes: usize) -> f64 {
    let threads = rayon::current_num_threads();
    let words = bytes / 8 / (threads * 64) * (threads * 64);
    let buf: Pages<u64> = (0..words as u64).collect::<Vec<_>>().into();
    let part = words / threads;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        rayon::broadcast(|ctx| {
            let mine = &buf[ctx.index() * part..][..part];
            // Eight sums, so the loads do not wait on one addition chain.
            let mut acc = [0u64; 8];
            for c in mine.chunks_exact(8) {
                for (a, &x) in acc.iter_mut().zip(c) {
                    *a = a.wrapping_add(x);
                }
            }
            std::hint::black_box(acc);
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    (part * threads * 8) as f64 / best
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::CHAINS;

    /// `$name(iters)`: `iters` rounds of `$op` on each of [`CHAINS`] independent registers.
    macro_rules! peak {
        ($name:ident, $features:literal, $init:expr, |$x:ident, $a:ident| $op:expr) => {
            /// # Safety
            /// The CPU has the target features this function enables.
            #[target_feature(enable = $features)]
            pub unsafe fn $name(iters: usize) -> u64 {
                let $a = std::hint::black_box($init);
                let mut acc = [$a; CHAINS];
                for _ in 0..iters {
                    for $x in &mut acc {
                        *$x = $op;
                    }
                }
                std::hint::black_box(acc);
                0
            }
        };
    }

    peak!(vnni, "avx512f,avx512vnni", _mm512_set1_epi8(1), |x, a| {
        _mm512_dpbusd_epi32(*x, a, a)
    });
    peak!(maddubs, "avx2", _mm256_set1_epi8(1), |x, a| {
        _mm256_maddubs_epi16(*x, a)
    });
    // x * 0.5 + 0.5 settles at 1: no subnormals, no infinities.
    peak!(fma512, "avx512f", _mm512_set1_ps(0.5), |x, a| {
        _mm512_fmadd_ps(*x, a, a)
    });
    peak!(fma256, "avx2,fma", _mm256_set1_ps(0.5), |x, a| {
        _mm256_fmadd_ps(*x, a, a)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_positive_and_finite() {
        let rate = f32_peak();
        assert!(rate.is_finite() && rate > 1e6, "f32 peak {rate}");
        let read = read_bandwidth(16 << 20);
        assert!(read.is_finite() && read > 1e6, "read {read}");
        if let Some((name, rate)) = int8_peak() {
            assert!(rate.is_finite() && rate > 1e6, "{name}: {rate}");
        }
    }
}
