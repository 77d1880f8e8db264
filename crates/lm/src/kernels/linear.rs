//! Linear layers `x Wᵀ` with their own backward: a frozen weight gets no gradient, a trained
//! one gets its gradient in its own `(out, in)` layout.

use super::gemm::{gemm_into, Mat, Threads};
use super::{stream, with_f32};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Storage, Tensor};

/// `x @ wᵀ` for a weight that is not trained. candle's own matmul backward computes the
/// gradient of both operands; this op only returns the input's, so a frozen weight costs no
/// gradient matmul (half of a linear layer's backward). A few rows (decoding) stream the
/// weights instead of going through gemm ([`stream`]).
struct FrozenLinear {
    w: Tensor,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, x_l: &Layout) -> Result<(CpuStorage, Shape)> {
        matmul_t_cpu(x, x_l, &self.w, "frozen-linear")
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// `x @ wᵀ` for a trained weight. candle's matmul of `x` by the transposed view `wᵀ` gets
/// `xᵀ g`, the gradient of `wᵀ`, and the transpose's backward then copies it into `w`'s
/// layout (a full pass over every weight per step, ~0.3 s of a 1×512 SmolLM2 step); here
/// gemm writes `gᵀ x` in `w`'s layout directly.
struct TrainedLinear;

impl CustomOp2 for TrainedLinear {
    fn name(&self) -> &'static str {
        "trained-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        w: &CpuStorage,
        w_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        matmul_t_storage(x, x_l, w, w_l, "trained-linear")
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ((m, k), n) = (x.dims2()?, w.dim(0)?);
        let (gx, gw) = with_f32(g, "trained-linear", |g| {
            with_f32(x, "trained-linear", |xs| {
                let mut gw = vec![0f32; n * k];
                let (gt, xm) = (Mat::transposed(g, n), Mat::rows(xs, k));
                gemm_into(&mut gw, (n, k, m), false, gt, xm, 1.0, Threads::All);
                // The input's gradient only where the graph needs it.
                let gx = if x.track_op() {
                    with_f32(w, "trained-linear", |ws| {
                        let mut gx = vec![0f32; m * k];
                        let (gm, wm) = (Mat::rows(g, n), Mat::rows(ws, k));
                        gemm_into(&mut gx, (m, k, n), false, gm, wm, 1.0, Threads::All);
                        Ok(Some(gx))
                    })?
                } else {
                    None
                };
                Ok((gx, gw))
            })
        })?;
        let gx = gx.map(|v| Tensor::from_vec(v, (m, k), g.device())).transpose()?;
        Ok((gx, Some(Tensor::from_vec(gw, (n, k), g.device())?)))
    }
}

/// `x @ wᵀ` for a 2-D `x` on the CPU and a weight tensor: streamed for a few rows, gemm
/// otherwise.
pub(super) fn matmul_t_cpu(
    x: &CpuStorage,
    x_l: &Layout,
    w: &Tensor,
    what: &str,
) -> Result<(CpuStorage, Shape)> {
    let (w_storage, w_l) = w.storage_and_layout();
    let Storage::Cpu(w) = &*w_storage else {
        candle_core::bail!("{what}: weight is not on the CPU");
    };
    matmul_t_storage(x, x_l, w, w_l, what)
}

/// [`matmul_t_cpu`] on the weight's storage and layout.
fn matmul_t_storage(
    x: &CpuStorage,
    x_l: &Layout,
    w: &CpuStorage,
    w_l: &Layout,
    what: &str,
) -> Result<(CpuStorage, Shape)> {
    let (m, k) = x_l.shape().dims2()?;
    let (n, k2) = w_l.shape().dims2()?;
    if k != k2 {
        candle_core::bail!("{what}: input width {k} but weight {:?}", w_l.shape());
    }
    if stream::ROWS.contains(&m) {
        if let (CpuStorage::F32(xs), CpuStorage::F32(ws)) = (x, w) {
            if let (Some((x0, x1)), Some((w0, w1))) =
                (x_l.contiguous_offsets(), w_l.contiguous_offsets())
            {
                let out = stream::matmul_t(&xs[x0..x1], m, &ws[w0..w1], n, k);
                return Ok((CpuStorage::F32(out), Shape::from((m, n))));
            }
        }
    }
    let wt_l = w_l.transpose(0, 1)?;
    let out = x.matmul(w, (1, m, n, k), x_l, &wt_l)?;
    Ok((out, Shape::from((m, n))))
}

/// Applies `f`, a map from `(rows, in)` to `(rows, out)`, over the last dimension of `x`:
/// the leading dimensions are flattened into rows and restored after.
pub(crate) fn over_rows(
    x: &Tensor,
    out: usize,
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&0);
    let y = f(&x.reshape(((), k))?)?;
    if let Some(last) = dims.last_mut() {
        *last = out;
    }
    y.reshape(dims)
}

/// `x @ wᵀ` over the last dimension of `x` without a gradient for `w`.
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    over_rows(x, w.dim(0)?, |x2| x2.apply_op1(FrozenLinear { w: w.clone() }))
}

/// `x @ wᵀ` over the last dimension of `x`, differentiable in both (CPU, `f32`).
pub fn trained_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    over_rows(x, w.dim(0)?, |x2| x2.apply_op2(w, TrainedLinear))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rel_diff;
    use candle_core::{Device, Var};

    #[test]
    fn frozen_linear_matches_matmul_in_value_and_input_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (7, 5), &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (2, 3, 5), &dev)?)?;
        let y = frozen_linear(x.as_tensor(), &w)?;
        let reference = x.as_tensor().broadcast_matmul(&w.t()?)?;
        let diff = (&y - &reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "value differs by {diff}");
        let g1 = y.sqr()?.sum_all()?.backward()?;
        let g2 = reference.sqr()?.sum_all()?.backward()?;
        let d = (g1.get(x.as_tensor()).unwrap() - g2.get(x.as_tensor()).unwrap())?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(d < 1e-4, "gradient differs by {d}");
        assert!(g1.get(&w).is_none(), "a frozen weight must get no gradient");
        Ok(())
    }

    #[test]
    fn trained_linear_matches_matmul_in_value_and_both_gradients() -> Result<()> {
        let dev = Device::Cpu;
        for (lead, k, n) in [(vec![2, 3], 5, 7), (vec![13], 17, 1), (vec![1], 4, 9)] {
            let w = Var::from_tensor(&Tensor::randn(0f32, 1., (n, k), &dev)?)?;
            let mut xs = lead.clone();
            xs.push(k);
            let x = Var::from_tensor(&Tensor::randn(0f32, 1., xs.as_slice(), &dev)?)?;
            let y = trained_linear(x.as_tensor(), w.as_tensor())?;
            let reference = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
            assert!(rel_diff(&y, &reference) < 1e-5, "values for {lead:?} {k} {n}");
            let probe = Tensor::randn(0f32, 1., y.shape(), &dev)?;
            let g1 = (&y * &probe)?.sum_all()?.backward()?;
            let g2 = (&reference * &probe)?.sum_all()?.backward()?;
            for (v, name) in [(&x, "x"), (&w, "w")] {
                let d = rel_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(d < 1e-4, "gradient of {name} differs by {d} for {lead:?} {k} {n}");
            }
        }
        // An input that needs no gradient gets none.
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., (3, 4), &dev)?)?;
        let x = Tensor::randn(0f32, 1., (2, 4), &dev)?;
        let grads = trained_linear(&x, w.as_tensor())?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none() && grads.get(w.as_tensor()).is_some());
        Ok(())
    }
}
