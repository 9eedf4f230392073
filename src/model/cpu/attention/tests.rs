use super::*;

/// [`attend`] written plainly (f64 sums), for the tests.
fn attend_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    capacity: usize,
    hidden: &[Vec<bool>],
    d: Dims,
) -> Vec<f32> {
    let hd = d.head_dim;
    let group = d.heads / d.kv_heads;
    let mut out = vec![0f32; q.len()];
    for b in 0..d.batch {
        for h in 0..d.heads {
            let kv = (b * d.kv_heads + h / group) * capacity;
            for i in 0..d.seq {
                let at = d.start + i;
                if hidden[b][at] {
                    continue;
                }
                let qv = &q[((b * d.heads + h) * d.seq + i) * hd..][..hd];
                let visible: Vec<usize> = (0..=at).filter(|&j| j == at || !hidden[b][j]).collect();
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        let kj = &k[(kv + j) * hd..][..hd];
                        qv.iter().zip(kj).map(|(a, b)| (a * b) as f64).sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for c in 0..hd {
                    let val: f64 = visible
                        .iter()
                        .zip(&exps)
                        .map(|(&j, e)| e * v[(kv + j) * hd + c] as f64)
                        .sum();
                    out[((b * d.seq + i) * d.heads + h) * hd + c] = (val / sum) as f32;
                }
            }
        }
    }
    out
}

/// Runs over contiguous (batch, kv_heads, capacity, head_dim) buffers, `len` positions.
fn contiguous(k: &[f32], v: &[f32], d: Dims, capacity: usize) -> Vec<Vec<Run>> {
    let stride = capacity * d.head_dim;
    (0..d.batch)
        .map(|b| {
            let at = b * d.kv_heads * stride;
            vec![Run {
                k: k[at..].as_ptr(),
                v: v[at..].as_ptr(),
                head_stride: stride,
                len: d.start + d.seq,
            }]
        })
        .collect()
}

/// The versions of the kernel this CPU runs: the portable one always, AVX-512's where the
/// CPU has it.
fn paths() -> Vec<bool> {
    let mut paths = vec![false];
    if simd_available() {
        paths.push(true);
    } else {
        eprintln!("note: no AVX-512 on this CPU; only the portable attention is checked");
    }
    paths
}

#[allow(clippy::too_many_arguments)]
fn run(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    cap: usize,
    hidden: &[Vec<bool>],
    d: Dims,
    simd: bool,
) -> Vec<f32> {
    // SAFETY: the runs cover the buffers, alive for the call.
    unsafe { attend(q, &contiguous(k, v, d, cap), hidden, d, simd) }
}

fn data(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 2003.0 - 0.5) * 3.0)
        .collect()
}

#[test]
fn matches_the_plain_computation_with_gaps_and_causality() {
    // Every head size, query groups that the kernel scores 3 and 4 heads at a time (and sums
    // values for 4, 2 and 1 at a time), and more keys than one block of 16.
    for (head_dim, heads, start, seq) in [
        (32, 6, 9, 4),
        (64, 8, 29, 4),
        (128, 8, 29, 4),
        (128, 6, 40, 4),
        (64, 8, 37, 1),
        (64, 16, 37, 1),
    ] {
        let d = Dims {
            batch: 3,
            seq,
            heads,
            kv_heads: 2,
            head_dim,
            start,
        };
        let capacity = start + d.seq + 3;
        let q = data(d.batch * d.heads * d.seq * d.head_dim, 1);
        let k = data(d.batch * d.kv_heads * capacity * d.head_dim, 2);
        let v = data(d.batch * d.kv_heads * capacity * d.head_dim, 3);
        let mut hidden = vec![vec![false; start + d.seq]; 3];
        hidden[1][0..3].iter_mut().for_each(|h| *h = true); // left padding
        hidden[2][5..8].iter_mut().for_each(|h| *h = true); // filler after a prefix
        if seq > 1 {
            hidden[2][start + 1] = true; // a filler token among the new ones: output zero
        }
        let slow = attend_reference(&q, &k, &v, capacity, &hidden, d);
        for simd in paths() {
            let fast = run(&q, &k, &v, capacity, &hidden, d, simd);
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!(
                    (a - b).abs() < 2e-5,
                    "head {head_dim}, simd {simd}, {i}: {a} vs {b}"
                );
            }
        }
    }
}

/// A decoding step scores keys where they lie, transposing them in registers; longer tasks
/// score a transposed copy. The same multiply-adds in the same order: the same bits.
#[cfg(target_arch = "x86_64")]
#[test]
fn scoring_in_place_equals_scoring_a_transposed_copy() {
    use super::x86::{scores_in_place, scores_transposed, transposed, MAX_HEAD};
    if !simd_available() {
        return;
    }
    const V: usize = 4;
    let (hd, n) = (V * 16, 21);
    let k = data(n * hd, 5);
    let keys: Vec<(*const f32, *const f32)> = (0..n)
        .map(|j| (k[j * hd..].as_ptr(), k[j * hd..].as_ptr()))
        .collect();
    let mut qs = [[0f32; MAX_HEAD]; 3];
    for (h, q) in qs.iter_mut().enumerate() {
        q[..hd].copy_from_slice(&data(hd, 10 + h));
    }
    let width = n.div_ceil(16) * 16;
    let bits = |v: &[std::arch::x86_64::__m512; 3], take: usize| -> Vec<u32> {
        v.iter()
            .flat_map(|x| {
                let x: [f32; 16] = unsafe { std::mem::transmute(*x) };
                x[..take].iter().map(|f| f.to_bits()).collect::<Vec<_>>()
            })
            .collect()
    };
    // SAFETY: AVX-512 F checked above; every key points at `hd` floats of `k`.
    unsafe {
        let kt = transposed::<V>(&keys, width);
        for jb in (0..n).step_by(16) {
            let take = (n - jb).min(16);
            let copy = scores_transposed::<V, 3>(&kt[jb..], width, &qs);
            let next = &keys[(jb + 16).min(n)..(jb + 32).min(n)];
            let here = scores_in_place::<V, 3>(&keys[jb..jb + take], next, &qs);
            assert_eq!(bits(&copy, take), bits(&here, take), "keys from {jb}");
        }
    }
}

#[test]
fn a_row_gets_the_same_bits_whatever_its_padding() {
    let plain = Dims {
        batch: 1,
        seq: 2,
        heads: 3,
        kv_heads: 1,
        head_dim: 64,
        start: 5,
    };
    let q = data(3 * 2 * 64, 4);
    let k = data(8 * 64, 5);
    let v = data(8 * 64, 6);
    // The same keys and values behind 3 positions of padding.
    let padded = Dims { start: 8, ..plain };
    let shift = |x: &[f32]| [vec![9.0; 3 * 64], x[..7 * 64].to_vec(), vec![0.0; 64]].concat();
    let mut hidden = vec![false; 10];
    hidden[..3].iter_mut().for_each(|h| *h = true);
    for simd in paths() {
        let alone = run(&q, &k, &v, 8, &[vec![false; 7]], plain, simd);
        let behind = run(
            &q,
            &shift(&k),
            &shift(&v),
            11,
            &[hidden.clone()],
            padded,
            simd,
        );
        assert_eq!(alone, behind, "simd {simd}");
    }
}

#[test]
fn rows_reading_a_shared_prefix_match_rows_holding_a_copy() {
    // Two rows whose first 6 positions are one shared prefix, then 3 positions each.
    let d = Dims {
        batch: 2,
        seq: 2,
        heads: 8,
        kv_heads: 2,
        head_dim: 128,
        start: 7,
    };
    let (hd, cap) = (d.head_dim, 9);
    let prefix_k = data(d.kv_heads * 6 * hd, 7);
    let prefix_v = data(d.kv_heads * 6 * hd, 8);
    let own_k = data(d.batch * d.kv_heads * 3 * hd, 9);
    let own_v = data(d.batch * d.kv_heads * 3 * hd, 10);
    // The same rows as plain copies: (batch, kv_heads, 9, hd).
    let copy = |prefix: &[f32], own: &[f32]| {
        let mut out = Vec::new();
        for b in 0..d.batch {
            for h in 0..d.kv_heads {
                out.extend_from_slice(&prefix[h * 6 * hd..][..6 * hd]);
                out.extend_from_slice(&own[(b * d.kv_heads + h) * 3 * hd..][..3 * hd]);
            }
        }
        out
    };
    let (k, v) = (copy(&prefix_k, &own_k), copy(&prefix_v, &own_v));
    let q = data(d.batch * d.heads * d.seq * hd, 11);
    let mut hidden = vec![vec![false; cap]; 2];
    hidden[1][6] = true; // row 1: a gap after the prefix
    let runs: Vec<Vec<Run>> = (0..d.batch)
        .map(|b| {
            let own = b * d.kv_heads * 3 * hd;
            vec![
                Run {
                    k: prefix_k.as_ptr(),
                    v: prefix_v.as_ptr(),
                    head_stride: 6 * hd,
                    len: 6,
                },
                Run {
                    k: own_k[own..].as_ptr(),
                    v: own_v[own..].as_ptr(),
                    head_stride: 3 * hd,
                    len: 3,
                },
            ]
        })
        .collect();
    for simd in paths() {
        let want = run(&q, &k, &v, cap, &hidden, d, simd);
        // SAFETY: the runs cover the buffers, alive for the call.
        let got = unsafe { attend(&q, &runs, &hidden, d, simd) };
        assert_eq!(got, want, "simd {simd}");
    }
}

#[test]
fn exp_is_accurate_over_the_softmax_range() {
    let xs: Vec<f32> = (0..=2000).map(|i| -(i as f32) * 0.05).collect();
    for simd in paths() {
        let mut got = xs.clone();
        if simd {
            // SAFETY: `paths` gives `simd` only where the CPU has AVX-512 F.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                super::super::simd::x86::exp_shifted(&mut got, 0.0)
            };
        } else {
            got.iter_mut().for_each(|x| *x = x.exp());
        }
        for (x, e) in xs.iter().zip(&got) {
            let want = (*x as f64).exp();
            assert!(
                ((*e as f64) - want).abs() <= 1e-6 * want + 1e-37,
                "simd {simd}: exp({x}) = {e}, want {want}"
            );
        }
    }
}
