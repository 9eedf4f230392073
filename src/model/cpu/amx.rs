//! The quantized products of [`super::quant`] for many rows with AMX (Intel Sapphire Rapids and
//! later): one `tdpbsud` multiplies 16 input rows by 16 output columns over a block of 32
//! inputs (8,192 byte products), against 64 for AVX-512 VNNI's `vpdpbusd`.
//!
//! Per panel of 32 columns and group of 32 rows, each block's integers are unpacked once into a
//! 1 KB tile in `vpdpbusd`'s layout (which is also AMX's layout for the second operand), the
//! input rows' bytes are loaded as they are, four tiles of integer dot products come out, and
//! the AVX-512 code of [`super::avx512`] scales them in f32 exactly as the other kernels do:
//! the results are the same bits. Rows that do not fill a group of 16 go to the VNNI kernel.
//!
//! The tile instructions are written with `asm!` (Rust's AMX intrinsics are not stable), and
//! the process asks Linux for the tile state once (`arch_prctl(ARCH_REQ_XCOMP_PERM)`).

use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::avx512::{accumulate, block_scales, store_rows, unpack_pair};
use super::quant::{Format, Packed, Rows, BLOCK, PANEL};

/// Rows per tile of inputs.
pub const ROWS: usize = 16;

/// Whether this CPU and OS run AMX tiles (asks for the permission on first use).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| super::avx512::available() && cpu_has_amx_int8() && request_tiles())
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
/// rows of `x`.
pub unsafe fn panel(w: &Packed, x: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    let mut r = r0;
    if r1 - r0 >= ROWS {
        let cfg = config(if w.format().sub16() { 16 } else { 32 });
        asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack));
        while r + ROWS <= r1 {
            let rows = if r + 2 * ROWS <= r1 { 2 } else { 1 };
            tiles(w, x, p, r, rows, out);
            r += rows * ROWS;
        }
        asm!("tilerelease", options(nostack, nomem));
    }
    if r < r1 {
        super::avx512::panel(w, x, p, r, r1, out);
    }
}

/// `groups` x 16 rows from `r0` of panel `p`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
unsafe fn tiles(w: &Packed, x: &Rows, p: usize, r0: usize, groups: usize, out: *mut f32) {
    let f = w.format();
    let nb = w.blocks();
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    // The block's integers for `tdpbsud`: [group of 4 inputs][half][16 columns x 4].
    #[repr(align(64))]
    struct Scratch([u8; PANEL * BLOCK]);
    let mut scratch = Scratch([0; PANEL * BLOCK]);
    // Dot products out of the tiles: [tile][16 rows][16 columns].
    #[repr(align(64))]
    struct Dots([i32; 8 * ROWS * 16]);
    let mut dots = Dots([0; 8 * ROWS * 16]);
    let mut acc = [[_mm512_setzero_ps(); 2]; 2 * ROWS];
    // Inputs regrouped by `Rows::tile`: 16 rows of a block are 512 contiguous bytes.
    let stride = BLOCK;
    debug_assert!(r0.is_multiple_of(ROWS) && !x.tiled.is_empty());
    let tile_at = |group: usize, b: usize| {
        x.tiled
            .as_ptr()
            .add(((r0 / ROWS + group) * nb + b) * ROWS * BLOCK) as *const u8
    };
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
        let d = dots.0.as_mut_ptr() as *mut u8;
        if f.sub16() {
            // Per 16 inputs: tiles 4/5 the rows' first and last 16 bytes, 6/7 the weights'
            // first and last 4 groups, 0-3 (first, last) x (half 0, half 1). One group of rows.
            for g in 0..groups {
                let a = tile_at(g, b);
                asm!(
                    "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                    "tileloadd tmm4, [{a} + {s}*1]",
                    "tileloadd tmm5, [{a2} + {s}*1]",
                    "tileloadd tmm6, [{w0} + {ws}*1]",
                    "tileloadd tmm7, [{w1} + {ws}*1]",
                    "tdpbsud tmm0, tmm4, tmm6",
                    "tdpbsud tmm1, tmm5, tmm7",
                    "tileloadd tmm6, [{w2} + {ws}*1]",
                    "tileloadd tmm7, [{w3} + {ws}*1]",
                    "tdpbsud tmm2, tmm4, tmm6",
                    "tdpbsud tmm3, tmm5, tmm7",
                    "tilestored [{d0} + {ds}*1], tmm0",
                    "tilestored [{d1} + {ds}*1], tmm1",
                    "tilestored [{d2} + {ds}*1], tmm2",
                    "tilestored [{d3} + {ds}*1], tmm3",
                    a = in(reg) a,
                    a2 = in(reg) a.add(16),
                    s = in(reg) stride,
                    w0 = in(reg) ints,
                    w1 = in(reg) ints.add(4 * 128),
                    w2 = in(reg) ints.add(64),
                    w3 = in(reg) ints.add(4 * 128 + 64),
                    ws = in(reg) 128usize,
                    d0 = in(reg) d,
                    d1 = in(reg) d.add(1024),
                    d2 = in(reg) d.add(2048),
                    d3 = in(reg) d.add(3072),
                    ds = in(reg) 64usize,
                    options(nostack),
                );
                scale(
                    w,
                    x,
                    (p, b),
                    r0 + g * ROWS,
                    &dots.0,
                    [0, 2, 1, 3],
                    &mut acc[g * ROWS..],
                );
            }
        } else {
            // Tiles 4/5 rows 0-15 and 16-31, 6/7 the weights' halves, 0-3 (rows) x (half).
            let a = tile_at(0, b);
            let a2 = if groups == 2 { tile_at(1, b) } else { a };
            asm!(
                "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                "tileloadd tmm4, [{a} + {s}*1]",
                "tileloadd tmm5, [{a2} + {s}*1]",
                "tileloadd tmm6, [{w0} + {ws}*1]",
                "tileloadd tmm7, [{w1} + {ws}*1]",
                "tdpbsud tmm0, tmm4, tmm6",
                "tdpbsud tmm1, tmm4, tmm7",
                "tdpbsud tmm2, tmm5, tmm6",
                "tdpbsud tmm3, tmm5, tmm7",
                "tilestored [{d0} + {ds}*1], tmm0",
                "tilestored [{d1} + {ds}*1], tmm1",
                "tilestored [{d2} + {ds}*1], tmm2",
                "tilestored [{d3} + {ds}*1], tmm3",
                a = in(reg) a,
                a2 = in(reg) a2,
                s = in(reg) stride,
                w0 = in(reg) ints,
                w1 = in(reg) ints.add(64),
                ws = in(reg) 128usize,
                d0 = in(reg) d,
                d1 = in(reg) d.add(1024),
                d2 = in(reg) d.add(2048),
                d3 = in(reg) d.add(3072),
                ds = in(reg) 64usize,
                options(nostack),
            );
            for g in 0..groups {
                let t = [2 * g, 2 * g, 2 * g + 1, 2 * g + 1];
                scale(
                    w,
                    x,
                    (p, b),
                    r0 + g * ROWS,
                    &dots.0,
                    t,
                    &mut acc[g * ROWS..],
                );
            }
        }
    }
    store_rows(w, p, r0, &acc[..groups * ROWS], out);
}

/// Scales block `b`'s dot products of panel `p` for 16 rows from `row0` into `acc`. `tiles` names the tiles
/// holding them: for Q6_K (first 16 inputs of half 0, of half 1, last 16 of half 0, of half 1),
/// else (half 0, -, half 1, -).
#[inline(always)]
unsafe fn scale(
    w: &Packed,
    x: &Rows,
    (p, b): (usize, usize),
    row0: usize,
    dots: &[i32],
    tiles: [usize; 4],
    acc: &mut [[__m512; 2]],
) {
    let f: Format = w.format();
    let nb = w.blocks();
    for half in 0..2 {
        let sc = block_scales(w, p, b, half);
        let (t0, t1) = if f.sub16() {
            (tiles[half], tiles[2 + half])
        } else {
            (tiles[2 * half], tiles[2 * half])
        };
        for (i, a) in acc.iter_mut().enumerate().take(ROWS) {
            let d0 = _mm512_load_si512(dots.as_ptr().add(t0 * 256 + i * 16) as *const _);
            let d1 = _mm512_load_si512(dots.as_ptr().add(t1 * 256 + i * 16) as *const _);
            a[half] = accumulate(f, a[half], d0, d1, sc, x, (row0 + i) * nb + b);
        }
    }
}
