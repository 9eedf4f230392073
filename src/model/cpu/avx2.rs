//! The quantized products of [`super::quant`] with AVX2 and FMA, for CPUs without AVX-512
//! (AMD before Zen 4, Intel laptops and desktops of most generations).
//!
//! AVX2 has no byte dot product into 32 bits, so each 32-byte load of a block's integers
//! (8 columns x 4 inputs) goes through `vpmaddubsw` against the 4 input bytes broadcast (pairs
//! of byte products summed into 16 bits), a few of those are added in 16 bits while they cannot
//! overflow, and `vpmaddwd` by ones widens them to 32 bits: the same integer dot products as
//! [`super::quant::portable`], so the same bits after the same f32 operations, done for 8
//! columns at a time. Q8_0's whole bytes (0..255) would overflow `vpmaddubsw`, so they are
//! taken signed (`u - 128`) with the usual sign trick, which gives the dot product with the
//! zero already taken out.
//!
//! A panel's block is unpacked once to 1 KB of bytes and used by every row of the call; rows
//! go in groups of [`GROUP`] so that their running sums stay in L1.

use std::arch::x86_64::*;

use super::quant::{Format, Packed, Rows, BLOCK, PANEL, SUPER};

/// Rows whose sums are kept at once; a block is unpacked once per group.
const GROUP: usize = 16;

/// Whether this CPU has what [`panel`] uses.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
}

/// The format of a kernel's constant parameter (the order of [`Format::ALL`]).
const fn format(id: u8) -> Format {
    Format::ALL[id as usize]
}

/// Rows r0..r1 of one panel's 32 columns.
///
/// # Safety
/// The CPU must have what [`available`] checks; `out` points at an (m x n) row-major f32
/// buffer, m being the rows of `x`.
pub unsafe fn panel(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    match w.format() {
        Format::Q4_0 => blocks::<0>(w, x, p, r0, r1, out),
        Format::Q4_1 => blocks::<1>(w, x, p, r0, r1, out),
        Format::Q5_0 => blocks::<2>(w, x, p, r0, r1, out),
        Format::Q5_1 => blocks::<3>(w, x, p, r0, r1, out),
        Format::Q8_0 => blocks::<4>(w, x, p, r0, r1, out),
        Format::Q4K => supers::<5>(w, x, p, r0, r1, out),
        Format::Q5K => supers::<6>(w, x, p, r0, r1, out),
        Format::Q6K => supers::<7>(w, x, p, r0, r1, out),
    }
}

/// `v` shifted left by `by` bits within 16-bit lanes (right for negative `by`); `by` is a
/// constant once inlined.
#[inline(always)]
unsafe fn shift(v: __m256i, by: i32) -> __m256i {
    if by >= 0 {
        _mm256_sll_epi16(v, _mm_cvtsi32_si128(by))
    } else {
        _mm256_srl_epi16(v, _mm_cvtsi32_si128(-by))
    }
}

/// 32 integers of group `g` (inputs 4g..4g+4) at byte `off` of the group's 128: `low4` holds
/// their low nibbles, bits 4 and up come from the high plane (as [`super::avx512`] does).
#[inline(always)]
unsafe fn with_high(f: Format, low4: __m256i, high: *const u8, g: usize, off: usize) -> __m256i {
    match f.high_bits() {
        0 => low4,
        1 => {
            let h = _mm256_loadu_si256(high.add(off) as *const __m256i);
            let bit = _mm256_and_si256(shift(h, 4 - g as i32), _mm256_set1_epi8(0x10));
            _mm256_or_si256(low4, bit)
        }
        _ => {
            let h = _mm256_loadu_si256(high.add((g / 4) * 128 + off) as *const __m256i);
            let bits = _mm256_and_si256(shift(h, 4 - 2 * (g % 4) as i32), _mm256_set1_epi8(0x30));
            _mm256_or_si256(low4, bits)
        }
    }
}

/// A panel's block of nibbles (`low`, `high` at the block) as bytes in the packed order
/// `[g][half][lane * 4 + j]`, g in 0..8 (what `portable::unpack` makes).
#[inline(always)]
unsafe fn unpack(f: Format, low: *const u8, high: *const u8, u: *mut u8) {
    let nib = _mm256_set1_epi8(0x0f);
    for i in (0..PANEL * BLOCK / 2).step_by(32) {
        let v = _mm256_loadu_si256(low.add(i) as *const __m256i);
        let (g, off) = (i / 128, i % 128);
        let lo = with_high(f, _mm256_and_si256(v, nib), high, g, off);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
        let hi = with_high(f, hi, high, g + 4, off);
        _mm256_storeu_si256(u.add(i) as *mut __m256i, lo);
        _mm256_storeu_si256(u.add(PANEL * BLOCK / 2 + i) as *mut __m256i, hi);
    }
}

/// `vpmaddubsw` results added in 16 bits before widening: each is at most 2 x 128 x the
/// largest integer (15, 31, 63), so 8, 4 and 2 of them fit in i16; Q8_0's (up to 2 x 128 x 128
/// with the sign trick) only one.
#[inline(always)]
fn chunk(f: Format) -> usize {
    match (f.bytes(), f.high_bits()) {
        (true, _) => 1,
        (_, 2) => 2,
        (_, 1) => 4,
        _ => 8,
    }
}

/// Per-column weights of a block's integer dot products, as i16 pairs for `vpmaddwd`: `[half]
/// [q]`, lane pair `l` of `q` for column `8q + l`, half 0 for the first 16 inputs. Ones give
/// the plain dot products; a K-quant's small scales give `sum sc * dot` in the same widening.
type Weights = [[__m256i; 4]; 2];

/// [`Weights`] of one: the plain dot products.
#[inline(always)]
unsafe fn ones() -> Weights {
    [[_mm256_set1_epi16(1); 4]; 2]
}

/// 32-bit lanes `lo` and `hi` (values that fit in i16) as the i16 pair (lo, hi) in each lane,
/// for `vpmaddwd`.
#[inline(always)]
unsafe fn pair(lo: __m256i, hi: __m256i) -> __m256i {
    _mm256_or_si256(
        _mm256_and_si256(lo, _mm256_set1_epi32(0xffff)),
        _mm256_slli_epi32::<16>(hi),
    )
}

/// One input row's integer dot products with a block's bytes `u`, weighted per column and half
/// by `w` and summed over the block: lane `l` of `[q]` is column `8q + l`. For Q8_0 the
/// products are of `u - 128` (the zero taken out). Exact integers, whatever the chunking.
#[inline(always)]
unsafe fn dots(f: Format, u: *const u8, xq: *const i8, w: &Weights) -> [__m256i; 4] {
    let chunk = chunk(f);
    let flip = _mm256_set1_epi8(-128);
    let mut out = [_mm256_setzero_si256(); 4];
    let mut acc = [_mm256_setzero_si256(); 4];
    for g in 0..8 {
        let xb = _mm256_set1_epi32((xq.add(4 * g) as *const i32).read_unaligned());
        for (q, a) in acc.iter_mut().enumerate() {
            let v = _mm256_loadu_si256(u.add(g * 128 + q * 32) as *const __m256i);
            let prod = if f.bytes() {
                let s = _mm256_xor_si256(v, flip);
                _mm256_maddubs_epi16(_mm256_sign_epi8(s, s), _mm256_sign_epi8(xb, s))
            } else {
                _mm256_maddubs_epi16(v, xb)
            };
            *a = if g % chunk == 0 {
                prod
            } else {
                _mm256_add_epi16(*a, prod)
            };
        }
        if (g + 1) % chunk == 0 {
            for ((o, a), w) in out.iter_mut().zip(&acc).zip(&w[g / 4]) {
                *o = _mm256_add_epi32(*o, _mm256_madd_epi16(*a, *w));
            }
        }
    }
    out
}

/// [`dots`] straight from a block's packed nibbles (`low`, `high` at the block), for calls of
/// a row or two, where writing out the unpacked block and reading it back would cost more than
/// unpacking each 32 bytes as it is used. The same integers, so the same sums.
#[inline(always)]
unsafe fn dots_packed(
    f: Format,
    low: *const u8,
    high: *const u8,
    xq: *const i8,
    w: &Weights,
) -> [__m256i; 4] {
    // Halves apart (a nibble's two halves are the inputs g and g + 4), so at most 4 a chunk.
    let chunk = chunk(f).min(4);
    let nib = _mm256_set1_epi8(0x0f);
    if chunk == 4 {
        // A half's 4 groups fit one 16-bit sum: groups outside, so each input broadcast is
        // loaded once (8 a block, not 32), with 8 running sums in registers.
        let (mut a0, mut a1) = ([_mm256_setzero_si256(); 4], [_mm256_setzero_si256(); 4]);
        for g in 0..4 {
            let x0 = _mm256_set1_epi32((xq.add(4 * g) as *const i32).read_unaligned());
            let x1 = _mm256_set1_epi32((xq.add(4 * (g + 4)) as *const i32).read_unaligned());
            for q in 0..4 {
                let v = _mm256_loadu_si256(low.add(g * 128 + q * 32) as *const __m256i);
                let lo = with_high(f, _mm256_and_si256(v, nib), high, g, q * 32);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
                let hi = with_high(f, hi, high, g + 4, q * 32);
                let (p0, p1) = (_mm256_maddubs_epi16(lo, x0), _mm256_maddubs_epi16(hi, x1));
                if g == 0 {
                    (a0[q], a1[q]) = (p0, p1);
                } else {
                    a0[q] = _mm256_add_epi16(a0[q], p0);
                    a1[q] = _mm256_add_epi16(a1[q], p1);
                }
            }
        }
        let mut out = [_mm256_setzero_si256(); 4];
        for q in 0..4 {
            out[q] = _mm256_add_epi32(
                _mm256_madd_epi16(a0[q], w[0][q]),
                _mm256_madd_epi16(a1[q], w[1][q]),
            );
        }
        return out;
    }
    let mut out = [_mm256_setzero_si256(); 4];
    for (q, o) in out.iter_mut().enumerate() {
        let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for g in 0..4 {
            let off = g * 128 + q * 32;
            let v = _mm256_loadu_si256(low.add(off) as *const __m256i);
            let lo = with_high(f, _mm256_and_si256(v, nib), high, g, q * 32);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib);
            let hi = with_high(f, hi, high, g + 4, q * 32);
            let x0 = _mm256_set1_epi32((xq.add(4 * g) as *const i32).read_unaligned());
            let x1 = _mm256_set1_epi32((xq.add(4 * (g + 4)) as *const i32).read_unaligned());
            let (p0, p1) = (_mm256_maddubs_epi16(lo, x0), _mm256_maddubs_epi16(hi, x1));
            if g % chunk == 0 {
                (a0, a1) = (p0, p1);
            } else {
                a0 = _mm256_add_epi16(a0, p0);
                a1 = _mm256_add_epi16(a1, p1);
            }
            if (g + 1) % chunk == 0 {
                *o = _mm256_add_epi32(*o, _mm256_madd_epi16(a0, w[0][q]));
                *o = _mm256_add_epi32(*o, _mm256_madd_epi16(a1, w[1][q]));
            }
        }
    }
    out
}

/// Rows of a call up to which [`dots_packed`] beats unpacking the block once.
const PACKED_ROWS: usize = 2;

/// Readies block `low`/`high` for `rows` rows: unpacked into `u` (nibble formats, many rows)
/// or read where it is (Q8_0's bytes; [`dots_packed`] for a row or two). Returns whether the
/// packed nibbles are read directly.
#[inline(always)]
unsafe fn prepare(f: Format, low: *const u8, high: *const u8, u: *mut u8, rows: usize) -> bool {
    let packed = !f.bytes() && rows <= PACKED_ROWS;
    if !f.bytes() && !packed {
        unpack(f, low, high, u);
    }
    packed
}

/// One row's [`dots`] with a block readied by [`prepare`].
#[inline(always)]
unsafe fn block_dots(
    f: Format,
    (low, high, u): (*const u8, *const u8, *const u8),
    packed: bool,
    xq: *const i8,
    w: &Weights,
) -> [__m256i; 4] {
    if f.bytes() {
        dots(f, low, xq, w)
    } else if packed {
        dots_packed(f, low, high, xq, w)
    } else {
        dots(f, u, xq, w)
    }
}

/// 32 f16 values from `at` in f32, 8 a vector. (Functions rather than closures here: closures
/// do not inherit the caller's target features, so their intrinsics would be calls.)
#[inline(always)]
unsafe fn halfs(at: *const half::f16) -> [__m256; 4] {
    let mut v = [_mm256_setzero_ps(); 4];
    for (q, v) in v.iter_mut().enumerate() {
        *v = _mm256_cvtph_ps(_mm_loadu_si128(at.add(8 * q) as *const __m128i));
    }
    v
}

/// 32 small scales from `at` in 32 bits, 8 a vector: signed (Q6_K's) or not.
#[inline(always)]
unsafe fn widen(signed: bool, at: *const u8) -> [__m256i; 4] {
    let mut v = [_mm256_setzero_si256(); 4];
    for (q, v) in v.iter_mut().enumerate() {
        let b = _mm_loadl_epi64(at.add(8 * q) as *const __m128i);
        *v = if signed {
            _mm256_cvtepi8_epi32(b)
        } else {
            _mm256_cvtepu8_epi32(b)
        };
    }
    v
}

/// Rows r0..r1 of panel `p` of a 32-weight format, in the order of
/// `portable::accumulate`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn blocks<const F: u8>(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    let f = format(F);
    let nb = w.blocks();
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    #[repr(align(32))]
    struct Bytes([u8; PANEL * BLOCK]);
    let mut u = Bytes([0; PANEL * BLOCK]);
    let ones = ones();
    let mut acc = [[_mm256_setzero_ps(); 4]; GROUP];
    for g0 in (r0..r1).step_by(GROUP) {
        let g1 = (g0 + GROUP).min(r1);
        acc.fill([_mm256_setzero_ps(); 4]);
        for b in 0..nb {
            let base = p * nb + b;
            let (low, high) = (
                w.low.as_ptr().add(base * lb),
                w.high.as_ptr().add(base * hb),
            );
            let packed = prepare(f, low, high, u.0.as_mut_ptr(), g1 - g0);
            let s = base * PANEL;
            let dd = halfs(w.d.as_ptr().add(s));
            let mm = if f.has_min() {
                halfs(w.m.as_ptr().add(s))
            } else {
                [_mm256_setzero_ps(); 4]
            };
            for (r, a) in (g0..g1).zip(acc.iter_mut()) {
                let at = r * nb + b;
                let xq = x.q.as_ptr().add(at * BLOCK);
                let dot = block_dots(f, (low, high, u.0.as_ptr()), packed, xq, &ones);
                let zero = _mm256_set1_epi32(if f.bytes() {
                    0
                } else {
                    f.zero() * *x.sum.get_unchecked(at)
                });
                let dx = _mm256_set1_ps(*x.d.get_unchecked(at));
                let xs = _mm256_set1_ps(if f.has_min() {
                    *x.s.get_unchecked(at)
                } else {
                    0.0
                });
                for q in 0..4 {
                    let total = _mm256_sub_epi32(dot[q], zero);
                    let t =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(dd[q], dx), a[q]);
                    a[q] = if f.has_min() {
                        _mm256_fnmadd_ps(mm[q], xs, t)
                    } else {
                        t
                    };
                }
            }
        }
        store(w, p, g0, &acc[..g1 - g0], out);
    }
}

/// Rows r0..r1 of panel `p` of a K-quant: integer sums over each super-block in the order of
/// `portable::super_terms` (exact, so in any order), then `portable::finish`.
///
/// A super-block's 8 blocks are readied at once (unpacked: 8 KB, in L1) with their weights, so
/// each row runs through the whole super-block with its sums in registers, two rows at a time
/// where there are two ([`pair_sums`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn supers<const F: u8>(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
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
/// `b0` of each row): [`dots`]'s integers, so the same sums. Half the columns at a time (q
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

/// Rows from `r0` of a panel's outputs (`acc`, 32 per row) into `out` (m x n), the columns
/// past `n` left out.
#[inline(always)]
unsafe fn store(w: &Packed, p: usize, r0: usize, acc: &[[__m256; 4]], out: *mut f32) {
    let cols = (w.n() - p * PANEL).min(PANEL);
    for (r, a) in acc.iter().enumerate() {
        let dst = out.add((r0 + r) * w.n() + p * PANEL);
        if cols == PANEL {
            for (q, v) in a.iter().enumerate() {
                _mm256_storeu_ps(dst.add(8 * q), *v);
            }
        } else {
            let mut row = [0f32; PANEL];
            for (q, v) in a.iter().enumerate() {
                _mm256_storeu_ps(row.as_mut_ptr().add(8 * q), *v);
            }
            std::ptr::copy_nonoverlapping(row.as_ptr(), dst, cols);
        }
    }
}

/// 32 i32 (four vectors, in order) as 32 bytes in order, truncated (the values fit).
#[inline(always)]
unsafe fn bytes(v: [__m256i; 4], out: *mut i8) {
    // The packs work within 128-bit lanes: [v0 lo, v1 lo, v2 lo, v3 lo | v0 hi, ...] by 4
    // bytes, put back in order by one permutation.
    let ab = _mm256_packs_epi32(v[0], v[1]);
    let cd = _mm256_packs_epi32(v[2], v[3]);
    let all = _mm256_packs_epi16(ab, cd);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    _mm256_storeu_si256(out as *mut __m256i, _mm256_permutevar8x32_epi32(all, order));
}

/// Whether any of `v` is infinite or NaN (`x - x` is NaN exactly there).
#[inline(always)]
unsafe fn bad(v: __m256) -> bool {
    let z = _mm256_sub_ps(v, v);
    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(z, z)) != 0
}

/// `|v|`.
#[inline(always)]
unsafe fn abs(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// The largest of `v`'s lanes.
#[inline(always)]
unsafe fn reduce_max(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// [`super::quant::rows::quantize_block`] with AVX2: the same rounding (to nearest, ties to
/// even, the default MXCSR mode) and the same `1 / d`, so the same bytes.
///
/// # Safety
/// The CPU must have what [`available`] checks; `x` and `q` hold 32 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == BLOCK && q.len() == BLOCK);
    let mut v = [_mm256_setzero_ps(); 4];
    let mut finite = true;
    for (i, v) in v.iter_mut().enumerate() {
        *v = _mm256_loadu_ps(x.as_ptr().add(8 * i));
        finite &= !bad(*v);
    }
    if !finite {
        q.fill(0);
        return f32::NAN;
    }
    let amax = reduce_max(_mm256_max_ps(
        _mm256_max_ps(abs(v[0]), abs(v[1])),
        _mm256_max_ps(abs(v[2]), abs(v[3])),
    ));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let mut n = [_mm256_setzero_si256(); 4];
    for (n, v) in n.iter_mut().zip(v) {
        *n = _mm256_cvtps_epi32(_mm256_mul_ps(v, id));
    }
    bytes(n, q.as_mut_ptr());
    d
}

/// [`super::quant::rows::quantize_super`] with AVX2: the same largest value, scale and
/// rounding, so the same bytes.
///
/// # Safety
/// The CPU must have what [`available`] checks; `x` and `q` hold 256 values.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_super(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == SUPER && q.len() == SUPER);
    let mut amax = _mm256_setzero_ps();
    let mut finite = true;
    for c in x.chunks_exact(8) {
        let v = _mm256_loadu_ps(c.as_ptr());
        finite &= !bad(v);
        amax = _mm256_max_ps(amax, abs(v));
    }
    if !finite {
        q.fill(0);
        return f32::NAN;
    }
    let amax = reduce_max(amax);
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    // The first value of that magnitude, with its sign.
    let top = _mm256_set1_ps(amax);
    let mut max = amax;
    for (i, c) in x.chunks_exact(8).enumerate() {
        let hit = _mm256_cmp_ps::<_CMP_EQ_OQ>(abs(_mm256_loadu_ps(c.as_ptr())), top);
        let hit = _mm256_movemask_ps(hit);
        if hit != 0 {
            max = x[i * 8 + hit.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0 / max;
    let is = _mm256_set1_ps(iscale);
    let cap = _mm256_set1_epi32(127);
    for (c, o) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)) {
        let mut n = [_mm256_setzero_si256(); 4];
        for (i, n) in n.iter_mut().enumerate() {
            let v = _mm256_loadu_ps(c.as_ptr().add(8 * i));
            *n = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v, is)), cap);
        }
        bytes(n, o.as_mut_ptr());
    }
    1.0 / iscale
}
