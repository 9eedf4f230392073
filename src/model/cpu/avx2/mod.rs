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

mod kquant;
mod quantize;

use std::arch::x86_64::*;

use super::quant::{Format, Packed, Rows, BLOCK, PANEL};
use kquant::supers;
pub use quantize::{quantize_block, quantize_super};

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
