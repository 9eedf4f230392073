//! The arithmetic of [`super`] in plain Rust: the portable kernel, which the SIMD kernels match
//! bit for bit.

use super::{Format, Packed, Rows, BLOCK, PANEL, SUPER};

/// One panel's block of integers in the packed order `[g][half][lane * 4 + j]` (g in 0..8):
/// the nibbles split, the high plane added.
#[inline(always)]
fn unpack(f: Format, low: &[u8], high: &[u8], u: &mut [u8; PANEL * BLOCK]) {
    if f.bytes() {
        u.copy_from_slice(&low[..PANEL * BLOCK]);
        return;
    }
    let (lo, hi) = u.split_at_mut(PANEL * BLOCK / 2);
    for ((l, h), &v) in lo
        .iter_mut()
        .zip(hi.iter_mut())
        .zip(&low[..PANEL * BLOCK / 2])
    {
        *l = v & 0x0f;
        *h = v >> 4;
    }
    match f.high_bits() {
        0 => {}
        1 => {
            for (g, ug) in u.chunks_exact_mut(128).enumerate() {
                for (v, &h) in ug.iter_mut().zip(&high[..128]) {
                    *v |= ((h >> g) & 1) << 4;
                }
            }
        }
        _ => {
            for (g, ug) in u.chunks_exact_mut(128).enumerate() {
                let plane = &high[(g / 4) * 128..][..128];
                for (v, &h) in ug.iter_mut().zip(plane) {
                    *v |= ((h >> (2 * (g % 4))) & 3) << 4;
                }
            }
        }
    }
}

/// One input row's integer dot products with a panel's unpacked block, per column (first 16
/// inputs, last 16): the same sums `vpdpbusd` forms, lane by lane.
#[inline(always)]
fn block_dots(u: &[u8; PANEL * BLOCK], xq: &[i8], dots: &mut [[i32; 2]; PANEL]) {
    let mut lanes = [[0i32; 128]; 2];
    for (g, ug) in u.chunks_exact(128).enumerate() {
        let x4 = [0, 1, 2, 3].map(|j| xq[4 * g + j] as i32);
        let acc = &mut lanes[g / 4];
        for (r, (a, &v)) in acc.iter_mut().zip(ug).enumerate() {
            *a += v as i32 * x4[r % 4];
        }
    }
    for (c, d) in dots.iter_mut().enumerate() {
        for (s, l) in lanes.iter().enumerate() {
            d[s] = l[c * 4] + l[c * 4 + 1] + l[c * 4 + 2] + l[c * 4 + 3];
        }
    }
}

/// Adds block `at`'s contribution to one output of a 32-weight format, in the kernels' order:
/// `dot` the block's integer dot products (first 16 inputs, last 16), `dd`/`mm` its `D` and `M`.
#[inline(always)]
pub(crate) fn accumulate(
    f: Format,
    acc: f32,
    dot: [i32; 2],
    dd: f32,
    mm: f32,
    x: &Rows,
    at: usize,
) -> f32 {
    let total = dot[0] + dot[1] - f.zero() * x.sum[at];
    let acc = (total as f32).mul_add(dd * x.d[at], acc);
    if f.has_min() {
        (-mm).mul_add(x.s[at], acc)
    } else {
        acc
    }
}

/// Block `at`'s integer terms for one K-quant output: the dot product times the block's small
/// scale(s) with Q6_K's zero taken out, and the block's minimum times the input's sum. `dot` is
/// [`block_dots`]'s pair, `a` and `b` the block's two small scales (sc and m, or Q6_K's two).
#[inline(always)]
pub(crate) fn super_terms(
    f: Format,
    dot: [i32; 2],
    a: u8,
    b: u8,
    x: &Rows,
    at: usize,
) -> (i32, i32) {
    if f.sub16() {
        let (s0, s1) = (x.sum16[at], x.sum[at] - x.sum16[at]);
        let z = f.zero();
        let t = (a as i8 as i32) * (dot[0] - z * s0) + (b as i8 as i32) * (dot[1] - z * s1);
        (t, 0)
    } else {
        (a as i32 * (dot[0] + dot[1]), b as i32 * x.sum[at])
    }
}

/// Adds a K-quant super-block's integer sums to one output, in the kernels' order: `d` and
/// `dmin` the weights' f16 scales, `dx` the input's.
#[inline(always)]
pub(crate) fn finish(f: Format, acc: f32, sums: (i32, i32), d: f32, dmin: f32, dx: f32) -> f32 {
    let acc = (sums.0 as f32).mul_add(d * dx, acc);
    if f.has_min() {
        (-(sums.1 as f32)).mul_add(dmin * dx, acc)
    } else {
        acc
    }
}

/// `x (m, k) * w^T -> (m, n)` row-major in plain Rust: the reference the SIMD kernels are
/// checked against bit for bit.
pub fn gemm_portable(w: &Packed, x: &[f32]) -> Vec<f32> {
    let rows = Rows::quantize(x, w.k, w.format.scheme(), false);
    let mut out = vec![0f32; rows.m * w.n];
    for p in 0..w.panels() {
        // SAFETY: `out` is the (m x n) output.
        unsafe { panel_portable(w, &rows, p, 0, rows.m, out.as_mut_ptr()) };
    }
    out
}

/// Rows r0..r1 of panel `p` in plain Rust: the portable kernel.
///
/// # Safety
/// `out` points at an (m x n) row-major f32 buffer, m being the rows of `rows`.
pub unsafe fn panel_portable(
    w: &Packed,
    rows: &Rows,
    p: usize,
    r0: usize,
    r1: usize,
    out: *mut f32,
) {
    panel(w, rows, p, r0, r1, out)
}

/// Rows r0..r1 of one panel's 32 columns, written into `out` (m x n).
#[inline(always)]
unsafe fn panel(w: &Packed, rows: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    if w.format.k_quant() {
        return panel_super(w, rows, p, r0, r1, out);
    }
    let f = w.format;
    let nb = w.blocks();
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    let m = r1 - r0;
    let mut acc = vec![0f32; m * PANEL];
    let mut dots = [[0i32; 2]; PANEL];
    let mut u = [0u8; PANEL * BLOCK];
    let cols = (w.n - p * PANEL).min(PANEL);
    let mut scales = [(0f32, 0f32); PANEL];
    for b in 0..nb {
        let base = p * nb + b;
        unpack(f, &w.low[base * lb..], &w.high[base * hb..], &mut u);
        for (c, s) in scales.iter_mut().enumerate().take(cols) {
            *s = w.scales(p * PANEL + c, b, 0);
        }
        for r in 0..m {
            let xq = &rows.q[(r0 + r) * w.k + b * BLOCK..][..BLOCK];
            block_dots(&u, xq, &mut dots);
            for (c, &(dd, mm)) in scales.iter().enumerate().take(cols) {
                let a = &mut acc[r * PANEL + c];
                *a = accumulate(f, *a, dots[c], dd, mm, rows, (r0 + r) * nb + b);
            }
        }
    }
    store(w, p, r0, r1, &acc, out);
}

/// [`panel`] for K-quants: integer sums over each super-block, then [`finish`].
#[inline(always)]
unsafe fn panel_super(w: &Packed, rows: &Rows, p: usize, r0: usize, r1: usize, out: *mut f32) {
    let f = w.format;
    let nb = w.blocks();
    let (per, ns) = (SUPER / BLOCK, w.k / SUPER);
    let (lb, hb) = (f.low_bytes(), f.high_bytes());
    let m = r1 - r0;
    let cols = (w.n - p * PANEL).min(PANEL);
    let mut acc = vec![0f32; m * PANEL];
    let mut sums = vec![(0i32, 0i32); m * PANEL];
    let mut dots = [[0i32; 2]; PANEL];
    let mut u = [0u8; PANEL * BLOCK];
    for s in 0..ns {
        sums.fill((0, 0));
        for b in s * per..(s + 1) * per {
            let base = p * nb + b;
            unpack(f, &w.low[base * lb..], &w.high[base * hb..], &mut u);
            let sc = &w.sc[base * 2 * PANEL..][..2 * PANEL];
            for r in 0..m {
                let at = (r0 + r) * nb + b;
                block_dots(&u, &rows.q[at * BLOCK..][..BLOCK], &mut dots);
                for c in 0..cols {
                    let (t, tm) = super_terms(f, dots[c], sc[c], sc[PANEL + c], rows, at);
                    let e = &mut sums[r * PANEL + c];
                    *e = (e.0 + t, e.1 + tm);
                }
            }
        }
        for c in 0..cols {
            let at = (p * ns + s) * PANEL + c;
            let d = w.d[at].to_f32();
            let dmin = if f.has_min() { w.m[at].to_f32() } else { 0.0 };
            for r in 0..m {
                let dx = rows.d[(r0 + r) * ns + s];
                let a = &mut acc[r * PANEL + c];
                *a = finish(f, *a, sums[r * PANEL + c], d, dmin, dx);
            }
        }
    }
    store(w, p, r0, r1, &acc, out);
}

/// Rows r0..r1 of a panel's outputs (`acc`, 32 per row) into `out` (m x n).
#[inline(always)]
unsafe fn store(w: &Packed, p: usize, r0: usize, r1: usize, acc: &[f32], out: *mut f32) {
    let cols = (w.n - p * PANEL).min(PANEL);
    for r in 0..r1 - r0 {
        let dst = out.add((r0 + r) * w.n + p * PANEL);
        std::ptr::copy_nonoverlapping(acc[r * PANEL..].as_ptr(), dst, cols);
    }
}
