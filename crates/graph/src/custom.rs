//! Ops of the user's own, with their own backward ([`CustomOp`], [`Tape::custom`]): a fused
//! kernel, a custom gradient (straight-through estimators, gradient clipping inside a model), or
//! an op kiln does not have, recorded on the tape like kiln's own. As PyTorch's
//! `autograd.Function`: the forward runs on the inputs' device tensors, the backward gets the
//! inputs, the outputs and one gradient per output.
//!
//! ```
//! use kiln_graph::kiln_device::{Device, Tensor, UnaryOp};
//! use kiln_graph::{CustomOp, Result, Tape};
//!
//! /// x * sigmoid(x) (SiLU), one op: backward is s * (1 + x * (1 - s)).
//! struct Silu;
//!
//! impl CustomOp for Silu {
//!     fn name(&self) -> &str {
//!         "silu"
//!     }
//!     fn forward(&self, d: &Device, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
//!         let s = d.unary(UnaryOp::Sigmoid, &inputs[0])?;
//!         Ok(vec![d.mul(&inputs[0], &s)?])
//!     }
//!     fn backward(&self, d: &Device, inputs: &[Tensor], _outputs: &[Tensor], grads: &[Tensor])
//!         -> Result<Vec<Option<Tensor>>> {
//!         let x = &inputs[0];
//!         let s = d.unary(UnaryOp::Sigmoid, x)?;
//!         let one_minus_s = d.unary(UnaryOp::Affine { scale: -1.0, shift: 1.0 }, &s)?;
//!         let inner = d.unary(UnaryOp::Affine { scale: 1.0, shift: 1.0 }, &d.mul(x, &one_minus_s)?)?;
//!         Ok(vec![Some(d.mul(&grads[0], &d.mul(&s, &inner)?)?)])
//!     }
//! }
//!
//! let d = Device::cpu();
//! let tape = Tape::recording(&d);
//! let x = tape.input(d.from_f32(&[-1.0, 0.0, 2.0], &[3])?);
//! let y = tape.custom1(Silu, &[&x])?;
//! tape.backward(&tape.mean(&y)?)?;
//! let dx = d.to_f32(&tape.grad(&x).unwrap())?;
//! assert!((dx[1] - 0.5 / 3.0).abs() < 1e-6); // silu'(0) = 1/2, over the mean's 3
//! # Ok::<(), kiln_graph::Error>(())
//! ```

use kiln_device::{Device, Tensor};

use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// An op with its own forward and backward on device tensors. Recorded by [`Tape::custom`].
pub trait CustomOp: 'static {
    /// Its name in errors.
    fn name(&self) -> &str;

    /// The outputs (at least one) from the inputs' values.
    fn forward(&self, device: &Device, inputs: &[Tensor]) -> Result<Vec<Tensor>>;

    /// One gradient per input (None for an input that takes none, such as ids), each of its
    /// input's shape, from the inputs, the outputs and the gradient of each output (zeros for an
    /// output that nothing downstream used).
    fn backward(
        &self,
        device: &Device,
        inputs: &[Tensor],
        outputs: &[Tensor],
        grads: &[Tensor],
    ) -> Result<Vec<Option<Tensor>>>;
}

impl Tape {
    /// Runs `op` on `inputs` and records its backward (when recording and an input needs a
    /// gradient); its outputs, in order. The backward's gradients are checked against the
    /// inputs' count and shapes, naming the op.
    pub fn custom(&self, op: impl CustomOp, inputs: &[&Var]) -> Result<Vec<Var>> {
        let d = self.device();
        let values: Vec<Tensor> = inputs.iter().map(|v| v.value().clone()).collect();
        let outputs = op.forward(d, &values)?;
        if outputs.is_empty() {
            return Err(Error::model(
                format!("custom op {}", op.name()),
                "forward returned no outputs",
            ));
        }
        if !self.needs_grad(inputs) {
            return Ok(outputs.into_iter().map(|t| self.constant(t)).collect());
        }
        let saved = outputs.clone();
        let vars = self.record_multi(outputs, inputs, move |d, douts| {
            let grads = douts
                .iter()
                .zip(saved.iter())
                .map(|(g, out)| match g {
                    Some(g) => Ok(g.clone()),
                    None => d.zeros(out.shape()),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let dins = op.backward(d, &values, &saved, &grads)?;
            check_gradients(op.name(), &values, &dins)?;
            Ok(dins)
        });
        Ok(vars)
    }

    /// [`Tape::custom`] for an op with one output.
    pub fn custom1(&self, op: impl CustomOp, inputs: &[&Var]) -> Result<Var> {
        let name = op.name().to_string();
        let mut outs = self.custom(op, inputs)?;
        if outs.len() != 1 {
            return Err(Error::model(
                format!("custom op {name}"),
                format!(
                    "forward returned {} outputs; custom1 takes one (use Tape::custom)",
                    outs.len()
                ),
            ));
        }
        Ok(outs.pop().expect("one output"))
    }
}

/// Refuses a backward whose gradients do not match the inputs in count or shape.
fn check_gradients(name: &str, inputs: &[Tensor], dins: &[Option<Tensor>]) -> Result<()> {
    let what = || format!("custom op {name}");
    if dins.len() != inputs.len() {
        return Err(Error::model(
            what(),
            format!(
                "backward returned {} gradients for {} inputs (None for an input without one)",
                dins.len(),
                inputs.len()
            ),
        ));
    }
    for (i, (x, g)) in inputs.iter().zip(dins).enumerate() {
        if let Some(g) = g {
            if g.shape() != x.shape() {
                return Err(Error::model(
                    what(),
                    format!(
                        "backward's gradient of input {i} has shape {:?}; the input's is {:?}",
                        g.shape(),
                        x.shape()
                    ),
                ));
            }
        }
    }
    Ok(())
}
