//! The quantized products of [`super::quant`] with AVX-512 VNNI (`vpdpbusd`: 64 byte
//! products per instruction).
//!
//! A tile of up to 4 input rows walks one panel of 32 output columns through all blocks of
//! 32 inputs. Each 64-byte load of nibbles gives two groups of 4 inputs for 16 columns (low
//! and high nibbles), completed by the high plane for 5- and 6-bit formats; the integers go
//! straight into `vpdpbusd` against the broadcast input bytes, so weights are read once per
//! tile and never widened in memory. After each block the integer sums are scaled in f32 in
//! the order of [`super::quant::portable::accumulate`], so results equal the portable kernel's bit for
//! bit.

use std::arch::x86_64::*;

use super::quant::{Format, Packed, Rows, BLOCK, PANEL, SUPER};

/// Whether this CPU has what [`panel`] uses.
pub fn available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vnni")
        && std::is_x86_feature_detected!("f16c")
}

/// [`super::quant::rows::quantize_block`] with AVX-512: the same rounding (to nearest, ties to
/// even, the default MXCSR mode) and the same `1 / d`, so the same bytes.
///
/// # Safety
/// The CPU must have AVX-512 F; `x` and `q` hold 32 values.
#[target_feature(enable = "avx512f")]
pub unsafe fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == BLOCK && q.len() == BLOCK);
    let x0 = _mm512_loadu_ps(x.as_ptr());
    let x1 = _mm512_loadu_ps(x.as_ptr().add(16));
    // x - x is NaN exactly where x is infinite or NaN.
    let bad = |v: __m512| {
        let z = _mm512_sub_ps(v, v);
        _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(z, z)
    };
    if bad(x0) | bad(x1) != 0 {
        q.fill(0);
        return f32::NAN;
    }
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    let d = amax / 127.0;
    let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id));
    let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
    _mm_storeu_si128(q.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(
        q.as_mut_ptr().add(16) as *mut __m128i,
        _mm512_cvtepi32_epi8(q1),
    );
    d
}

/// [`super::quant::rows::quantize_super`] with AVX-512: the same largest value, scale and rounding,
/// so the same bytes.
///
/// # Safety
/// The CPU must have AVX-512 F; `x` and `q` hold 256 values.
#[target_feature(enable = "avx512f")]
pub unsafe fn quantize_super(x: &[f32], q: &mut [i8]) -> f32 {
    debug_assert!(x.len() == SUPER && q.len() == SUPER);
    let mut amax = _mm512_setzero_ps();
    let mut finite = true;
    for c in x.chunks_exact(16) {
        let v = _mm512_loadu_ps(c.as_ptr());
        let z = _mm512_sub_ps(v, v);
        finite &= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(z, z) == 0;
        amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
    }
    if !finite {
        q.fill(0);
        return f32::NAN;
    }
    let amax = _mm512_reduce_max_ps(amax);
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    // The first value of that magnitude, with its sign.
    let top = _mm512_set1_ps(amax);
    let mut max = amax;
    for (i, c) in x.chunks_exact(16).enumerate() {
        let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())), top);
        if hit != 0 {
            max = x[i * 16 + hit.trailing_zeros() as usize];
            break;
        }
    }
    let iscale = -127.0 / max;
    let is = _mm512_set1_ps(iscale);
    let cap = _mm512_set1_epi32(127);
    for (c, o) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)) {
        let v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), is));
        let v = _mm512_min_epi32(v, cap);
        _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, _mm512_cvtepi32_epi8(v));
    }
    1.0 / iscale
}

/// Rows r0..r1 of one panel's 32 columns, in tiles of 8 rows ([`half_tile`]) and then of up
/// to 4.
///
/// # Safety
/// The CPU must have what [`available`] checks; `out` must point to an m x n row-major f32
/// buffer, m being the rows of `x`.
pub unsafe fn panel(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    macro_rules! by_format {
        ($tile:ident, $super_tile:ident, $mr:literal, $r:expr) => {
            match w.format() {
                Format::Q4_0 => $tile::<$mr, 0>(w, x, p, $r, out),
                Format::Q4_1 => $tile::<$mr, 1>(w, x, p, $r, out),
                Format::Q5_0 => $tile::<$mr, 2>(w, x, p, $r, out),
                Format::Q5_1 => $tile::<$mr, 3>(w, x, p, $r, out),
                Format::Q8_0 => $tile::<$mr, 4>(w, x, p, $r, out),
                Format::Q4K => $super_tile::<$mr, 5>(w, x, p, $r, out),
                Format::Q5K => $super_tile::<$mr, 6>(w, x, p, $r, out),
                Format::Q6K => $super_tile::<$mr, 7>(w, x, p, $r, out),
            }
        };
    }
    let mut r = r0;
    // Eight rows a tile where a call has them: the nibbles unpacked for a half panel serve
    // eight rows instead of four. (Twelve spill registers: 20-35% slower on Zen 4.)
    while r + 8 <= r1 {
        by_format!(half_tile, half_super_tile, 8, r);
        r += 8;
    }
    while r < r1 {
        let rows = (r1 - r).min(4);
        match rows {
            4 => by_format!(tile, super_tile, 4, r),
            3 => by_format!(tile, super_tile, 3, r),
            2 => by_format!(tile, super_tile, 2, r),
            _ => by_format!(tile, super_tile, 1, r),
        }
        r += rows;
    }
}

/// `v` shifted left by `by` bits within 16-bit lanes (right for negative `by`).
#[inline(always)]
unsafe fn shift(v: __m512i, by: i32) -> __m512i {
    match by {
        4 => _mm512_slli_epi16::<4>(v),
        3 => _mm512_slli_epi16::<3>(v),
        2 => _mm512_slli_epi16::<2>(v),
        1 => _mm512_slli_epi16::<1>(v),
        0 => v,
        -1 => _mm512_srli_epi16::<1>(v),
        -2 => _mm512_srli_epi16::<2>(v),
        -3 => _mm512_srli_epi16::<3>(v),
        _ => _mm512_srli_epi16::<4>(v),
    }
}

/// The integers of group `g` (inputs 4g..4g+4) of 16 columns: `low4` already holds their low
/// nibbles; bits 4 and up come from the high plane.
#[inline(always)]
unsafe fn with_high(f: Format, low4: __m512i, high: *const u8, g: usize, half: usize) -> __m512i {
    match f.high_bits() {
        0 => low4,
        1 => {
            let h = _mm512_loadu_si512(high.add(half * 64) as *const _);
            let bit = _mm512_and_si512(shift(h, 4 - g as i32), _mm512_set1_epi8(0x10));
            _mm512_or_si512(low4, bit)
        }
        _ => {
            let h = _mm512_loadu_si512(high.add((g / 4) * 128 + half * 64) as *const _);
            let bits = shift(h, 4 - 2 * (g % 4) as i32);
            // low4 | (bits & 0x30)
            _mm512_ternarylogic_epi32::<0xF8>(low4, bits, _mm512_set1_epi8(0x30))
        }
    }
}

/// `(D, M)` of block `b` for 16 columns of panel `p` (`half`) in f32, for the 32-weight
/// formats (K-quants go through [`super_scales`]).
#[inline(always)]
pub(crate) unsafe fn block_scales(w: &Packed, p: usize, b: usize, half: usize) -> [__m512; 2] {
    let s = (p * w.blocks() + b) * PANEL + half * 16;
    let d = _mm512_cvtph_ps(_mm256_loadu_si256(w.d.as_ptr().add(s) as *const _));
    let m = if w.format().has_min() {
        _mm512_cvtph_ps(_mm256_loadu_si256(w.m.as_ptr().add(s) as *const _))
    } else {
        _mm512_setzero_ps()
    };
    [d, m]
}

/// The scales of super-block `s` for 16 columns of panel `p` (`half`): `d` and `dmin` in f32,
/// and the blocks' minimums as i16 pairs (blocks 2j and 2j + 1) for `vpdpwssd` against
/// [`Rows::pairs`].
#[inline(always)]
pub(crate) unsafe fn super_scales(
    w: &Packed,
    p: usize,
    s: usize,
    half: usize,
) -> (__m512, __m512, [__m512i; 4]) {
    let f = w.format();
    let ns = w.k() / SUPER;
    let at = (p * ns + s) * PANEL + half * 16;
    let d = _mm512_cvtph_ps(_mm256_loadu_si256(w.d.as_ptr().add(at) as *const _));
    let mut mins = [_mm512_setzero_si512(); 4];
    if !f.has_min() {
        return (d, _mm512_setzero_ps(), mins);
    }
    let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(w.m.as_ptr().add(at) as *const _));
    let per = SUPER / BLOCK;
    for (j, m) in mins.iter_mut().enumerate() {
        let b = p * w.blocks() + s * per + 2 * j;
        let at = |b: usize| w.sc.as_ptr().add(b * 2 * PANEL + PANEL + half * 16);
        let m0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(at(b) as *const _));
        let m1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(at(b + 1) as *const _));
        *m = _mm512_or_si512(m0, _mm512_slli_epi32::<16>(m1));
    }
    (d, dmin, mins)
}

/// Adds a K-quant super-block `s` of input `row` to 16 outputs: `sum` the integer dot products
/// times the blocks' scales, the minimums from [`super_scales`]. The order of
/// [`super::quant::portable::finish`].
#[inline(always)]
pub(crate) unsafe fn finish(
    f: Format,
    acc: __m512,
    sum: __m512i,
    (d, dmin, mins): &(__m512, __m512, [__m512i; 4]),
    x: &Rows,
    row: usize,
    s: usize,
) -> __m512 {
    let ns = x.k / SUPER;
    let dx = _mm512_set1_ps(*x.d.get_unchecked(row * ns + s));
    let t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(*d, dx), acc);
    if !f.has_min() {
        return t;
    }
    let pairs = x.pairs.as_ptr().add((row * ns + s) * SUPER / BLOCK / 2);
    let mut m = _mm512_setzero_si512();
    for (j, mm) in mins.iter().enumerate() {
        m = _mm512_dpwssd_epi32(m, *mm, _mm512_set1_epi32(*pairs.add(j)));
    }
    _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(*dmin, dx), t)
}

/// Adds one input row's block to 16 outputs of a 32-weight format: `dot` the integer dot
/// products, `sc` from [`block_scales`], `at` the row's block in `x`. The order of
/// [`super::quant::portable::accumulate`].
#[inline(always)]
pub(crate) unsafe fn accumulate(
    f: Format,
    acc: __m512,
    dot: __m512i,
    [d, m]: [__m512; 2],
    x: &Rows,
    at: usize,
) -> __m512 {
    let dx = _mm512_set1_ps(*x.d.get_unchecked(at));
    let v = _mm512_sub_epi32(dot, _mm512_set1_epi32(f.zero() * *x.sum.get_unchecked(at)));
    let t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(d, dx), acc);
    if f.has_min() {
        _mm512_fnmadd_ps(m, _mm512_set1_ps(*x.s.get_unchecked(at)), t)
    } else {
        t
    }
}

/// The integers of inputs 4g..4g+4 and 4(g+4)..4(g+4)+4 (g in 0..4) of 16 columns of a block
/// of nibbles (`low`, `high` at the block).
#[inline(always)]
pub(crate) unsafe fn unpack_pair(
    f: Format,
    low: *const u8,
    high: *const u8,
    g: usize,
    half: usize,
) -> (__m512i, __m512i) {
    let nib = _mm512_set1_epi8(0x0f);
    let v = _mm512_loadu_si512(low.add(g * 128 + half * 64) as *const _);
    let lo = with_high(f, _mm512_and_si512(v, nib), high, g, half);
    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
    (lo, with_high(f, hi, high, g + 4, half))
}

/// Writes rows of a panel's 32 outputs (`acc[i]` for row `r0 + i`) into `out` (m x n), the
/// columns past `n` left out.
#[inline(always)]
pub(crate) unsafe fn store_rows(
    w: &Packed,
    p: usize,
    r0: usize,
    acc: &[[__m512; 2]],
    out: *mut f32,
) {
    let col0 = p * PANEL;
    let cols = (w.n() - col0).min(PANEL);
    let mask0: __mmask16 = if cols >= 16 {
        0xffff
    } else {
        (1u16 << cols) - 1
    };
    let mask1: __mmask16 = if cols >= 32 {
        0xffff
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    for (i, a) in acc.iter().enumerate() {
        let o = out.add((r0 + i) * w.n() + col0);
        _mm512_mask_storeu_ps(o, mask0, a[0]);
        if mask1 != 0 {
            _mm512_mask_storeu_ps(o.add(16), mask1, a[1]);
        }
    }
}

/// Up to 4 rows from `r0` of panel `p` of a 32-weight format.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
unsafe fn tile<const MR: usize, const F: usize>(
    w: &Packed,
    x: &Rows,
    p: usize,
    r0: usize,
    out: *mut f32,
) {
    let f = Format::ALL[F];
    let nb = w.blocks();
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for b in 0..nb {
        let dot = block_dots::<MR>(f, w, x, p, r0, b);
        for half in 0..2 {
            let sc = block_scales(w, p, b, half);
            for (i, a) in acc.iter_mut().enumerate() {
                a[half] = accumulate(f, a[half], dot[i][0][half], sc, x, (r0 + i) * nb + b);
            }
        }
    }
    store_rows(w, p, r0, &acc, out);
}

/// Up to 4 rows from `r0` of panel `p` of a K-quant: integer sums per super-block.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
unsafe fn super_tile<const MR: usize, const F: usize>(
    w: &Packed,
    x: &Rows,
    p: usize,
    r0: usize,
    out: *mut f32,
) {
    let f = Format::ALL[F];
    let nb = w.blocks();
    let per = SUPER / BLOCK;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for s in 0..nb / per {
        let mut sums = [[_mm512_setzero_si512(); 2]; MR];
        for b in s * per..(s + 1) * per {
            let dot = block_dots::<MR>(f, w, x, p, r0, b);
            let sc = w.sc.as_ptr().add((p * nb + b) * 2 * PANEL);
            for half in 0..2 {
                let s0 = _mm_loadu_si128(sc.add(half * 16) as *const _);
                let s1 = _mm_loadu_si128(sc.add(PANEL + half * 16) as *const _);
                for (i, sum) in sums.iter_mut().enumerate() {
                    let at = (r0 + i) * nb + b;
                    let t = if f.sub16() {
                        let z = f.zero();
                        let x0 = *x.sum16.get_unchecked(at);
                        let x1 = *x.sum.get_unchecked(at) - x0;
                        let v0 = _mm512_sub_epi32(dot[i][0][half], _mm512_set1_epi32(z * x0));
                        let v1 = _mm512_sub_epi32(dot[i][1][half], _mm512_set1_epi32(z * x1));
                        _mm512_add_epi32(
                            _mm512_mullo_epi32(_mm512_cvtepi8_epi32(s0), v0),
                            _mm512_mullo_epi32(_mm512_cvtepi8_epi32(s1), v1),
                        )
                    } else {
                        _mm512_mullo_epi32(_mm512_cvtepu8_epi32(s0), dot[i][0][half])
                    };
                    sum[half] = _mm512_add_epi32(sum[half], t);
                }
            }
        }
        for half in 0..2 {
            let sc = super_scales(w, p, s, half);
            for (i, a) in acc.iter_mut().enumerate() {
                a[half] = finish(f, a[half], sums[i][half], &sc, x, r0 + i, s);
            }
        }
    }
    store_rows(w, p, r0, &acc, out);
}

/// `MR` rows (eight) from `r0` of panel `p` of a K-quant, one half panel (16 columns) at a
/// time so that eight rows' sums fit the registers: the same integers as [`super_tile`] (block by
/// block, the first then the last 16 inputs), the same [`finish`], so the same bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
unsafe fn half_super_tile<const MR: usize, const F: usize>(
    w: &Packed,
    x: &Rows,
    p: usize,
    r0: usize,
    out: *mut f32,
) {
    let f = Format::ALL[F];
    let (k, nb) = (w.k(), w.blocks());
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    let per = SUPER / BLOCK;
    let xb = (x.q.as_ptr() as *const u8).add(r0 * k);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for half in 0..2 {
        for s in 0..nb / per {
            let mut sums = [_mm512_setzero_si512(); MR];
            for b in s * per..(s + 1) * per {
                let low = w.low.as_ptr().add((p * nb + b) * lb);
                let high = w.high.as_ptr().add((p * nb + b) * hb);
                let sc = w.sc.as_ptr().add((p * nb + b) * 2 * PANEL + half * 16);
                let mut dot = [_mm512_setzero_si512(); MR];
                for part in 0..2 {
                    part_dots(f, (low, high), xb.add(b * BLOCK), k, half, part, &mut dot);
                    if f.sub16() {
                        // Q6_K: a scale and the zero per 16 inputs.
                        let sp =
                            _mm512_cvtepi8_epi32(_mm_loadu_si128(sc.add(part * PANEL) as *const _));
                        for (i, (d, sum)) in dot.iter_mut().zip(sums.iter_mut()).enumerate() {
                            let at = (r0 + i) * nb + b;
                            let x0 = *x.sum16.get_unchecked(at);
                            let xs = if part == 0 {
                                x0
                            } else {
                                *x.sum.get_unchecked(at) - x0
                            };
                            let v = _mm512_sub_epi32(*d, _mm512_set1_epi32(f.zero() * xs));
                            *sum = _mm512_add_epi32(*sum, _mm512_mullo_epi32(sp, v));
                            *d = _mm512_setzero_si512();
                        }
                    }
                }
                if !f.sub16() {
                    let s0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(sc as *const _));
                    for (d, sum) in dot.iter().zip(sums.iter_mut()) {
                        *sum = _mm512_add_epi32(*sum, _mm512_mullo_epi32(s0, *d));
                    }
                }
            }
            let sc = super_scales(w, p, s, half);
            for (i, a) in acc.iter_mut().enumerate() {
                a[half] = finish(f, a[half], sums[i], &sc, x, r0 + i, s);
            }
        }
    }
    store_rows(w, p, r0, &acc, out);
}

/// `MR` rows (eight) from `r0` of panel `p` of a 32-weight format, a half panel at a time as
/// in [`half_super_tile`]: the same integers and [`accumulate`] as [`tile`], so the same bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
unsafe fn half_tile<const MR: usize, const F: usize>(
    w: &Packed,
    x: &Rows,
    p: usize,
    r0: usize,
    out: *mut f32,
) {
    let f = Format::ALL[F];
    let (k, nb) = (w.k(), w.blocks());
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    let xb = (x.q.as_ptr() as *const u8).add(r0 * k);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for half in 0..2 {
        for b in 0..nb {
            let low = w.low.as_ptr().add((p * nb + b) * lb);
            let high = w.high.as_ptr().add((p * nb + b) * hb);
            let mut dot = [_mm512_setzero_si512(); MR];
            for part in 0..2 {
                part_dots(f, (low, high), xb.add(b * BLOCK), k, half, part, &mut dot);
            }
            let sc = block_scales(w, p, b, half);
            for (i, a) in acc.iter_mut().enumerate() {
                a[half] = accumulate(f, a[half], dot[i], sc, x, (r0 + i) * nb + b);
            }
        }
    }
    store_rows(w, p, r0, &acc, out);
}

/// Adds one half (`part` 0: inputs 0..16, 1: 16..32) of a block's integer dot products for
/// half panel `half` to `dot`, one per row: the block's weights at `low`/`high`, row `i`'s
/// inputs for it at `xb + i k`.
#[inline(always)]
unsafe fn part_dots<const MR: usize>(
    f: Format,
    (low, high): (*const u8, *const u8),
    xb: *const u8,
    k: usize,
    half: usize,
    part: usize,
    dot: &mut [__m512i; MR],
) {
    for g in 0..4 {
        let v = if f.bytes() {
            _mm512_loadu_si512(low.add((g + 4 * part) * 128 + half * 64) as *const _)
        } else {
            // Nibbles: the low ones are inputs 0..16, the high ones 16..32.
            let v = _mm512_loadu_si512(low.add(g * 128 + half * 64) as *const _);
            let v = if part == 0 {
                v
            } else {
                _mm512_srli_epi16::<4>(v)
            };
            let v = _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
            with_high(f, v, high, g + 4 * part, half)
        };
        let at = 4 * (g + 4 * part);
        for (i, d) in dot.iter_mut().enumerate() {
            let a = std::ptr::read_unaligned(xb.add(i * k + at) as *const i32);
            *d = _mm512_dpbusd_epi32(*d, v, _mm512_set1_epi32(a));
        }
    }
}

/// Block `b`'s integer dot products for up to 4 rows from `r0` of panel `p`:
/// `[row][first or last 16 inputs][half of the panel]`; all 32 inputs in the first unless the
/// format's scales change every 16 (Q6_K).
#[inline(always)]
unsafe fn block_dots<const MR: usize>(
    f: Format,
    w: &Packed,
    x: &Rows,
    p: usize,
    r0: usize,
    b: usize,
) -> [[[__m512i; 2]; 2]; MR] {
    let (k, nb) = (w.k(), w.blocks());
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    let sub = if f.sub16() { 1 } else { 0 };
    let low = w.low.as_ptr().add((p * nb + b) * lb);
    let high = w.high.as_ptr().add((p * nb + b) * hb);
    let xb = (x.q.as_ptr() as *const u8).add(r0 * k + b * BLOCK);
    // Four input bytes to every lane (a macro: closures do not inherit target features).
    macro_rules! bcast {
        ($i:expr, $g:expr) => {
            _mm512_set1_epi32(std::ptr::read_unaligned(
                xb.add($i * k + 4 * $g) as *const i32
            ))
        };
    }
    let mut dot = [[[_mm512_setzero_si512(); 2]; 2]; MR];
    if f.bytes() {
        for g in 0..8 {
            let w0 = _mm512_loadu_si512(low.add(g * 128) as *const _);
            let w1 = _mm512_loadu_si512(low.add(g * 128 + 64) as *const _);
            for (i, d) in dot.iter_mut().enumerate() {
                let a = bcast!(i, g);
                d[0][0] = _mm512_dpbusd_epi32(d[0][0], w0, a);
                d[0][1] = _mm512_dpbusd_epi32(d[0][1], w1, a);
            }
        }
    } else {
        for g in 0..4 {
            for half in 0..2 {
                let (lo, hi) = unpack_pair(f, low, high, g, half);
                for (i, d) in dot.iter_mut().enumerate() {
                    d[0][half] = _mm512_dpbusd_epi32(d[0][half], lo, bcast!(i, g));
                    d[sub][half] = _mm512_dpbusd_epi32(d[sub][half], hi, bcast!(i, g + 4));
                }
            }
        }
    }
    dot
}
