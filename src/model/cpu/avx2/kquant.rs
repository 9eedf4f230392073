//! The K-quants (Q4_K, Q5_K, Q6_K) with AVX2: a super-block's 8 blocks readied at once, each
//! row (two at a time) run through the whole super-block with its sums in registers.

use std::arch::x86_64::*;

use super::super::quant::{Format, Packed, Rows, BLOCK, PANEL, SUPER};
use super::{block_dots, chunk, format, halfs, pair, prepare, store, widen, Weights, GROUP};

/// Rows r0..r1 of panel `p` of a K-quant: integer sums over each super-block in the order of
/// `portable::super_terms` (exact, so in any order), then `portable::finish`.
///
/// A super-block's 8 blocks are readied at once (unpacked: 8 KB, in L1) with their weights, so
/// each row runs through the whole super-block with its sums in registers, two rows at a time
/// where there are two ([`pair_sums`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn supers<const F: u8>(
    w: &Packed,
    x: &Rows,
    p: usize,
    r0: usize,
    r1: usize,
    out: *mut f32,
) {
    const PER: usize = SUPER / BLOCK;
    let f = format(F);
    let nb = w.blocks();
    let ns = w.k() / SUPER;
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    #[repr(align(32))]
    struct Bytes(#[allow(dead_code)] [[u8; PANEL * BLOCK]; PER]);
    // Not zeroed (8 KB a call, one call a panel in decode): only unpacked blocks are read.
    let mut u = std::mem::MaybeUninit::<Bytes>::uninit();
    let u = u.as_mut_ptr() as *mut [u8; PANEL * BLOCK];
    let zero = [_mm256_setzero_si256(); 4];
    // Per block: the weights of its dot products (its scales, as i16 pairs), Q6_K's zero
    // pairs `(z sc0, z sc1)`; per two blocks, their minimums as i16 pairs (Q4_K, Q5_K).
    let mut weights = [[zero; 2]; PER];
    let mut zeros = [zero; PER];
    let mut mins = [zero; PER / 2];
    let mut ptrs = [(std::ptr::null::<u8>(), std::ptr::null::<u8>()); PER];
    let z = f.zero();
    let mut acc = [[_mm256_setzero_ps(); 4]; GROUP];
    for g0 in (r0..r1).step_by(GROUP) {
        let g1 = (g0 + GROUP).min(r1);
        acc.fill([_mm256_setzero_ps(); 4]);
        for s in 0..ns {
            let mut packed = false;
            for j in 0..PER {
                let base = p * nb + s * PER + j;
                let (low, high) = (
                    w.low.as_ptr().add(base * lb),
                    w.high.as_ptr().add(base * hb),
                );
                ptrs[j] = (low, high);
                packed = prepare(f, low, high, (*u.add(j)).as_mut_ptr(), g1 - g0);
                let sc = w.sc.as_ptr().add(base * 2 * PANEL);
                let first = widen(f.sub16(), sc);
                let second = widen(f.sub16(), sc.add(PANEL));
                for q in 0..4 {
                    weights[j][0][q] = pair(first[q], first[q]);
                    weights[j][1][q] = if f.sub16() {
                        pair(second[q], second[q])
                    } else {
                        weights[j][0][q]
                    };
                    if f.sub16() {
                        let (z0, z1) = (
                            _mm256_mullo_epi32(first[q], _mm256_set1_epi32(z)),
                            _mm256_mullo_epi32(second[q], _mm256_set1_epi32(z)),
                        );
                        zeros[j][q] = pair(z0, z1);
                    } else if f.has_min() {
                        mins[j / 2][q] = if j % 2 == 0 {
                            second[q]
                        } else {
                            pair(mins[j / 2][q], second[q])
                        };
                    }
                }
            }
            let at = (p * ns + s) * PANEL;
            let d = halfs(w.d.as_ptr().add(at));
            let dmin = if f.has_min() {
                halfs(w.m.as_ptr().add(at))
            } else {
                [_mm256_setzero_ps(); 4]
            };
            let ready = Ready {
                ns,
                nb,
                zeros: &zeros,
                mins: &mins,
                d,
                dmin,
            };
            let mut r = g0;
            // Two rows at a time from the unpacked blocks: each 32 bytes of weights loaded
            // once for both (loads, not multiplies, bound the one-row loop).
            while !packed && r + 2 <= g1 {
                let [s0, s1] = pair_sums(f, x, r, s * PER, nb, u as *const _, &weights);
                finish(f, x, r, s, &ready, s0, &mut acc[r - g0]);
                finish(f, x, r + 1, s, &ready, s1, &mut acc[r + 1 - g0]);
                r += 2;
            }
            for r in r..g1 {
                // The super-block's `sum sc * dot` (Q6_K: its zero's share comes off in
                // `finish`).
                let mut e0 = zero;
                for j in 0..PER {
                    let at = r * nb + s * PER + j;
                    let xq = x.q.as_ptr().add(at * BLOCK);
                    let (low, high) = ptrs[j];
                    let ready = (low, high, (*u.add(j)).as_ptr());
                    let dot = block_dots(f, ready, packed, xq, &weights[j]);
                    for q in 0..4 {
                        e0[q] = _mm256_add_epi32(e0[q], dot[q]);
                    }
                }
                finish(f, x, r, s, &ready, e0, &mut acc[r - g0]);
            }
        }
        store(w, p, g0, &acc[..g1 - g0], out);
    }
}

/// What [`finish`] needs of a readied super-block: its shape, Q6_K's zero pairs and the
/// K-quants' minimum pairs per block (see [`supers`]), and its f16 scales in f32.
struct Ready<'a> {
    ns: usize,
    nb: usize,
    zeros: &'a [[__m256i; 4]; SUPER / BLOCK],
    mins: &'a [[__m256i; 4]; SUPER / BLOCK / 2],
    d: [__m256; 4],
    dmin: [__m256; 4],
}

/// Row `r`'s super-block `s` into its running sums `a`, from `e0` (`sum sc * dot` over the
/// super-block's blocks): less Q6_K's zero share, then `d * e0 - dmin * sum m * sum(x)`, in
/// the order of `portable::finish`.
#[inline(always)]
unsafe fn finish(
    f: Format,
    x: &Rows,
    r: usize,
    s: usize,
    ready: &Ready,
    mut e0: [__m256i; 4],
    a: &mut [__m256; 4],
) {
    const PER: usize = SUPER / BLOCK;
    let Ready { ns, nb, .. } = *ready;
    if f.sub16() {
        for (j, zeros) in ready.zeros.iter().enumerate() {
            let at = r * nb + s * PER + j;
            let s0 = *x.sum16.get_unchecked(at);
            let sum = *x.sum.get_unchecked(at);
            let xs = _mm256_set1_epi32((s0 & 0xffff) | ((sum - s0) << 16));
            for (e, z) in e0.iter_mut().zip(zeros) {
                *e = _mm256_sub_epi32(*e, _mm256_madd_epi16(*z, xs));
            }
        }
    }
    let mut e1 = [_mm256_setzero_si256(); 4];
    if f.has_min() {
        // m (at most 63) against the blocks' input sums (|sum| < 2^15), two blocks a
        // `vpmaddwd`: exact.
        let pairs = x.pairs.as_ptr().add((r * ns + s) * PER / 2);
        for (j, m) in ready.mins.iter().enumerate() {
            let xs = _mm256_set1_epi32(*pairs.add(j));
            for q in 0..4 {
                e1[q] = _mm256_add_epi32(e1[q], _mm256_madd_epi16(m[q], xs));
            }
        }
    }
    let dx = _mm256_set1_ps(*x.d.get_unchecked(r * ns + s));
    for q in 0..4 {
        let t = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(e0[q]),
            _mm256_mul_ps(ready.d[q], dx),
            a[q],
        );
        a[q] = if f.has_min() {
            _mm256_fnmadd_ps(
                _mm256_cvtepi32_ps(e1[q]),
                _mm256_mul_ps(ready.dmin[q], dx),
                t,
            )
        } else {
            t
        };
    }
}

/// Rows `r` and `r + 1`'s `sum sc * dot` over a super-block's unpacked blocks `u` (from block
/// `b0` of each row): [`super::dots`]'s integers, so the same sums. Half the columns at a time (q
/// pairs), so that both rows' 16-bit and 32-bit sums, their two input broadcasts and a weight
/// vector fit the 16 registers, and each weight load serves two rows.
#[inline(always)]
unsafe fn pair_sums(
    f: Format,
    x: &Rows,
    r: usize,
    b0: usize,
    nb: usize,
    u: *const [u8; PANEL * BLOCK],
    weights: &[Weights; SUPER / BLOCK],
) -> [[__m256i; 4]; 2] {
    let chunk = chunk(f);
    let mut sums = [[_mm256_setzero_si256(); 4]; 2];
    let xq = [
        x.q.as_ptr().add((r * nb + b0) * BLOCK),
        x.q.as_ptr().add(((r + 1) * nb + b0) * BLOCK),
    ];
    for h in 0..2 {
        let mut e = [[_mm256_setzero_si256(); 2]; 2];
        for (j, w) in weights.iter().enumerate() {
            let ub = (*u.add(j)).as_ptr();
            let mut acc = [[_mm256_setzero_si256(); 2]; 2];
            for g in 0..8 {
                let xb = [
                    _mm256_set1_epi32(
                        (xq[0].add(j * BLOCK + 4 * g) as *const i32).read_unaligned(),
                    ),
                    _mm256_set1_epi32(
                        (xq[1].add(j * BLOCK + 4 * g) as *const i32).read_unaligned(),
                    ),
                ];
                for c in 0..2 {
                    let v = _mm256_load_si256(ub.add(g * 128 + (2 * h + c) * 32) as *const __m256i);
                    for (a, xb) in acc.iter_mut().zip(xb) {
                        let prod = _mm256_maddubs_epi16(v, xb);
                        a[c] = if g % chunk == 0 {
                            prod
                        } else {
                            _mm256_add_epi16(a[c], prod)
                        };
                    }
                }
                if (g + 1) % chunk == 0 {
                    for (e, a) in e.iter_mut().zip(&acc) {
                        for c in 0..2 {
                            let t = _mm256_madd_epi16(a[c], w[g / 4][2 * h + c]);
                            e[c] = _mm256_add_epi32(e[c], t);
                        }
                    }
                }
            }
        }
        for (sum, e) in sums.iter_mut().zip(e) {
            sum[2 * h] = e[0];
            sum[2 * h + 1] = e[1];
        }
    }
    sums
}
