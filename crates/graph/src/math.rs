//! Scalar and axis helpers on the tape, as NumPy and PyTorch spell them: constants, `x + c`,
//! `c - x`, powers and roots, clamping, sums, means and maxima along axes (with `keepdims`), and
//! broadcasting copies. Each is one device kernel or a short composition of them, with its
//! backward.

use kiln_device::{BinaryOp, Device, ReduceOp, Tensor, UnaryOp};

use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// The axes of a reduction over a tensor of `rank` dimensions: negative ones count from the end
/// (-1 is the last); sorted, without repeats. Empty means every axis.
fn normalize_axes(op: &str, axes: &[isize], rank: usize) -> Result<Vec<usize>> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = vec![];
    for &a in axes {
        let axis = if a < 0 { a + rank as isize } else { a };
        if axis < 0 || axis >= rank as isize {
            return Err(Error::model(
                op,
                format!("axis {a} is out of range for {rank} dimensions (use 0..{rank}, or -1 for the last)"),
            ));
        }
        out.push(axis as usize);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A reduction's plan: the shape with the reduced axes kept as 1 and the one without them
/// (`[1]` when none is left).
struct Reduced {
    keep: Vec<usize>,
    drop: Vec<usize>,
    /// Elements combined into each output.
    count: usize,
}

fn reduced(shape: &[usize], axes: &[usize]) -> Reduced {
    let keep: Vec<usize> = (0..shape.len())
        .map(|i| if axes.contains(&i) { 1 } else { shape[i] })
        .collect();
    let mut drop: Vec<usize> = (0..shape.len())
        .filter(|i| !axes.contains(i))
        .map(|i| shape[i])
        .collect();
    if drop.is_empty() {
        drop.push(1);
    }
    Reduced {
        keep,
        drop,
        count: axes.iter().map(|&a| shape[a]).product(),
    }
}

/// `op` over `axes` of `x` on the device, neighbouring reduced axes merged into one reduction;
/// the result has the kept-dimensions shape.
fn reduce_axes(d: &Device, op: ReduceOp, x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let shape = x.shape();
    // Runs of neighbouring dimensions, each reduced or not.
    let mut runs: Vec<(usize, bool)> = vec![];
    for (i, &n) in shape.iter().enumerate() {
        let r = axes.contains(&i);
        match runs.last_mut() {
            Some(last) if last.1 == r => last.0 *= n,
            _ => runs.push((n, r)),
        }
    }
    let mut out = x.reshape(&runs.iter().map(|r| r.0).collect::<Vec<_>>())?;
    for axis in (0..runs.len()).rev() {
        if runs[axis].1 {
            out = d.reduce(op, &out, axis)?;
        }
    }
    Ok(out.reshape(&reduced(shape, axes).keep)?)
}

impl Tape {
    /// A constant of shape `[1]` holding `value`; it broadcasts against anything.
    pub fn scalar(&self, value: f32) -> Result<Var> {
        Ok(self.constant(self.device().full(&[1], value)?))
    }

    /// x + c.
    pub fn add_scalar(&self, x: &Var, c: f32) -> Result<Var> {
        self.unary(
            UnaryOp::Affine {
                scale: 1.0,
                shift: c,
            },
            x,
        )
    }

    /// x * c.
    pub fn mul_scalar(&self, x: &Var, c: f32) -> Result<Var> {
        self.unary(UnaryOp::Scale(c), x)
    }

    /// c - x (PyTorch's `rsub`): `1 - p` is `tape.rsub(1.0, &p)`.
    pub fn rsub(&self, c: f32, x: &Var) -> Result<Var> {
        self.unary(
            UnaryOp::Affine {
                scale: -1.0,
                shift: c,
            },
            x,
        )
    }

    /// -x.
    pub fn neg(&self, x: &Var) -> Result<Var> {
        self.unary(UnaryOp::Scale(-1.0), x)
    }

    /// x^p elementwise (negative x only for whole p, as `f32::powf`).
    pub fn pow(&self, x: &Var, p: f32) -> Result<Var> {
        self.unary(UnaryOp::Pow(p), x)
    }

    /// x * x (exact, unlike `pow(x, 2.0)` on adapters whose pow is exp2(2 log2 |x|)).
    pub fn square(&self, x: &Var) -> Result<Var> {
        self.mul(x, x)
    }

    /// sqrt(x).
    pub fn sqrt(&self, x: &Var) -> Result<Var> {
        self.unary(UnaryOp::Sqrt, x)
    }

    /// 1 / sqrt(x).
    pub fn rsqrt(&self, x: &Var) -> Result<Var> {
        self.unary(UnaryOp::Rsqrt, x)
    }

    /// x limited to [min, max]; the gradient passes where x is within them.
    pub fn clamp(&self, x: &Var, min: f32, max: f32) -> Result<Var> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(Error::model(
                "clamp",
                format!("bounds [{min}, {max}]: min must not exceed max"),
            ));
        }
        self.unary(UnaryOp::Clamp { min, max }, x)
    }

    /// x repeated to `shape` (NumPy's `broadcast_to`); backward sums back down.
    pub fn broadcast_to(&self, x: &Var, shape: &[usize]) -> Result<Var> {
        let value = self.device().broadcast_to(x.value(), shape)?;
        let from = x.shape().to_vec();
        Ok(self.record(value, &[x], move |d, dy| {
            Ok(vec![Some(d.sum_to(dy, &from)?)])
        }))
    }

    /// The sum over `axes` (negative from the end; empty for all), those axes kept as 1 with
    /// `keepdims` and removed without (NumPy's `x.sum(axis, keepdims)`; a result with no axes left
    /// has shape `[1]`).
    pub fn sum_axes(&self, x: &Var, axes: &[isize], keepdims: bool) -> Result<Var> {
        self.reduce_impl("sum_axes", ReduceOp::Sum, x, axes, keepdims)
    }

    /// The mean over `axes`, as [`Tape::sum_axes`].
    pub fn mean_axes(&self, x: &Var, axes: &[isize], keepdims: bool) -> Result<Var> {
        self.reduce_impl("mean_axes", ReduceOp::Mean, x, axes, keepdims)
    }

    /// The maximum over `axes`, as [`Tape::sum_axes`]. The gradient is shared equally between
    /// tied maxima (as TensorFlow's `reduce_max`).
    pub fn max_axes(&self, x: &Var, axes: &[isize], keepdims: bool) -> Result<Var> {
        self.reduce_impl("max_axes", ReduceOp::Max, x, axes, keepdims)
    }

    /// The sum of every element, shape `[1]`.
    pub fn sum(&self, x: &Var) -> Result<Var> {
        self.sum_axes(x, &[], false)
    }

    fn reduce_impl(
        &self,
        name: &str,
        op: ReduceOp,
        x: &Var,
        axes: &[isize],
        keepdims: bool,
    ) -> Result<Var> {
        let shape = x.shape().to_vec();
        let axes = normalize_axes(name, axes, shape.len())?;
        let plan = reduced(&shape, &axes);
        let y = reduce_axes(self.device(), op, x.value(), &axes)?;
        let value = y.reshape(if keepdims { &plan.keep } else { &plan.drop })?;
        // What max's backward needs: x and its maxima.
        let kept = (op == ReduceOp::Max).then(|| (x.value().clone(), y.clone()));
        Ok(self.record(value, &[x], move |d, dy| {
            let dy = dy.reshape(&plan.keep)?;
            let dx = match op {
                ReduceOp::Sum => d.broadcast_to(&dy, &shape)?,
                ReduceOp::Mean => {
                    d.scale(&d.broadcast_to(&dy, &shape)?, 1.0 / plan.count as f32)?
                }
                ReduceOp::Max => {
                    let (xv, y) = kept.expect("kept for max");
                    // 1 where x is its slice's maximum (y - x is 0 there and positive elsewhere).
                    let gap = d.binary(BinaryOp::Sub, &y, &xv)?;
                    let hit = d.unary(
                        UnaryOp::Affine {
                            scale: -1.0,
                            shift: 1.0,
                        },
                        &d.unary(UnaryOp::Step, &gap)?,
                    )?;
                    let ties = d.sum_to(&hit, &plan.keep)?;
                    d.mul(&hit, &d.binary(BinaryOp::Div, &dy, &ties)?)?
                }
            };
            Ok(vec![Some(dx)])
        }))
    }
}
