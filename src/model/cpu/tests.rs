//! Every packed format against candle's own dequantization, and every kernel this CPU has
//! against the portable one, bit for bit.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::quant::{gemm_portable, Format, Packed};
use super::{gemm, gemm_parts, row_chunk, Kernels, ROW_CHUNK};

fn weights(n: usize, k: usize, dtype: GgmlDType, seed: u64) -> (QTensor, Vec<f32>) {
    let mut state = seed;
    let vals: Vec<f32> = (0..n * k)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Rows of different spreads and offsets exercise scales and minimums.
            let spread = 0.05 + (i / k % 7) as f32 * 0.03;
            ((state >> 33) as f32 / (1u64 << 31) as f32 - 0.4) * spread
        })
        .collect();
    let t = Tensor::from_vec(vals, (n, k), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, dtype).unwrap();
    let deq = q
        .dequantize(&Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    (q, deq)
}

fn inputs(m: usize, k: usize) -> Vec<f32> {
    (0..m * k)
        .map(|i| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * if i % 97 == 0 { 20.0 } else { 1.0 })
        .collect()
}

fn packed(n: usize, k: usize, f: Format, seed: u64) -> (Packed, Vec<f32>) {
    let (q, deq) = weights(n, k, f.ggml(), seed);
    (
        Packed::from_qtensor(&q).unwrap().expect("format packed"),
        deq,
    )
}

/// The kernels this machine can run besides the portable one.
fn fast_kernels() -> Vec<Kernels> {
    let fast: Vec<Kernels> = [Kernels::Amx, Kernels::Avx512, Kernels::Avx2]
        .into_iter()
        .filter(|k| k.available())
        .collect();
    if fast.is_empty() {
        eprintln!("note: no SIMD kernels on this CPU; only the portable kernel is checked");
    }
    fast
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn packing_keeps_every_weight_of_each_format() {
    for f in Format::ALL {
        let (p, deq) = packed(40, 512, f, 3);
        for row in 0..40 {
            for col in 0..512 {
                let (a, b) = (p.weight(row, col), deq[row * 512 + col]);
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                    "{f:?} [{row},{col}] {a} vs candle's {b}"
                );
            }
        }
        assert_eq!(
            p.row(7),
            (0..512).map(|c| p.weight(7, c)).collect::<Vec<_>>()
        );
    }
    let (q, _) = weights(4, 256, GgmlDType::Q3K, 1);
    assert!(
        Packed::from_qtensor(&q).unwrap().is_none(),
        "Q3_K is not packed"
    );
}

#[test]
fn packed_formats_take_their_stored_size() {
    for f in Format::ALL {
        let (q, _) = weights(64, 1024, f.ggml(), 5);
        let p = Packed::from_qtensor(&q).unwrap().unwrap();
        let stored = q.data().unwrap().len();
        // The integers and f16 scales take what the file takes; only K-quants' 6-bit block
        // scales are kept as bytes (2.8% more for Q4_K, less for the others).
        assert!(
            p.bytes() <= stored + stored / 32,
            "{f:?}: {} bytes packed for {stored} stored",
            p.bytes()
        );
    }
}

#[test]
fn every_kernel_matches_the_portable_one_bitwise_and_the_dense_product_closely() {
    for f in Format::ALL {
        // Column counts off the 32-panel and row counts off the 4-row tile (VNNI) and the
        // 16-row tile (AMX) exercise the edges; AMX takes 32 rows and more of the 32-weight
        // formats, 16 and more of K-quants (`amx::pays`). AVX2 reads the packed nibbles
        // directly for groups of up to 2 rows (1, 2, and 16 + 2).
        let (n, k) = (72, 512);
        let (p, deq) = packed(n, k, f, 11);
        for m in [1, 2, 3, 4, 5, 13, 16, 18, 37, 48, 80] {
            let x = inputs(m, k);
            let slow = gemm_portable(&p, &x);
            for kernels in fast_kernels() {
                let fast = gemm(&p, &x, kernels);
                assert_eq!(bits(&fast), bits(&slow), "{f:?} {kernels} m={m}");
            }
            for r in 0..m {
                for c in 0..n {
                    let exact: f32 = (0..k).map(|i| x[r * k + i] * deq[c * k + i]).sum();
                    let scale: f32 = (0..k).map(|i| (x[r * k + i] * deq[c * k + i]).abs()).sum();
                    let err = (slow[r * n + c] - exact).abs();
                    assert!(
                        err <= 0.02 * scale + 1e-5,
                        "{f:?} [{r},{c}] {} vs {exact}",
                        slow[r * n + c]
                    );
                }
            }
        }
    }
}

#[test]
fn non_finite_inputs_give_nan_not_numbers() {
    let (p, _) = packed(32, 256, Format::Q4K, 9);
    let mut x = inputs(2, 256);
    x[300] = f32::INFINITY; // row 1, second block
    let mut outs = vec![gemm_portable(&p, &x)];
    outs.extend(fast_kernels().into_iter().map(|k| gemm(&p, &x, k)));
    for out in outs {
        assert!(
            out[..32].iter().all(|v| v.is_finite()),
            "row 0 is untouched"
        );
        assert!(
            out[32..].iter().all(|v| v.is_nan()),
            "row 1 shows the overflow"
        );
    }
}

#[test]
fn parts_computed_together_give_each_part_its_own_product() {
    // Q4_K_M mixes formats within a group (V is Q6_K where Q and K are Q4_K).
    let (a, _) = packed(64, 256, Format::Q4K, 21);
    let (b, _) = packed(40, 256, Format::Q6K, 22);
    let (c, _) = packed(8, 256, Format::Q8_0, 23);
    let x = inputs(3, 256);
    for kernels in [Kernels::Portable].into_iter().chain(fast_kernels()) {
        let outs = gemm_parts(&[&a, &b, &c], &x, kernels);
        assert_eq!(outs.len(), 3);
        for (out, w) in outs.iter().zip([&a, &b, &c]) {
            assert_eq!(
                bits(out),
                bits(&gemm(w, &x, kernels)),
                "{kernels} {:?}",
                w.format()
            );
        }
    }
}

#[test]
fn a_row_gets_the_same_bits_alone_or_among_others() {
    for f in [Format::Q4_1, Format::Q4K, Format::Q6K, Format::Q8_0] {
        let (p, _) = packed(64, 256, f, 5);
        // 72 rows: AMX takes 64 of them in tiles, VNNI the rest and every row alone.
        let x = inputs(72, 256);
        for kernels in [Kernels::Portable].into_iter().chain(fast_kernels()) {
            let all = gemm(&p, &x, kernels);
            for r in 0..72 {
                let one = gemm(&p, &x[r * 256..(r + 1) * 256], kernels);
                assert_eq!(
                    bits(&one),
                    bits(&all[r * 64..(r + 1) * 64]),
                    "{f:?} {kernels} row {r}"
                );
            }
        }
    }
}

#[test]
fn super_blocks_are_quantized_as_llamacpp_q8_k() {
    use super::quant::rows::quantize_super;
    // The first value of largest magnitude sets the scale with its sign (-127 / -127 = 1 here):
    // it maps to -127, the later +127 to +127, and halves round to even.
    let mut x = vec![0.5f32; 256];
    x[5] = -127.0;
    x[100] = 127.0;
    x[7] = 2.5;
    x[8] = -3.5;
    let mut q = vec![0i8; 256];
    let d = quantize_super(&x, &mut q);
    assert_eq!(d, 1.0);
    assert_eq!((q[5], q[100], q[0], q[7], q[8]), (-127, 127, 0, 2, -4));
    (x[5], x[100], x[7], x[8]) = (-2.0, 2.0, 0.5, 0.5);
    let d = quantize_super(&x, &mut q);
    assert_eq!(d, 1.0 / (-127.0f32 / -2.0));
    assert_eq!((q[5], q[100], q[0]), (-127, 127, 32));
    // All zeros: scale 0, bytes 0.
    let d = quantize_super(&[0.0; 256], &mut q);
    assert_eq!((d, q.iter().all(|&v| v == 0)), (0.0, true));
}

/// Every vector quantizer this CPU runs gives the portable bytes and scale, for blocks of 32
/// and super-blocks of 256: ordinary values, a tie, zeros, the largest value negative or
/// repeated, and a NaN.
#[test]
#[cfg(target_arch = "x86_64")]
fn vector_quantizers_give_the_portable_bytes() {
    use super::quant::rows::{quantize_block, quantize_super};
    type Quantizer = unsafe fn(&[f32], &mut [i8]) -> f32;
    let mut paths: Vec<(&str, Quantizer, Quantizer)> = Vec::new();
    if super::avx512::available() {
        paths.push((
            "avx512",
            super::avx512::quantize_block,
            super::avx512::quantize_super,
        ));
    }
    if super::avx2::available() {
        paths.push((
            "avx2",
            super::avx2::quantize_block,
            super::avx2::quantize_super,
        ));
    }
    assert!(!paths.is_empty(), "no vector quantizer on this CPU");
    let mut cases: Vec<Vec<f32>> = (0..20usize)
        .map(|seed| inputs(1, 256 + seed)[seed..seed + 256].to_vec())
        .collect();
    let mut special = vec![0.5f32; 256];
    (special[3], special[40], special[41]) = (-2.0, 2.0, -2.0);
    cases.push(special.clone());
    special[200] = f32::NAN;
    cases.push(special);
    cases.push(vec![0.0; 256]);
    for (name, block, sup) in paths {
        for (i, x) in cases.iter().enumerate() {
            let (mut fast, mut slow) = ([0i8; 256], [0i8; 256]);
            // SAFETY: the CPU has this path's instructions (checked above).
            let df = unsafe { sup(x, &mut fast) };
            let ds = quantize_super(x, &mut slow);
            assert_eq!(
                (df.to_bits(), fast),
                (ds.to_bits(), slow),
                "{name} super {i}"
            );
            for b in 0..8 {
                let r = b * 32..(b + 1) * 32;
                // SAFETY: as above.
                let df = unsafe { block(&x[r.clone()], &mut fast[r.clone()]) };
                let ds = quantize_block(&x[r.clone()], &mut slow[r.clone()]);
                assert_eq!(
                    (df.to_bits(), &fast[r.clone()]),
                    (ds.to_bits(), &slow[r]),
                    "{name} block {i}.{b}"
                );
            }
        }
    }
}

#[test]
fn long_calls_are_cut_into_balanced_whole_tiles_with_the_same_bits() {
    assert_eq!(row_chunk(0), 16); // a step, even with no rows
    assert_eq!(row_chunk(1), 16);
    assert_eq!(row_chunk(192), 192);
    assert_eq!(row_chunk(600), 160); // 160 x 3 + 120, not 192 x 3 + 24
    assert_eq!(row_chunk(1000), 176);
    for m in [17usize, 191, 193, 385, 600, 5000] {
        let c = row_chunk(m);
        assert!(c.is_multiple_of(16) && c <= ROW_CHUNK, "m={m}: {c}");
        assert_eq!(m.div_ceil(c), m.div_ceil(ROW_CHUNK), "m={m}: fewest chunks");
    }
    // Several chunks, the last one short, give every row the portable kernel's bits; no rows
    // give no outputs.
    for f in [Format::Q4K, Format::Q4_0] {
        let (p, _) = packed(40, 256, f, 3);
        for kernels in fast_kernels() {
            assert!(gemm(&p, &[], kernels).is_empty(), "{f:?} {kernels}");
        }
        let x = inputs(420, 256);
        let slow = gemm_portable(&p, &x);
        for kernels in fast_kernels() {
            assert_eq!(bits(&gemm(&p, &x, kernels)), bits(&slow), "{f:?} {kernels}");
        }
    }
}
