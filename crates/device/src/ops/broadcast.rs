//! NumPy broadcasting: binary ops on shapes that broadcast ([`Device::binary`]'s general path),
//! broadcasting copies ([`Device::broadcast_to`]) and their adjoint, sums down to a shape
//! ([`Device::sum_to`]).

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::{groups, shape_str};
use crate::params::{broadcast_shape, BinaryOp, BroadcastParams, ReduceOp, MAX_BROADCAST_RANK};
use crate::shaders::ShaderFamily;
use crate::{DType, Device, Error, Result, Tensor};

/// The plan for `a` against `b`, or an error naming both shapes and the rule.
fn plan(op: &'static str, a: &[usize], b: &[usize]) -> Result<(Vec<usize>, BroadcastParams)> {
    BroadcastParams::plan(a, b).ok_or_else(|| {
        let why = if broadcast_shape(a, b).is_some() {
            format!("at most {MAX_BROADCAST_RANK} dimensions once neighbours that broadcast alike are merged")
        } else {
            "shapes that broadcast: aligned at the right, each dimension equal or 1 in one of them"
                .into()
        };
        Error::shape(op, why, format!("{} and {}", shape_str(a), shape_str(b)))
    })
}

impl Device {
    /// `a op b` (or with no op a copy of `b`) into a new tensor of `shape` under `p`.
    fn broadcast_run(
        &self,
        name: &'static str,
        op: Option<BinaryOp>,
        p: BroadcastParams,
        a: &Tensor,
        b: &Tensor,
        shape: &[usize],
    ) -> Result<Tensor> {
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span(name);
                let mut out = self.host_out(p.n as usize);
                let run = host_kernel!(self, binary_broadcast);
                self.host_read_pair(a, b, |a, b| run(&p, op, a, b, &mut out));
                Ok(self.host_tensor(out, shape))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(name, DType::F32, shape)?;
                let (entry, code, bindings) = match op {
                    Some(op) => (
                        "binary_broadcast",
                        op.code(),
                        &[(1, a), (2, b), (3, &out)][..],
                    ),
                    None => ("broadcast_copy", 0, &[(2, b), (3, &out)][..]),
                };
                g.launch(Launch {
                    family: ShaderFamily::Broadcast,
                    entry,
                    overrides: &[("OP", code as f64)],
                    params: bytemuck::bytes_of(&p),
                    bindings,
                    workgroups: groups(p.n as usize, 256),
                })?;
                Ok(out)
            }
        }
    }

    /// `a op b` for any two shapes that broadcast (NumPy's rule); the result has the broadcast
    /// shape. [`Device::binary`] takes this path when `b` is not `a`'s shape, its trailing
    /// dimensions or one element.
    pub(crate) fn binary_broadcast(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (shape, p) = plan("binary", a.shape(), b.shape())?;
        self.broadcast_run("binary_broadcast", Some(op), p, a, b, &shape)
    }

    /// `x` repeated to `shape`, which it broadcasts to (NumPy's `broadcast_to`): a `(4, 1, 1)`
    /// per-channel value becomes `(2, 4, 3, 3)`.
    pub fn broadcast_to(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let name = "broadcast_to";
        self.check(name, x)?;
        let (out, p) = plan(name, shape, x.shape())?;
        if out != shape {
            return Err(Error::shape(
                name,
                format!("a shape that {} broadcasts to", shape_str(x.shape())),
                shape_str(shape),
            ));
        }
        if x.shape() == shape {
            return Ok(x.clone());
        }
        self.broadcast_run(name, None, p, x, x, shape)
    }

    /// `x` summed down to `shape`, the adjoint of [`Device::broadcast_to`]: over the leading
    /// dimensions `shape` lacks and over those where it has 1. One reduction per run of such
    /// dimensions.
    pub fn sum_to(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let name = "sum_to";
        self.check(name, x)?;
        if x.shape() == shape {
            return Ok(x.clone());
        }
        let full = x.shape();
        if broadcast_shape(full, shape).as_deref() != Some(full) {
            return Err(Error::shape(
                name,
                format!("a shape that broadcasts to {}", shape_str(full)),
                shape_str(shape),
            ));
        }
        // Dimensions of x, each marked kept or summed; neighbours alike merge.
        let pad = full.len() - shape.len();
        let mut runs: Vec<(usize, bool)> = vec![];
        for (i, &n) in full.iter().enumerate() {
            let kept = i >= pad && shape[i - pad] == n;
            match runs.last_mut() {
                Some(last) if last.1 == kept || n == 1 => last.0 *= n,
                _ => runs.push((n, kept)),
            }
        }
        let mut dims: Vec<usize> = runs.iter().map(|r| r.0).collect();
        let mut out = x.reshape(&dims)?;
        for axis in (0..runs.len()).rev() {
            if !runs[axis].1 && dims[axis] > 1 {
                out = self.reduce(ReduceOp::Sum, &out, axis)?;
                dims.remove(axis);
            }
        }
        out.reshape(shape)
    }
}
