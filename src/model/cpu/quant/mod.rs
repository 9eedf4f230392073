//! GGUF's block formats kept at their stored width, laid out for integer dot products.
//!
//! Every supported format stores a weight as a small unsigned integer `u` and per-block scales,
//! `w = D * (u - zero)` or `w = D * u - M` for a block of 32 (or 16) consecutive inputs:
//!
//! | format | bits of `u` | zero | `D` (per 32 inputs unless said) | `M` |
//! | --- | --- | --- | --- | --- |
//! | Q4_0 / Q5_0 / Q8_0 | 4 / 5 / 8 | 8 / 16 / 128 | `d` (f16) | |
//! | Q4_1 / Q5_1 | 4 / 5 | | `d` (f16) | `-m` (f16) |
//! | Q4_K / Q5_K | 4 / 5 | | `d * sc` (f16 per 256 x 6-bit) | `dmin * m` (likewise) |
//! | Q6_K | 6 | 32 | `d * sc`, per 16 inputs (f16 per 256 x i8) | |
//!
//! [`Packed`] keeps exactly those integers and scales, regrouped into panels of 32 output
//! columns so that one 64-byte load feeds a `vpdpbusd` with 16 columns x 4 inputs: the low
//! 4 bits of `u` as nibbles (two groups of 4 inputs per byte), bits 4 and 5 (Q5, Q6) in a
//! plane beside them, Q8_0 as whole bytes. The scales stay in their stored form (f16 and
//! small integers) and are multiplied out in f32 when used, which is exact. So a Q4_K_M model
//! takes in memory what it takes on disk.
//!
//! Inputs are quantized to signed bytes ([`Rows`]) as llama.cpp quantizes them for the same
//! formats: per block of 32 with an f16-rounded scale (its Q8_0 and Q8_1) for the 32-weight
//! formats, and per super-block of 256 with an f32 scale (its Q8_K) for K-quants. A block's
//! contribution to an output of a 32-weight format is then an exact integer dot product times
//! `D * dx`, plus the zero or minimum correction from the input's block sum; a K-quant's
//! blocks are first summed in integers with their small scales, so the only rounding is in
//! f32 once per super-block. Either way the floats are formed in one fixed order.
//! [`gemm_portable`] is that arithmetic in plain Rust; the SIMD kernels (`super::avx512`,
//! `super::amx`) do the same operations in the same order, so all give the same bits, and
//! every output element is computed the same way whatever the number of rows in the call
//! (batch invariance).

pub(crate) mod portable;
pub(crate) mod rows;

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;
use rayon::prelude::*;

use super::pages::Pages;

pub use portable::{gemm_portable, panel_portable};
pub use rows::{Rows, Scheme, STEP};

/// Inputs per quantization block of the inputs, and per unit of the packed layout.
pub const BLOCK: usize = 32;
/// Output columns per panel: two vectors of 16 i32 lanes.
pub const PANEL: usize = 32;
/// Inputs per K-quant super-block (one `d` and `dmin`).
pub const SUPER: usize = 256;

/// The stored formats [`Packed`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Q4_0,
        Format::Q4_1,
        Format::Q5_0,
        Format::Q5_1,
        Format::Q8_0,
        Format::Q4K,
        Format::Q5K,
        Format::Q6K,
    ];

    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Format::Q4_0,
            GgmlDType::Q4_1 => Format::Q4_1,
            GgmlDType::Q5_0 => Format::Q5_0,
            GgmlDType::Q5_1 => Format::Q5_1,
            GgmlDType::Q8_0 => Format::Q8_0,
            GgmlDType::Q4K => Format::Q4K,
            GgmlDType::Q5K => Format::Q5K,
            GgmlDType::Q6K => Format::Q6K,
            _ => return None,
        })
    }

    pub fn ggml(self) -> GgmlDType {
        match self {
            Format::Q4_0 => GgmlDType::Q4_0,
            Format::Q4_1 => GgmlDType::Q4_1,
            Format::Q5_0 => GgmlDType::Q5_0,
            Format::Q5_1 => GgmlDType::Q5_1,
            Format::Q8_0 => GgmlDType::Q8_0,
            Format::Q4K => GgmlDType::Q4K,
            Format::Q5K => GgmlDType::Q5K,
            Format::Q6K => GgmlDType::Q6K,
        }
    }

    /// Bits of each stored integer above the low nibble: 0, 1 (Q5) or 2 (Q6); Q8_0 is whole
    /// bytes ([`Format::bytes`]).
    pub const fn high_bits(self) -> usize {
        match self {
            Format::Q5_0 | Format::Q5_1 | Format::Q5K => 1,
            Format::Q6K => 2,
            _ => 0,
        }
    }

    /// Whether the integers are whole bytes (Q8_0) rather than nibbles (+ a high plane).
    pub const fn bytes(self) -> bool {
        matches!(self, Format::Q8_0)
    }

    /// The zero point subtracted in integers (0 for formats with a minimum instead).
    pub const fn zero(self) -> i32 {
        match self {
            Format::Q4_0 => 8,
            Format::Q5_0 => 16,
            Format::Q8_0 => 128,
            Format::Q6K => 32,
            _ => 0,
        }
    }

    /// Whether a block has a minimum `M` (`w = D * u - M`).
    pub const fn has_min(self) -> bool {
        matches!(
            self,
            Format::Q4_1 | Format::Q5_1 | Format::Q4K | Format::Q5K
        )
    }

    /// Whether `D` and `M` are a per-256 f16 times a per-block small integer (K-quants).
    pub const fn k_quant(self) -> bool {
        matches!(self, Format::Q4K | Format::Q5K | Format::Q6K)
    }

    /// Whether the scale changes every 16 inputs (Q6_K) instead of every 32.
    pub const fn sub16(self) -> bool {
        matches!(self, Format::Q6K)
    }

    /// Inputs per stored super-block (the unit of the f16 scales).
    pub const fn super_len(self) -> usize {
        if self.k_quant() {
            SUPER
        } else {
            BLOCK
        }
    }

    /// Bytes of one stored block of [`Format::super_len`] weights in the GGUF file.
    pub const fn stored_bytes(self) -> usize {
        match self {
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q5_0 => 22,
            Format::Q5_1 => 24,
            Format::Q8_0 => 34,
            Format::Q4K => 144,
            Format::Q5K => 176,
            Format::Q6K => 210,
        }
    }

    /// Bytes of low integers per panel and block of 32 inputs.
    pub const fn low_bytes(self) -> usize {
        if self.bytes() {
            PANEL * BLOCK
        } else {
            PANEL * BLOCK / 2
        }
    }

    /// Bytes of the high plane per panel and block.
    pub const fn high_bytes(self) -> usize {
        PANEL * BLOCK * self.high_bits() / 8
    }

    /// Small integer scales per column and block: sc and m (Q4_K, Q5_K), or two sc (Q6_K).
    pub const fn sub_scales(self) -> usize {
        if self.k_quant() {
            2
        } else {
            0
        }
    }
}

/// A weight matrix (n outputs x k inputs) at its stored width, for [`gemm_portable`] and the
/// SIMD kernels.
#[derive(Debug, Clone)]
pub struct Packed {
    pub(crate) format: Format,
    pub(crate) n: usize,
    pub(crate) k: usize,
    /// Per panel, per block: the low integers ([`Format::low_bytes`]). Nibbles: byte
    /// `[g][half][lane * 4 + j]` holds input `4g + j` of column `16 half + lane` in its low
    /// nibble and input `4(g + 4) + j` in its high nibble, g in 0..4. Whole bytes:
    /// `[g][half][lane * 4 + j]` for g in 0..8.
    pub(crate) low: Pages<u8>,
    /// Per panel, per block: bits 4 (and 5) of the integers ([`Format::high_bytes`]). One bit:
    /// byte `[half][lane * 4 + j]`, bit g for input `4g + j`. Two bits: byte
    /// `[g / 4][half][lane * 4 + j]`, bits `2 (g % 4)` and up.
    pub(crate) high: Pages<u8>,
    /// Per panel, per super-block, per column: `d`.
    pub(crate) d: Pages<f16>,
    /// Per panel, per super-block, per column: `m` (Q4_1, Q5_1, stored negated as `-m`) or
    /// `dmin` (Q4_K, Q5_K); empty for formats without a minimum.
    pub(crate) m: Pages<f16>,
    /// Per panel, per block: [`Format::sub_scales`] x 32 columns of small integers (Q6_K's
    /// are i8 stored as bytes).
    pub(crate) sc: Pages<u8>,
}

impl Packed {
    pub fn format(&self) -> Format {
        self.format
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub(crate) fn blocks(&self) -> usize {
        self.k / BLOCK
    }

    pub(crate) fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    /// Bytes held (the integers and the scales).
    pub fn bytes(&self) -> usize {
        self.low.len() + self.high.len() + 2 * (self.d.len() + self.m.len()) + self.sc.len()
    }

    /// Packs a quantized (n, k) weight, or `None` for formats and shapes this layout does not
    /// take.
    pub fn from_qtensor(q: &QTensor) -> candle_core::Result<Option<Self>> {
        let (n, k) = match q.shape().dims() {
            &[n, k] => (n, k),
            _ => return Ok(None),
        };
        let Some(format) = Format::from_ggml(q.dtype()) else {
            return Ok(None);
        };
        Self::from_raw(format, n, k, &q.data()?).map(Some)
    }

    /// Packs the GGUF bytes of an (n, k) matrix stored as `format`.
    pub fn from_raw(format: Format, n: usize, k: usize, raw: &[u8]) -> candle_core::Result<Self> {
        let sl = format.super_len();
        if n == 0 || k == 0 {
            candle_core::bail!("an empty {n}x{k} matrix");
        }
        if !k.is_multiple_of(sl) {
            candle_core::bail!("{format:?} rows of {k} values are not whole blocks of {sl}");
        }
        let per_row = k / sl * format.stored_bytes();
        if raw.len() != n * per_row {
            candle_core::bail!("{} bytes for a {n}x{k} {format:?} matrix", raw.len());
        }
        let (panels, nb, ns) = (n.div_ceil(PANEL), k / BLOCK, k / sl);
        let (lb, hb, subs) = (format.low_bytes(), format.high_bytes(), format.sub_scales());
        let m_len = if format.has_min() { ns * PANEL } else { 0 };
        // Panels are independent: each is packed on its own, in parallel, then joined.
        let pieces: Vec<Packed> = (0..panels)
            .into_par_iter()
            .map(|panel| {
                let mut piece = Packed {
                    format,
                    n: PANEL,
                    k,
                    low: vec![0; nb * lb].into(),
                    high: vec![0; nb * hb].into(),
                    d: vec![f16::ZERO; ns * PANEL].into(),
                    m: vec![f16::ZERO; m_len].into(),
                    sc: vec![0; nb * subs * PANEL].into(),
                };
                let mut u = vec![0u8; sl];
                for c in 0..PANEL.min(n - panel * PANEL) {
                    let row = panel * PANEL + c;
                    for s in 0..ns {
                        let blk = &raw[row * per_row + s * format.stored_bytes()..]
                            [..format.stored_bytes()];
                        let first = s * (sl / BLOCK);
                        let sc = &mut piece.sc;
                        let (dd, mm) = decode(format, blk, &mut u, |b, a, z| {
                            let at = (first + b) * 2 * PANEL + c;
                            sc[at] = a;
                            sc[at + PANEL] = z;
                        });
                        piece.d[s * PANEL + c] = dd;
                        if format.has_min() {
                            piece.m[s * PANEL + c] = mm;
                        }
                        for (b, ub) in u.chunks_exact(BLOCK).enumerate() {
                            let b = first + b;
                            put_ints(
                                format,
                                c,
                                ub,
                                &mut piece.low[b * lb..][..lb],
                                &mut piece.high[b * hb..][..hb],
                            );
                        }
                    }
                }
                piece
            })
            .collect();
        let refs: Vec<&Packed> = pieces.iter().collect();
        let mut joined = Packed::concat(&refs).expect("panels of one matrix");
        joined.n = n;
        Ok(joined)
    }

    /// The stored integer of output `row`, input `col`.
    pub(crate) fn int(&self, row: usize, col: usize) -> u8 {
        let f = self.format;
        let (b, kk) = (col / BLOCK, col % BLOCK);
        let (g, j) = (kk / 4, kk % 4);
        let (half, lane) = (row % PANEL / 16, row % 16);
        let base = row / PANEL * self.blocks() + b;
        let low = &self.low[base * f.low_bytes()..];
        if f.bytes() {
            return low[g * 128 + half * 64 + lane * 4 + j];
        }
        let mut u = (low[(g % 4) * 128 + half * 64 + lane * 4 + j] >> (4 * (g / 4))) & 0x0f;
        let hb = f.high_bytes();
        if hb > 0 {
            let high = &self.high[base * hb..];
            u |= match f.high_bits() {
                1 => ((high[half * 64 + lane * 4 + j] >> g) & 1) << 4,
                _ => ((high[(g / 4) * 128 + half * 64 + lane * 4 + j] >> (2 * (g % 4))) & 3) << 4,
            };
        }
        u
    }

    /// `(D, M)` of output `row` for the inputs of block `b` (for Q6_K, `half` picks the first or
    /// second 16 inputs), as the kernels compute them: exact products in f32.
    pub(crate) fn scales(&self, row: usize, b: usize, half: usize) -> (f32, f32) {
        let f = self.format;
        let (panel, c) = (row / PANEL, row % PANEL);
        let per = f.super_len() / BLOCK;
        let s = (panel * (self.k / f.super_len()) + b / per) * PANEL + c;
        let d = self.d[s].to_f32();
        let m = if f.has_min() { self.m[s].to_f32() } else { 0.0 };
        if !f.k_quant() {
            return (d, m);
        }
        let at = (panel * self.blocks() + b) * 2 * PANEL + c;
        if f.sub16() {
            let sc = self.sc[at + half * PANEL] as i8;
            return (d * sc as f32, 0.0);
        }
        (d * self.sc[at] as f32, m * self.sc[at + PANEL] as f32)
    }

    /// The weight at output `row`, input `col`, as the kernels see it.
    pub fn weight(&self, row: usize, col: usize) -> f32 {
        let f = self.format;
        let u = self.int(row, col) as i32;
        let (dd, mm) = self.scales(row, col / BLOCK, col % BLOCK / 16);
        if f.has_min() {
            dd * u as f32 - mm
        } else {
            dd * (u - f.zero()) as f32
        }
    }

    /// Output `row`'s weights (an embedding row when the matrix is a token table).
    pub fn row(&self, row: usize) -> Vec<f32> {
        (0..self.k).map(|c| self.weight(row, c)).collect()
    }

    /// Weights that read the same input side by side (Q, K and V; gate and up), so one call
    /// quantizes the input once and computes all of them; `None` unless every part but the last
    /// fills whole panels and all share `k` and format.
    pub fn concat(parts: &[&Packed]) -> Option<Packed> {
        let first = parts.first()?;
        let (init, _) = parts.split_at(parts.len() - 1);
        if parts
            .iter()
            .any(|p| p.k != first.k || p.format != first.format)
            || init.iter().any(|p| !p.n.is_multiple_of(PANEL))
        {
            return None;
        }
        fn cat<T: Copy>(parts: &[&Packed], f: impl Fn(&Packed) -> &[T]) -> Pages<T> {
            Pages::concat(parts.iter().map(|p| f(p)))
        }
        Some(Packed {
            format: first.format,
            n: parts.iter().map(|p| p.n).sum(),
            k: first.k,
            low: cat(parts, |p| &p.low),
            high: cat(parts, |p| &p.high),
            d: cat(parts, |p| &p.d),
            m: cat(parts, |p| &p.m),
            sc: cat(parts, |p| &p.sc),
        })
    }
}

/// Column `c` of a panel's block of integers `u` into its low bytes and high plane.
fn put_ints(f: Format, c: usize, u: &[u8], low: &mut [u8], high: &mut [u8]) {
    let (half, lane) = (c / 16, c % 16);
    for (kk, &v) in u.iter().enumerate() {
        let (g, j) = (kk / 4, kk % 4);
        let at = half * 64 + lane * 4 + j;
        if f.bytes() {
            low[g * 128 + at] = v;
        } else {
            low[(g % 4) * 128 + at] |= (v & 0x0f) << (4 * (g / 4));
        }
        let top = v >> 4;
        match f.high_bits() {
            0 => {}
            1 => high[at] |= (top & 1) << g,
            _ => high[(g / 4) * 128 + at] |= (top & 3) << (2 * (g % 4)),
        }
    }
}

/// One stored super-block of `format` into its integers `u` (one per weight), its f16 scales
/// `(d, m)` (`m`: `-m` of Q4_1/Q5_1, `dmin` of K-quants), and through `sub(block, sc, m)` the
/// small scales of each block of 32 (K-quants).
fn decode(
    format: Format,
    blk: &[u8],
    u: &mut [u8],
    mut sub: impl FnMut(usize, u8, u8),
) -> (f16, f16) {
    let h = |at: usize| f16::from_le_bytes([blk[at], blk[at + 1]]);
    let nibbles = |qs: &[u8], u: &mut [u8]| {
        for (j, &byte) in qs.iter().enumerate() {
            u[j] = byte & 0x0f;
            u[j + 16] = byte >> 4;
        }
    };
    let fifth = |qh: u32, u: &mut [u8]| {
        for (j, v) in u.iter_mut().enumerate().take(BLOCK) {
            *v |= (((qh >> j) & 1) as u8) << 4;
        }
    };
    match format {
        Format::Q4_0 => {
            nibbles(&blk[2..18], u);
            (h(0), f16::ZERO)
        }
        Format::Q4_1 => {
            nibbles(&blk[4..20], u);
            (h(0), -h(2))
        }
        Format::Q5_0 => {
            nibbles(&blk[6..22], u);
            fifth(u32::from_le_bytes(blk[2..6].try_into().unwrap()), u);
            (h(0), f16::ZERO)
        }
        Format::Q5_1 => {
            nibbles(&blk[8..24], u);
            fifth(u32::from_le_bytes(blk[4..8].try_into().unwrap()), u);
            (h(0), -h(2))
        }
        Format::Q8_0 => {
            for (v, &byte) in u.iter_mut().zip(&blk[2..34]) {
                *v = (byte as i8 as i32 + 128) as u8;
            }
            (h(0), f16::ZERO)
        }
        Format::Q4K | Format::Q5K => {
            // d, dmin, 12 bytes of 6-bit scales and mins, [Q5: 32 bytes of fifth bits], nibbles.
            let scales = &blk[4..16];
            for b in 0..8 {
                let (sc, m) = k_scale_min(b, scales);
                sub(b, sc, m);
            }
            let (qh, qs) = if format == Format::Q5K {
                (Some(&blk[16..48]), &blk[48..176])
            } else {
                (None, &blk[16..144])
            };
            // 64 inputs per 32 bytes: low nibbles the first 32, high nibbles the next 32.
            for c in 0..4 {
                for l in 0..32 {
                    let byte = qs[c * 32 + l];
                    u[c * 64 + l] = byte & 0x0f;
                    u[c * 64 + 32 + l] = byte >> 4;
                    if let Some(qh) = qh {
                        u[c * 64 + l] |= ((qh[l] >> (2 * c)) & 1) << 4;
                        u[c * 64 + 32 + l] |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                    }
                }
            }
            (h(0), h(2))
        }
        Format::Q6K => {
            // ql[128], qh[64], scales[16] (i8), d.
            let (ql, qh, scales) = (&blk[0..128], &blk[128..192], &blk[192..208]);
            for half in 0..2 {
                let (ql, qh) = (&ql[half * 64..], &qh[half * 32..]);
                let u = &mut u[half * 128..];
                for l in 0..32 {
                    u[l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
                    u[l + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
                    u[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                    u[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                }
            }
            for b in 0..8 {
                sub(b, scales[2 * b], scales[2 * b + 1]);
            }
            (h(208), f16::ZERO)
        }
    }
}

/// The 6-bit scale and minimum of block `j` of a Q4_K/Q5_K super-block (llama.cpp's layout).
fn k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}
