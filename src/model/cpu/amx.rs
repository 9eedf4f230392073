//! The quantized products of [`super::quant`] for many rows with AMX (Intel Sapphire Rapids and
//! later): one `tdpbsud` multiplies 16 input rows by 16 output columns over 64 inputs (16,384
//! byte products), against 64 for AVX-512 VNNI's `vpdpbusd`.
//!
//! K-quants (Q4_K, Q5_K, Q6_K): for 16 columns of a panel, every weight is multiplied by its
//! block's small scale once (with Q6_K's zero taken out) into a 16-bit integer, split into a
//! low (unsigned) and a high (signed) byte, and laid out as AMX's second operand for the whole
//! row of inputs. Then each super-block of 256 inputs is 4 steps of `tdpbsud` (low bytes) and
//! `tdpbssd` (high bytes) into tiles that hold `sum sc * dot` exactly, for 32 rows at a time;
//! only then do the sums leave the tiles and get scaled in f32 (by [`super::avx512::finish`]),
//! once per super-block instead of once per block of 32.
//!
//! The 32-weight formats (Q4_0, Q8_0, ...) have an f16 scale per block of 32, so their dot
//! products leave the tiles after every block: per panel of 32 columns and group of 32 rows,
//! each block's integers are unpacked into a 1 KB tile, four tiles of dot products come out,
//! and the AVX-512 code of [`super::avx512`] scales them.
//!
//! Either way the integers and the float operations are those of the other kernels, so the
//! results are the same bits. Rows that do not fill a group of 16 go to the VNNI kernel.
//!
//! The tile instructions are written with `asm!` (Rust's AMX intrinsics are not stable), and
//! the process asks Linux for the tile state once (`arch_prctl(ARCH_REQ_XCOMP_PERM)`).

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::avx512::{accumulate, block_scales, finish, store_rows, super_scales, unpack_pair};
use super::quant::{Format, Packed, Rows, BLOCK, PANEL, STEP, SUPER};

/// Rows per tile of inputs.
pub const ROWS: usize = 16;

/// Whether `rows` rows of one call (a chunk of [`super::gemm_parts`]) go through the tiles
/// rather than VNNI's 4-row tiles. Making a super-block's scaled weight tiles (K-quants) or a
/// block's unpacked tile (the others) is vector work shared only by the chunk's rows. Measured
/// on the 1B model's shapes (Sapphire Rapids, 2 threads, `cargo bench --bench kernels`), AMX
/// leads for K-quants from one group of 16 rows (Q4_K 1.07-1.12x at 16 rows, 1.3-1.6x at 32;
/// Q6_K 1.6x at 16, 2.2-2.4x at 32); for Q4_0 VNNI leads at 16 rows (1.1-1.2x) and AMX from
/// 32 (1.1-1.25x). (Before the weight scaling's intrinsics were inlined, VNNI led K-quants up
/// to 64 rows.)
pub fn pays(f: Format, rows: usize) -> bool {
    rows >= if f.k_quant() { ROWS } else { 2 * ROWS }
}

/// Whether this CPU and OS run AMX tiles (asks for the permission on first use).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        super::avx512::available()
            && std::is_x86_feature_detected!("avx512vbmi")
            && cpu_has_amx_int8()
            && request_tiles()
    })
}

/// CPUID leaf 7: AMX-TILE (EDX bit 24) and AMX-INT8 (bit 25). (`is_x86_feature_detected!`
/// does not take AMX names on stable Rust.)
fn cpu_has_amx_int8() -> bool {
    // CPUID leaf 7 exists on every CPU with AVX-512 (checked first).
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// Asks Linux for the AMX tile state for this process (Linux 5.16 and later).
fn request_tiles() -> bool {
    #[cfg(target_os = "linux")]
    {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: a plain system call with integer arguments.
        unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            ) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The 64-byte tile configuration (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// Tiles 0-3: int32 dot products (rows x 16 columns); 4-5: input rows (`k_bytes` each); 6-7:
/// weights (`k_bytes / 4` rows of 16 columns x 4).
fn config(k_bytes: u16) -> TileConfig {
    let mut c = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [0; 16],
        rows: [0; 16],
    };
    for t in 0..4 {
        c.colsb[t] = 64;
        c.rows[t] = ROWS as u8;
    }
    for t in 4..6 {
        c.colsb[t] = k_bytes;
        c.rows[t] = ROWS as u8;
    }
    for t in 6..8 {
        c.colsb[t] = 64;
        c.rows[t] = (k_bytes / 4) as u8;
    }
    c
}

/// Rows r0..r1 of one panel's 32 columns: groups of 32 and 16 rows through the tiles, the
/// rest through the VNNI kernel.
///
/// # Safety
/// [`available`] must be true; `out` points at an (m x n) row-major f32 buffer, m being the
/// rows of `x`, which are tiled ([`Rows::tile`]).
pub unsafe fn panel(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    let full = r0 + (r1 - r0) / ROWS * ROWS;
    if full > r0 {
        if w.format().k_quant() {
            super_panel(w, x, p, r0, full, out);
        } else {
            let cfg = config(BLOCK as u16);
            asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack));
            let mut r = r0;
            while r < full {
                let groups = if r + 2 * ROWS <= full { 2 } else { 1 };
                tiles(w, x, p, r, groups, out);
                r += groups * ROWS;
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }
    if full < r1 {
        super::avx512::panel(w, x, p, full, r1, out);
    }
}

/// Row `t` of 16 rows of inputs from group `group` (tiled, 64 inputs per step): the address of
/// step `t`'s 16 x 64 bytes.
#[inline(always)]
unsafe fn inputs(x: &Rows, group: usize, t: usize) -> *const u8 {
    let steps = x.k.div_ceil(STEP);
    x.tiled.as_ptr().add((group * steps + t) * ROWS * STEP) as *const u8
}

/// `groups` x 16 rows from `r0` of panel `p` of a 32-weight format.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
unsafe fn tiles(w: &Packed, x: &Rows, p: usize, r0: usize, groups: usize, out: *mut f32) {
    let f = w.format();
    let nb = w.blocks();
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    // The block's integers for `tdpbsud`: [group of 4 inputs][half][16 columns x 4].
    #[repr(align(64))]
    struct Scratch([u8; PANEL * BLOCK]);
    let mut scratch = Scratch([0; PANEL * BLOCK]);
    // Dot products out of the tiles: [rows][half][16 rows][16 columns].
    #[repr(align(64))]
    struct Dots([i32; 4 * ROWS * 16]);
    let mut dots = Dots([0; 4 * ROWS * 16]);
    let mut acc = [[_mm512_setzero_ps(); 2]; 2 * ROWS];
    debug_assert!(r0.is_multiple_of(ROWS) && !x.tiled.is_empty());
    for b in 0..nb {
        let low = w.low.as_ptr().add((p * nb + b) * lb);
        let high = w.high.as_ptr().add((p * nb + b) * hb);
        let ints = if f.bytes() {
            low
        } else {
            for g in 0..4 {
                for half in 0..2 {
                    let (lo, hi) = unpack_pair(f, low, high, g, half);
                    let s = scratch.0.as_mut_ptr();
                    _mm512_store_si512(s.add(g * 128 + half * 64) as *mut _, lo);
                    _mm512_store_si512(s.add((g + 4) * 128 + half * 64) as *mut _, hi);
                }
            }
            scratch.0.as_ptr()
        };
        // Tiles 4/5 rows 0-15 and 16-31 (the block's 32 bytes of each 64-byte step row), 6/7
        // the weights' halves, 0-3 (rows) x (half).
        let a = inputs(x, r0 / ROWS, b / 2).add(b % 2 * BLOCK);
        asm!(
            "tilezero tmm0", "tilezero tmm1",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{w0} + {ws}*1]",
            "tileloadd tmm7, [{w1} + {ws}*1]",
            "tdpbsud tmm0, tmm4, tmm6",
            "tdpbsud tmm1, tmm4, tmm7",
            a = in(reg) a,
            s = in(reg) STEP,
            w0 = in(reg) ints,
            w1 = in(reg) ints.add(64),
            ws = in(reg) 128usize,
            options(nostack),
        );
        if groups == 2 {
            asm!(
                "tilezero tmm2", "tilezero tmm3",
                "tileloadd tmm5, [{a2} + {s}*1]",
                "tdpbsud tmm2, tmm5, tmm6",
                "tdpbsud tmm3, tmm5, tmm7",
                a2 = in(reg) inputs(x, r0 / ROWS + 1, b / 2).add(b % 2 * BLOCK),
                s = in(reg) STEP,
                options(nostack),
            );
        }
        store_dots(dots.0.as_mut_ptr(), groups);
        let sc = [block_scales(w, p, b, 0), block_scales(w, p, b, 1)];
        for g in 0..groups {
            for (i, a) in acc[g * ROWS..(g + 1) * ROWS].iter_mut().enumerate() {
                let at = (r0 + g * ROWS + i) * nb + b;
                for (half, (a, sc)) in a.iter_mut().zip(sc).enumerate() {
                    let t = dots.0.as_ptr().add((2 * g + half) * 256 + i * 16);
                    *a = accumulate(f, *a, _mm512_load_si512(t as *const _), sc, x, at);
                }
            }
        }
    }
    store_rows(w, p, r0, &acc[..groups * ROWS], out);
}

/// Stores tiles 0-1, and 2-3 when `groups` is 2 (16 rows x 16 i32 each), one after another
/// from `d` (2 or 4 KB). With one group, tiles 2-3 hold nothing of use.
#[inline(always)]
unsafe fn store_dots(d: *mut i32, groups: usize) {
    asm!(
        "tilestored [{d0} + {ds}*1], tmm0",
        "tilestored [{d1} + {ds}*1], tmm1",
        d0 = in(reg) d,
        d1 = in(reg) d.add(256),
        ds = in(reg) 64usize,
        options(nostack),
    );
    if groups == 2 {
        asm!(
            "tilestored [{d2} + {ds}*1], tmm2",
            "tilestored [{d3} + {ds}*1], tmm3",
            d2 = in(reg) d.add(512),
            d3 = in(reg) d.add(768),
            ds = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// Bytes of one tile.
const TILE: usize = ROWS * STEP;

/// Steps of 64 inputs per super-block.
const STEPS: usize = SUPER / STEP;

/// Rows of one call to [`super_rows`] at most.
const CHUNK: usize = 192;

/// Rows r0..r1 (whole groups of 16) of panel `p` of a K-quant: per super-block, the weights
/// of both halves of the panel are scaled into tiles once ([`super_weights`], 16 KB that stay
/// in L1) and every group of rows runs over them.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vbmi,f16c")]
unsafe fn super_panel(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    #[repr(align(64))]
    struct Weights(#[allow(dead_code)] [[u8; 2 * STEPS * TILE]; 2]); // storage only
                                                                     // Written by `super_weights` before every read, through raw pointers only.
    let mut buf = std::mem::MaybeUninit::<Weights>::uninit();
    let buf = buf.as_mut_ptr() as *mut u8;
    let mut acc = [[_mm512_setzero_ps(); CHUNK]; 2];
    let halves = if p * PANEL + 16 < w.n() { 2 } else { 1 };
    let cfg = config(STEP as u16);
    asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack));
    for c0 in (r0..r1).step_by(CHUNK) {
        let c1 = (c0 + CHUNK).min(r1);
        for a in &mut acc {
            a[..c1 - c0].fill(_mm512_setzero_ps());
        }
        for s in 0..w.k() / SUPER {
            for (half, a) in acc.iter_mut().enumerate().take(halves) {
                let b = buf.add(half * 2 * STEPS * TILE);
                super_weights(w, (p, half), s, b);
                let sc = super_scales(w, p, s, half);
                let mut r = c0;
                while r < c1 {
                    let groups = if r + 2 * ROWS <= c1 { 2 } else { 1 };
                    super_rows(w, x, r, groups, s, b, &sc, &mut a[r - c0..]);
                    r += groups * ROWS;
                }
            }
        }
        for (half, a) in acc.iter().enumerate().take(halves) {
            let col0 = p * PANEL + half * 16;
            let cols = (w.n() - col0).min(16);
            let mask: __mmask16 = if cols == 16 {
                0xffff
            } else {
                (1u16 << cols) - 1
            };
            for (i, v) in a[..c1 - c0].iter().enumerate() {
                _mm512_mask_storeu_ps(out.add((c0 + i) * w.n() + col0), mask, *v);
            }
        }
    }
    asm!("tilerelease", options(nostack, nomem));
}

/// The byte-index vectors of [`super_weights`], by `kind`:
/// - 0 and 1: where the low (0) or high (1) byte of each weight's 16-bit product lies in a pair
///   of `vpmaddubsw` results (the even bytes' products first, then the odd bytes');
/// - 2: byte `p` is `p / 4`, the column of byte `p` of a row of 16 columns x 4 inputs;
/// - 3: 16-bit word `i` is `i / 2` (little-endian), the column of either product's word `i`.
const fn index_table(kind: u8) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut p = 0;
    while p < 64 {
        idx[p] = match kind {
            0 | 1 if p % 2 == 0 => p as u8 + kind,
            0 | 1 => 64 + p as u8 - 1 + kind,
            2 => (p / 4) as u8,
            _ if p % 2 == 0 => (p / 4) as u8,
            _ => 0,
        };
        p += 1;
    }
    idx
}

/// [`index_table`]'s four tables, made at compile time.
static INDEX: [[u8; 64]; 4] = [
    index_table(0),
    index_table(1),
    index_table(2),
    index_table(3),
];

/// The scales of one block's 16 columns (`sc`) for `vpmaddubsw`: each byte's column scale in
/// the even bytes (odd bytes 0), the same in the odd bytes, and (Q6_K) `zero * scale` per word
/// of either product. (Functions rather than closures: closures do not inherit the caller's
/// target features, so their intrinsics would be calls.)
#[inline(always)]
unsafe fn scale_pattern(sub16: bool, sc: *const u8) -> (__m512i, __m512i, __m512i) {
    let by_byte = _mm512_loadu_si512(INDEX[2].as_ptr() as *const _);
    let v = _mm512_castsi128_si512(_mm_loadu_si128(sc as *const _));
    let all = _mm512_permutexvar_epi8(by_byte, v);
    let z = if sub16 {
        let by_word = _mm512_loadu_si512(INDEX[3].as_ptr() as *const _);
        let words = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm512_castsi512_si128(v)));
        _mm512_slli_epi16::<5>(_mm512_permutexvar_epi16(by_word, words))
    } else {
        _mm512_setzero_si512()
    };
    (
        _mm512_maskz_mov_epi8(0x5555_5555_5555_5555, all),
        _mm512_maskz_mov_epi8(0xAAAA_AAAA_AAAA_AAAA, all),
        z,
    )
}

/// The 16-bit products of 16 columns x 4 inputs (`v`) and their scales (scale x integer, with
/// Q6_K's zero taken out), even bytes' and odd bytes', split into their low bytes (at `lo`)
/// and high bytes (at `hi`). At most 63 x 127 in magnitude, so `vpmaddubsw` never saturates.
#[inline(always)]
unsafe fn scale_row(
    sub16: bool,
    v: __m512i,
    (even, odd, z): (__m512i, __m512i, __m512i),
    (lo_idx, hi_idx): (__m512i, __m512i),
    lo: *mut u8,
    hi: *mut u8,
) {
    let mut v0 = _mm512_maddubs_epi16(v, even);
    let mut v1 = _mm512_maddubs_epi16(v, odd);
    if sub16 {
        v0 = _mm512_sub_epi16(v0, z);
        v1 = _mm512_sub_epi16(v1, z);
    }
    _mm512_storeu_si512(lo as *mut _, _mm512_permutex2var_epi8(v0, lo_idx, v1));
    _mm512_storeu_si512(hi as *mut _, _mm512_permutex2var_epi8(v0, hi_idx, v1));
}

/// Super-block `s` of 16 columns of panel `p` (`half`), each weight times its block's small
/// scale, as AMX's second operand: per step of 64 inputs one tile of low bytes (at
/// `buf[t * TILE]`) and one of high bytes (at `buf[(STEPS + t) * TILE]`), row `r` holding
/// inputs `4r..4r + 4` of the 16 columns.
#[inline(always)]
unsafe fn super_weights(w: &Packed, (p, half): (usize, usize), s: usize, out: *mut u8) {
    let f = w.format();
    let sub16 = f.sub16();
    let nb = w.blocks();
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    let idx = (
        _mm512_loadu_si512(INDEX[0].as_ptr() as *const _),
        _mm512_loadu_si512(INDEX[1].as_ptr() as *const _),
    );
    debug_assert!(!sub16 || f.zero() == 32, "the shift by 5 is Q6_K's zero");
    let per = SUPER / BLOCK;
    for b in s * per..(s + 1) * per {
        let base = p * nb + b;
        let low = w.low.as_ptr().add(base * lb);
        let high = w.high.as_ptr().add(base * hb);
        let sc = w.sc.as_ptr().add(base * 2 * PANEL + half * 16);
        if half == 0 && b + per < nb {
            // The next super-block's integers, both halves, while this one is worked on.
            let next = w.low.as_ptr().add((base + per) * lb);
            for line in (0..lb).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(next.add(line) as *const i8);
            }
            let next = w.high.as_ptr().add((base + per) * hb);
            for line in (0..hb).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(next.add(line) as *const i8);
            }
        }
        // Inputs 0-15 and 16-31 of the block (different scales only for Q6_K).
        let first = scale_pattern(sub16, sc);
        let last = if sub16 {
            scale_pattern(sub16, sc.add(PANEL))
        } else {
            first
        };
        let (t, row0) = (b % per / 2, b % 2 * 8);
        let at = |row: usize| {
            (
                out.add(t * TILE + row * STEP),
                out.add((STEPS + t) * TILE + row * STEP),
            )
        };
        for g in 0..4 {
            let (lo, hi) = unpack_pair(f, low, high, g, half);
            let (a, b) = at(row0 + g);
            scale_row(sub16, lo, first, idx, a, b);
            let (a, b) = at(row0 + g + 4);
            scale_row(sub16, hi, last, idx, a, b);
        }
    }
}

/// `groups` x 16 rows from `r0` over super-block `s` of 16 columns, the weights from
/// [`super_weights`], the scales from [`super::avx512::super_scales`]: adds to `acc` (one
/// vector per row).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn super_rows(
    w: &Packed,
    x: &Rows,
    r0: usize,
    groups: usize,
    s: usize,
    buf: *const u8,
    sc: &(__m512, __m512, [__m512i; 4]),
    acc: &mut [__m512],
) {
    // Sums out of the tiles: [group][low, high][16 rows][16 columns].
    #[repr(align(64))]
    struct Dots(#[allow(dead_code)] [i32; 4 * ROWS * 16]); // storage only
                                                           // Written by the tile stores before every read, through raw pointers only.
    let mut dots = std::mem::MaybeUninit::<Dots>::uninit();
    let dots = dots.as_mut_ptr() as *mut i32;
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem)
    );
    for t in 0..STEPS {
        let lo = buf.add(t * TILE);
        let hi = buf.add((STEPS + t) * TILE);
        let a = inputs(x, r0 / ROWS, s * STEPS + t);
        if groups == 2 {
            asm!(
                "tileloadd tmm4, [{a} + {s}*1]",
                "tileloadd tmm6, [{lo} + {s}*1]",
                "tileloadd tmm7, [{hi} + {s}*1]",
                "tdpbsud tmm0, tmm4, tmm6",
                "tileloadd tmm5, [{a2} + {s}*1]",
                "tdpbssd tmm1, tmm4, tmm7",
                "tdpbsud tmm2, tmm5, tmm6",
                "tdpbssd tmm3, tmm5, tmm7",
                a = in(reg) a,
                a2 = in(reg) inputs(x, r0 / ROWS + 1, s * STEPS + t),
                lo = in(reg) lo,
                hi = in(reg) hi,
                s = in(reg) STEP,
                options(nostack),
            );
        } else {
            asm!(
                "tileloadd tmm4, [{a} + {s}*1]",
                "tileloadd tmm6, [{lo} + {s}*1]",
                "tileloadd tmm7, [{hi} + {s}*1]",
                "tdpbsud tmm0, tmm4, tmm6",
                "tdpbssd tmm1, tmm4, tmm7",
                a = in(reg) a,
                lo = in(reg) lo,
                hi = in(reg) hi,
                s = in(reg) STEP,
                options(nostack),
            );
        }
    }
    store_dots(dots, groups);
    let f = w.format();
    for g in 0..groups {
        let (lo, hi) = (dots.add(2 * g * 256), dots.add((2 * g + 1) * 256));
        for i in 0..ROWS {
            let l = _mm512_load_si512(lo.add(i * 16) as *const _);
            let h = _mm512_load_si512(hi.add(i * 16) as *const _);
            let sum = _mm512_add_epi32(l, _mm512_slli_epi32::<8>(h));
            let a = &mut acc[g * ROWS + i];
            *a = finish(f, *a, sum, sc, x, r0 + g * ROWS + i, s);
        }
    }
}
