//! personas' CPU kernels alone, on the projection shapes of Llama 3.2 1B (hidden 2048, feed-
//! forward 8192, 8 key-value heads of 64): one input row (decode, chat: memory-bound, reported
//! as bytes of weights read per second), 16 rows (batched decode of 16 sequences) and 128 rows
//! (prefill, surveys: compute-bound; both reported as multiply-adds per second), for each packed
//! format and each kernel this CPU has; then the half-precision kernels (BF16, F16) likewise.
//!
//!     [KERNEL_ROWS=1,16,128] cargo bench --bench kernels [-- FILTER]     e.g. -- 'Q4K/avx512'

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use personas::model::cpu::{gemm, half, Format, Half, HalfKind, Kernels, Packed};

/// (name, outputs, inputs) of the 1B model's projections: Q/K/V side by side, gate/up side by
/// side, down, and the output head (the test model's vocabulary): 50-80 MB, more than most
/// CPUs' last-level cache, so one row of it is read from memory as in decode.
const SHAPES: [(&str, usize, usize); 4] = [
    ("qkv", 2048 + 2 * 512, 2048),
    ("gate_up", 2 * 8192, 2048),
    ("down", 2048, 8192),
    ("head", 49152, 2048),
];

fn packed(format: Format, n: usize, k: usize) -> Packed {
    let mut state = 7u64;
    let vals: Vec<f32> = (0..n * k)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.04
        })
        .collect();
    let t = Tensor::from_vec(vals, (n, k), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, format.ggml()).unwrap();
    Packed::from_qtensor(&q).unwrap().unwrap()
}

/// Rows per product: KERNEL_ROWS=1,16,128 by default (e.g. KERNEL_ROWS=32,64 to find where AMX
/// overtakes VNNI).
fn rows_list() -> Vec<usize> {
    std::env::var("KERNEL_ROWS")
        .unwrap_or_else(|_| "1,16,128".into())
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .expect("KERNEL_ROWS: comma-separated row counts")
        })
        .collect()
}

fn kinds() -> Vec<Kernels> {
    [
        Kernels::Amx,
        Kernels::Avx512,
        Kernels::Avx2,
        Kernels::Portable,
    ]
    .into_iter()
    .filter(|k| k.available())
    .collect()
}

/// `rows` input rows of `k` values.
fn inputs(rows: usize, k: usize) -> Vec<f32> {
    (0..rows * k)
        .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
        .collect()
}

/// Bytes per second for one row (memory-bound), multiply-adds per second for more.
fn throughput(rows: usize, n: usize, k: usize, bytes: usize) -> Throughput {
    if rows == 1 {
        Throughput::Bytes(bytes as u64)
    } else {
        Throughput::Elements((rows * n * k) as u64)
    }
}

fn kernels(c: &mut Criterion) {
    let (rows_list, kinds) = (rows_list(), kinds());
    for format in [
        Format::Q4K,
        Format::Q6K,
        Format::Q4_0,
        Format::Q8_0,
        Format::Q5K,
    ] {
        for (name, n, k) in SHAPES {
            let w = packed(format, n, k);
            for &rows in &rows_list {
                let x = inputs(rows, k);
                let mut g = c.benchmark_group(format!("{format:?}/{name}/{rows}"));
                g.sample_size(10);
                g.throughput(throughput(rows, n, k, w.bytes()));
                for &kind in &kinds {
                    if kind == Kernels::Portable && rows > 1 {
                        // minutes per sample; the portable kernel is for correctness
                        continue;
                    }
                    g.bench_with_input(BenchmarkId::from_parameter(kind), &x, |b, x| {
                        b.iter(|| gemm(&w, x, kind))
                    });
                }
                g.finish();
            }
        }
    }
}

fn half_kernels(c: &mut Criterion) {
    let (rows_list, kinds) = (rows_list(), kinds());
    for kind in [HalfKind::Bf16, HalfKind::F16] {
        for (name, n, k) in SHAPES {
            let mut state = 11u64;
            let bits = (0..n * k)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // sign, small exponents, any mantissa: weights of magnitude below 1
                    ((state >> 48) as u16 & 0x807f) | 0x3c00
                })
                .collect();
            let w = Half::new(kind, n, k, bits);
            for &rows in &rows_list {
                let x = inputs(rows, k);
                let mut g = c.benchmark_group(format!("{}/{name}/{rows}", kind.name()));
                g.sample_size(10);
                g.throughput(throughput(rows, n, k, w.bytes()));
                for &kernels in &kinds {
                    if kernels == Kernels::Portable && rows > 1 {
                        continue;
                    }
                    g.bench_with_input(BenchmarkId::from_parameter(kernels), &x, |b, x| {
                        b.iter(|| half::gemm(&w, x, kernels))
                    });
                }
                g.finish();
            }
        }
    }
}

/// Attention alone at the 1B model's heads (32 query heads over 8 key-value heads of 64):
/// `rows` sequences decoding one token each over `ctx` cached positions (batched decode,
/// surveys' answers), and one sequence prefilling 128 tokens; reported as score and value
/// multiply-adds per second.
fn attention(c: &mut Criterion) {
    use personas::model::cpu::attention::{attend, simd_available, Dims, Run};
    let (heads, kv_heads, hd) = (32, 8, 64);
    // 16 x 1024 positions: keys and values (67 MB) far beyond the caches, as in a real step
    // whose layers each read their own.
    for (rows, seq, ctx) in [(16, 1, 128), (16, 1, 512), (16, 1, 1024), (1, 128, 128)] {
        let start = ctx - seq;
        let capacity = ctx;
        let values = |seed: usize| -> Vec<f32> {
            (0..rows * kv_heads * capacity * hd)
                .map(|i| (((i + seed) % 89) as f32 - 44.0) / 60.0)
                .collect()
        };
        let (keys, vals) = (values(0), values(7));
        let q = inputs(rows * heads * seq, hd);
        let stride = capacity * hd;
        let runs: Vec<Vec<Run>> = (0..rows)
            .map(|b| {
                let at = b * kv_heads * stride;
                vec![Run {
                    k: keys[at..].as_ptr(),
                    v: vals[at..].as_ptr(),
                    head_stride: stride,
                    len: ctx,
                }]
            })
            .collect();
        let hidden = vec![vec![false; ctx]; rows];
        let d = Dims {
            batch: rows,
            seq,
            heads,
            kv_heads,
            head_dim: hd,
            start,
        };
        let mut g = c.benchmark_group(format!("attention/{rows}x{seq}/{ctx}"));
        g.sample_size(10);
        // Scores and weighted values of every query against every position it sees.
        let seen: usize = (0..seq).map(|i| start + i + 1).sum();
        g.throughput(Throughput::Elements((2 * rows * heads * seen * hd) as u64));
        for simd in [true, false] {
            if simd && !simd_available() {
                continue;
            }
            let name = if simd { "avx512" } else { "portable" };
            // SAFETY: the runs point at `ctx` positions of every head in `keys` and `vals`, alive here.
            g.bench_function(name, |b| {
                b.iter(|| unsafe { attend(&q, &runs, &hidden, d, simd) })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, kernels, half_kernels, attention);
criterion_main!(benches);
