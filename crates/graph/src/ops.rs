//! Differentiable ops: each computes its value with device kernels and records, on the tape, the
//! backward that turns d(output) into d(inputs). Binary ops broadcast as NumPy does (kiln-device's
//! `Device::binary`); their gradients are summed back to each operand's shape.

use kiln_device::{
    BinaryOp, Conv2dSpec, ConvVariant, Loss, MatmulSpec, PoolMode, PoolSpec, ReduceOp, Tensor,
    UnaryOp,
};

use crate::tape::{Tape, Var};
use crate::{Error, Result};

impl Tape {
    /// a op b under NumPy broadcasting (a per-channel `(C, 1, 1)` scale against `(N, C, H, W)`,
    /// a bias row, a scalar); each operand's gradient is summed back to its shape.
    pub fn binary(&self, op: BinaryOp, a: &Var, b: &Var) -> Result<Var> {
        let d = self.device();
        let value = d.binary(op, a.value(), b.value())?;
        let (av, bv) = (a.value().clone(), b.value().clone());
        Ok(self.record(value, &[a, b], move |d, dy| {
            let (da_full, db_full) = match op {
                BinaryOp::Add => (dy.clone(), dy.clone()),
                BinaryOp::Sub => (dy.clone(), d.scale(dy, -1.0)?),
                BinaryOp::Mul => (d.mul(dy, &bv)?, d.mul(dy, &av)?),
                BinaryOp::Div => {
                    // d/db (a / b) = -a / b^2 = -(a / b) / b
                    let q = d.binary(BinaryOp::Div, &av, &bv)?;
                    let q = d.binary(BinaryOp::Div, &q, &bv)?;
                    (
                        d.binary(BinaryOp::Div, dy, &bv)?,
                        d.scale(&d.mul(dy, &q)?, -1.0)?,
                    )
                }
            };
            Ok(vec![
                Some(d.sum_to(&da_full, av.shape())?),
                Some(d.sum_to(&db_full, bv.shape())?),
            ])
        }))
    }

    /// a + b, broadcasting.
    pub fn add(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// a - b, broadcasting.
    pub fn sub(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// a * b elementwise, broadcasting.
    pub fn mul(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// a / b elementwise, broadcasting.
    pub fn div(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// f(x) elementwise; backward dx = dy * f'(x).
    pub fn unary(&self, op: UnaryOp, x: &Var) -> Result<Var> {
        let value = self.device().unary(op, x.value())?;
        let xv = x.value().clone();
        Ok(self.record(value, &[x], move |d, dy| {
            Ok(vec![Some(d.unary_backward(op, &xv, dy)?)])
        }))
    }

    /// Rank-2 matrix product with optional stored transposes.
    /// Backward: dA = dC · op(B)^T, dB = op(A)^T · dC, expressed with the transpose flags.
    pub fn matmul(&self, a: &Var, b: &Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        if a.shape().len() != 2 || b.shape().len() != 2 {
            return Err(Error::model(
                "matmul",
                format!(
                    "rank-2 operands expected, got {:?} and {:?}",
                    a.shape(),
                    b.shape()
                ),
            ));
        }
        let spec = |ta, tb| MatmulSpec {
            trans_a: ta,
            trans_b: tb,
            ..Default::default()
        };
        let value = self
            .device()
            .matmul(a.value(), b.value(), None, spec(trans_a, trans_b))?;
        let (av, bv) = (a.value().clone(), b.value().clone());
        Ok(self.record(value, &[a, b], move |d, dc| {
            let da = if trans_a {
                d.matmul(&bv, dc, None, spec(trans_b, true))?
            } else {
                d.matmul(dc, &bv, None, spec(false, !trans_b))?
            };
            let db = if trans_b {
                d.matmul(dc, &av, None, spec(true, trans_a))?
            } else {
                d.matmul(&av, dc, None, spec(!trans_a, false))?
            };
            Ok(vec![Some(da), Some(db)])
        }))
    }

    /// Softmax over the last axis.
    pub fn softmax(&self, x: &Var) -> Result<Var> {
        self.softmax_impl(x, false)
    }

    /// log(softmax(x)) over the last axis.
    pub fn log_softmax(&self, x: &Var) -> Result<Var> {
        self.softmax_impl(x, true)
    }

    fn softmax_impl(&self, x: &Var, log: bool) -> Result<Var> {
        let d = self.device();
        let y = if log {
            d.log_softmax(x.value())?
        } else {
            d.softmax(x.value())?
        };
        let yv = y.clone();
        Ok(self.record(y, &[x], move |d, dy| {
            Ok(vec![Some(d.softmax_backward(&yv, dy, log)?)])
        }))
    }

    /// Mean of all elements, shape `[1]`.
    pub fn mean(&self, x: &Var) -> Result<Var> {
        let d = self.device();
        let n = x.value().len();
        let value = d.reduce(ReduceOp::Mean, &x.value().reshape(&[1, n])?, 1)?;
        let shape = x.shape().to_vec();
        Ok(self.record(value, &[x], move |d, dy| {
            let spread = d.full(&shape, 1.0 / n as f32)?;
            Ok(vec![Some(d.mul(&spread, dy)?)])
        }))
    }

    /// The same values under another shape.
    pub fn reshape(&self, x: &Var, shape: &[usize]) -> Result<Var> {
        let value = x.value().reshape(shape)?;
        let from = x.shape().to_vec();
        Ok(self.record(value, &[x], move |_, dy| Ok(vec![Some(dy.reshape(&from)?)])))
    }

    /// Rows of `table` (V, E) picked by `ids` (u32, any shape); output `ids.shape + [E]`. The table's
    /// gradient is scattered straight into its gradient view (deterministic, no atomics).
    pub fn embedding(&self, table: &Var, ids: &Tensor) -> Result<Var> {
        let value = self.device().embedding(table.value(), ids)?;
        let (ids, sink) = (ids.clone(), table.grad_sink.clone());
        let table_shape = table.shape().to_vec();
        Ok(self.record(value, &[table], move |d, dy| match sink {
            Some(sink) => {
                d.embedding_backward(&sink, dy, &ids)?;
                Ok(vec![None])
            }
            None => {
                let dtable = d.zeros(&table_shape)?;
                d.embedding_backward(&dtable, dy, &ids)?;
                Ok(vec![Some(dtable)])
            }
        }))
    }

    /// Inverted dropout while training (mask from the tape's seed and counter); identity otherwise.
    pub fn dropout(&self, x: &Var, rate: f32) -> Result<Var> {
        if !self.is_training() || rate == 0.0 {
            return Ok(x.clone());
        }
        let offset = self.draw_offset("dropout", x.value().len())?;
        let (y, mask) = self.device().dropout(x.value(), rate, self.seed, offset)?;
        Ok(self.record(y, &[x], move |d, dy| Ok(vec![Some(d.mul(dy, &mask)?)])))
    }

    /// Mean loss over samples, shape `[1]`: per element for the binary losses, per row for
    /// categorical. Backward: the fused loss gradient scaled by 1/N times d(loss).
    pub fn loss(&self, loss: Loss, pred: &Var, target: &Tensor) -> Result<Var> {
        let d = self.device();
        let per_sample = d.loss_forward(loss, pred.value(), target)?;
        let n = per_sample.len();
        let value = d.reduce(ReduceOp::Mean, &per_sample.reshape(&[1, n])?, 1)?;
        let (pv, tv) = (pred.value().clone(), target.clone());
        Ok(self.record(value, &[pred], move |d, dy| {
            let g = d.loss_backward(loss, &pv, &tv, 1.0 / n as f32)?;
            Ok(vec![Some(d.mul(&g, dy)?)])
        }))
    }

    /// y (N, F, OH, OW) = conv(x (N, C, H, W), w (F, C, FH, FW)) + b (F), through im2col and the
    /// tuned matmul. Backward: kiln-device's conv2d_backward (col2im for dx, GEMMs for dw), on
    /// the forward pass's im2col columns, which the record keeps until then.
    pub fn conv2d(&self, x: &Var, w: &Var, b: Option<&Var>, spec: Conv2dSpec) -> Result<Var> {
        let d = self.device();
        let inputs: Vec<&Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        if !self.needs_grad(&inputs) {
            let value = d.conv2d(
                x.value(),
                w.value(),
                b.map(Var::value),
                &spec,
                ConvVariant::Im2col,
            )?;
            return Ok(self.record(value, &inputs, |_, _| Ok(vec![])));
        }
        let (value, cols) = d.conv2d_with_cols(x.value(), w.value(), b.map(Var::value), &spec)?;
        let (xv, wv, has_bias) = (x.value().clone(), w.value().clone(), b.is_some());
        let wanted = kiln_device::Conv2dWanted {
            bias: has_bias,
            dx: x.requires_grad(),
        };
        Ok(self.record(value, &inputs, move |d, dy| {
            let g = d.conv2d_backward_with_cols(&xv, &wv, dy, &spec, wanted, Some(&cols))?;
            let mut grads = vec![g.dx, Some(g.dweight)];
            if has_bias {
                grads.push(g.dbias);
            }
            Ok(grads)
        }))
    }

    /// Pooling of x (N, C, H, W). Stochastic pooling samples while the tape trains (from the tape's
    /// seed, advancing its counter) and averages by probability otherwise.
    pub fn pool2d(
        &self,
        x: &Var,
        mode: PoolMode,
        size: (usize, usize),
        stride: usize,
    ) -> Result<Var> {
        // The counter moves past the output (every mode, so that a model's later draws do not
        // depend on its pooling); a shape the device refuses is left to it to name.
        let out_len = kiln_device::params::PoolParams::new(x.shape(), size.0, size.1, stride)
            .map_or(0, |p| p.out_shape().iter().product());
        let offset = self.draw_offset("pool2d", out_len)?;
        let spec = PoolSpec {
            mode,
            size,
            stride,
            training: self.is_training(),
            seed: self.seed,
            offset,
        };
        let pooled = self.device().pool2d(x.value(), &spec)?;
        let xv = x.value().clone();
        let value = pooled.y.clone();
        Ok(self.record(value, &[x], move |d, dy| {
            Ok(vec![Some(d.pool2d_backward(&xv, dy, &pooled, &spec)?)])
        }))
    }

    /// Entries start..start+len of `axis`. Backward writes dy into a zeroed gradient of x's shape.
    pub fn narrow(&self, x: &Var, axis: usize, start: usize, len: usize) -> Result<Var> {
        let value = self.device().narrow(x.value(), axis, start, len)?;
        let shape = x.shape().to_vec();
        Ok(self.record(value, &[x], move |d, dy| {
            let dx = d.zeros(&shape)?;
            d.slice_assign(&dx, axis, start, dy, false)?;
            Ok(vec![Some(dx)])
        }))
    }

    /// Joins tensors along `axis`; the other axes must agree. Backward narrows dy back.
    pub fn concat(&self, xs: &[&Var], axis: usize) -> Result<Var> {
        let first = xs
            .first()
            .ok_or_else(|| Error::model("concat", "nothing to join"))?;
        let mut shape = first.shape().to_vec();
        if axis >= shape.len() {
            return Err(Error::model(
                "concat",
                format!("axis {axis} out of range for shape {shape:?}"),
            ));
        }
        shape[axis] = xs
            .iter()
            .map(|x| x.shape().get(axis).copied().unwrap_or(0))
            .sum();
        let d = self.device();
        let value = d.zeros(&shape)?;
        let mut starts = vec![];
        let mut at = 0;
        for x in xs {
            d.slice_assign(&value, axis, at, x.value(), false)?;
            starts.push((at, x.shape()[axis]));
            at += x.shape()[axis];
        }
        Ok(self.record(value, xs, move |d, dy| {
            starts
                .iter()
                .map(|&(start, len)| Ok(Some(d.narrow(dy, axis, start, len)?)))
                .collect()
        }))
    }
}
