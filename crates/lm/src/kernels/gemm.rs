//! Direct calls into gemm (candle's matmul engine) on borrowed slices: the kernels that
//! accumulate into an existing buffer, or multiply sub-blocks of their inputs, need what
//! candle's matmul does not offer (it always writes a fresh tensor of whole operands).

/// A row-major matrix, or the transpose of one, as gemm reads it.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    v: &'a [f32],
    /// Distance between consecutive rows and columns.
    rs: isize,
    cs: isize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(v: &'a [f32], cols: usize) -> Self {
        Mat { v, rs: cols as isize, cs: 1 }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(v: &'a [f32], cols: usize) -> Self {
        Mat { v, rs: 1, cs: cols as isize }
    }

    /// Panics unless every element of a `rows × cols` view lies inside the slice (the gemm
    /// call below reads through raw pointers).
    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) as isize * self.rs + (cols - 1) as isize * self.cs;
            assert!((last as usize) < self.v.len(), "gemm: a matrix view overruns its data");
        }
    }
}

/// Whether one product splits over candle's threads, or runs on the calling thread (inside
/// a kernel that already splits its work over the threads).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Threads {
    All,
    One,
}

/// `dst (m × n, row-major) = [dst +] beta · lhs (m × k) · rhs (k × n)`.
pub(super) fn gemm_into(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    beta: f32,
    threads: Threads,
) {
    assert_eq!(dst.len(), m * n, "gemm: destination size");
    lhs.check(m, k);
    rhs.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // gemm reads nothing then; the product is zero.
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let count = candle_core::utils::get_num_threads();
    let parallelism = match threads {
        Threads::All if count > 1 => gemm::Parallelism::Rayon(count),
        _ => gemm::Parallelism::None,
    };
    // SAFETY: the three views were checked to lie inside their slices, `dst` is exactly
    // `m × n` with row stride `n`, and it does not alias the inputs (a `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.v.as_ptr(),
            lhs.cs,
            lhs.rs,
            rhs.v.as_ptr(),
            rhs.cs,
            rhs.rs,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}
