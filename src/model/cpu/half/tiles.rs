//! The tiling of [`super::gemm`], written once for every instruction set: an instruction set
//! gives its registers for the 16 lanes of a dot product ([`Lanes`]), its tile size and its
//! target features to [`half_tiles`], which writes its `columns`.

/// The 16 running sums of one dot product in an instruction set's registers, lane `l` holding
/// the inputs `j` with `j % 16 == l` (see the module documentation of [`super`]).
pub(super) trait Lanes: Copy {
    unsafe fn zero() -> Self;
    /// 16 weights from `p`, bf16 (`BF16`) or f16, widened to f32.
    unsafe fn weights<const BF16: bool>(p: *const u16) -> Self;
    /// 16 inputs from `p`.
    unsafe fn inputs(p: *const f32) -> Self;
    /// `w * x + self` in every lane, rounded once.
    unsafe fn fma(self, w: Self, x: Self) -> Self;
    /// The lanes added in the order of [`super::reduce`].
    unsafe fn reduce(self) -> f32;
}

/// The tiling for one instruction set: `columns::<BF16>` (columns c0..c1 of every row of
/// `x (m, k)`), in tiles of `$mr` rows by `$nr` columns (at most 4 each) and their remainders,
/// each column group's weights staying in cache while every row passes; every function
/// compiled with `$features`. (A macro rather than generic functions: generics inlined into
/// one function with the target features ran 25% slower than a function per tile.)
macro_rules! half_tiles {
    ($lanes:ty, $features:literal, $mr:literal, $nr:literal) => {
        /// Columns c0..c1 of every row of `x (m, k)`, bf16 weights (`BF16`) or f16.
        ///
        /// # Safety
        /// The CPU has what `available` checks; `out` is the (m, n) row-major output.
        #[target_feature(enable = $features)]
        pub unsafe fn columns<const BF16: bool>(
            w: &Half,
            x: &[f32],
            m: usize,
            c0: usize,
            c1: usize,
            out: *mut f32,
        ) {
            let mut c = c0;
            while c + $nr <= c1 {
                group::<BF16, $nr>(w, x, m, c, out);
                c += $nr;
            }
            match c1 - c {
                3 => group::<BF16, 3>(w, x, m, c, out),
                2 => group::<BF16, 2>(w, x, m, c, out),
                1 => group::<BF16, 1>(w, x, m, c, out),
                _ => {}
            }
        }

        /// Columns c..c+NR of every row.
        #[target_feature(enable = $features)]
        unsafe fn group<const BF16: bool, const NR: usize>(
            w: &Half,
            x: &[f32],
            m: usize,
            c: usize,
            out: *mut f32,
        ) {
            let mut r = 0;
            while r + $mr <= m {
                tile::<BF16, $mr, NR>(w, x, r, c, out);
                r += $mr;
            }
            match m - r {
                3 => tile::<BF16, 3, NR>(w, x, r, c, out),
                2 => tile::<BF16, 2, NR>(w, x, r, c, out),
                1 => tile::<BF16, 1, NR>(w, x, r, c, out),
                _ => {}
            }
        }

        /// Rows r..r+MR by columns c..c+NR: each weight load serves MR rows, each input load
        /// NR columns.
        #[target_feature(enable = $features)]
        unsafe fn tile<const BF16: bool, const MR: usize, const NR: usize>(
            w: &Half,
            x: &[f32],
            r: usize,
            c: usize,
            out: *mut f32,
        ) {
            use $crate::model::cpu::half::tiles::Lanes;
            let (n, k) = (w.n(), w.k());
            let wp = w.bits().as_ptr().add(c * k);
            let xp = x.as_ptr().add(r * k);
            let mut acc = [[<$lanes>::zero(); NR]; MR];
            let mut wv = [<$lanes>::zero(); NR];
            for j in (0..k).step_by($crate::model::cpu::half::LANES) {
                for (q, v) in wv.iter_mut().enumerate() {
                    *v = <$lanes>::weights::<BF16>(wp.add(q * k + j));
                }
                for (i, sums) in acc.iter_mut().enumerate() {
                    let xv = <$lanes>::inputs(xp.add(i * k + j));
                    for (sum, wq) in sums.iter_mut().zip(&wv) {
                        *sum = sum.fma(*wq, xv);
                    }
                }
            }
            for (i, sums) in acc.iter().enumerate() {
                for (q, sum) in sums.iter().enumerate() {
                    *out.add((r + i) * n + c + q) = sum.reduce();
                }
            }
        }
    };
}
pub(super) use half_tiles;
