//! Reductions along an axis (sum, mean, max, argmax) and row softmax / log-softmax.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::shape_str;
use crate::params::{ReduceOp, ReduceParams};
use crate::shaders::ShaderFamily;
use crate::{reference, DType, Device, Error, Result, Tensor};

fn reduced_shape(
    op: &'static str,
    shape: &[usize],
    axis: usize,
) -> Result<(ReduceParams, Vec<usize>)> {
    if axis >= shape.len() {
        return Err(Error::invalid(
            op,
            format!("axis {axis} out of range for shape {}", shape_str(shape)),
        ));
    }
    let mut out: Vec<usize> = shape.to_vec();
    out.remove(axis);
    if out.is_empty() {
        out.push(1);
    }
    Ok((ReduceParams::for_axis(shape, axis), out))
}

/// The reduction kernel for a shape, and its workgroup count. `reduce_serial` (a thread per
/// output, summing in index order) serves short axes, where a workgroup per output would idle most
/// of its 64 threads, and many outputs over a moderate axis: the per-image partials of a
/// convolution's weight gradient, a bias gradient over the batch. There a thread per output reads
/// coalesced (neighbouring outputs are neighbouring addresses when the axis is not the last), and
/// a workgroup per output spends its time in the tree's barriers: 79 ms against 8 ms for LeNet's
/// (64, 18432) partials on lavapipe. Long axes over few outputs keep a workgroup each (`reduce`).
///
/// A fixed rule of the shape, not a tuned choice: the two kernels add in different orders, and
/// results must not depend on what a tuning cache holds.
fn reduce_kernel(p: &ReduceParams) -> (&'static str, u64) {
    const SHORT_AXIS: u32 = 32;
    const MANY_OUTPUTS: usize = 1024;
    const MODERATE_AXIS: u32 = 1024;
    let serial = p.len <= SHORT_AXIS || (p.out_len() >= MANY_OUTPUTS && p.len <= MODERATE_AXIS);
    if serial {
        ("reduce_serial", crate::ops::groups(p.out_len(), 256))
    } else {
        ("reduce", p.out_len() as u64)
    }
}

impl Device {
    /// Sum, mean or max along `axis`; the axis is removed from the shape.
    pub fn reduce(&self, op: ReduceOp, x: &Tensor, axis: usize) -> Result<Tensor> {
        let name = "reduce";
        self.check(name, x)?;
        let (p, shape) = reduced_shape(name, x.shape(), axis)?;
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("reduce");
                let mut out = self.host_zeros(p.out_len());
                let run = host_kernel!(self, reduce);
                run(&p, op, &self.host_read(x), &mut out);
                Ok(self.host_tensor(out, &shape))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(name, DType::F32, &shape)?;
                let (entry, workgroups) = reduce_kernel(&p);
                g.launch(Launch {
                    family: ShaderFamily::Reduce,
                    entry,
                    overrides: &[("OP", op.code() as f64)],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(1, x), (2, &out)],
                    workgroups,
                })?;
                Ok(out)
            }
        }
    }

    /// Index of the first maximum along `axis`, as u32.
    pub fn argmax(&self, x: &Tensor, axis: usize) -> Result<Tensor> {
        let name = "argmax";
        self.check(name, x)?;
        let (p, shape) = reduced_shape(name, x.shape(), axis)?;
        let mut out = match self.backend() {
            Backend::Cpu => {
                let _span = self.span("argmax");
                let mut idx = vec![0u32; p.out_len()];
                reference::argmax(&p, &self.host_f32(x), &mut idx);
                self.count_dispatch();
                let t = self.from_u32(&idx, &shape)?;
                return Ok(t);
            }
            Backend::Gpu(g) => {
                let out = self.alloc(name, DType::U32, &shape)?;
                g.launch(Launch {
                    family: ShaderFamily::Reduce,
                    entry: "argmax",
                    overrides: &[],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(1, x), (3, &out)],
                    workgroups: p.out_len() as u64,
                })?;
                out
            }
        };
        out.max_value = Some(p.len.saturating_sub(1));
        Ok(out)
    }

    /// Softmax over the last axis, with the row maximum subtracted (finite for any finite input).
    pub fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        self.softmax_impl(x, false)
    }

    /// log(softmax(x)) over the last axis, computed as x - max - log(sum(exp(x - max))).
    pub fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        self.softmax_impl(x, true)
    }

    fn softmax_impl(&self, x: &Tensor, log: bool) -> Result<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        self.check(name, x)?;
        let last = x
            .rank()
            .checked_sub(1)
            .ok_or_else(|| Error::invalid(name, "scalar input"))?;
        let p = ReduceParams::for_axis(x.shape(), last);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("softmax");
                let mut out = self.host_zeros(x.len());
                reference::softmax(&p, log, &self.host_f32(x), &mut out);
                Ok(self.host_tensor(out, x.shape()))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(name, DType::F32, x.shape())?;
                g.launch(Launch {
                    family: ShaderFamily::Reduce,
                    entry: "softmax",
                    overrides: &[("LOG", log as u32 as f64)],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(1, x), (2, &out)],
                    workgroups: p.outer as u64,
                })?;
                Ok(out)
            }
        }
    }

    /// Gradient of softmax (or, with `log`, of log_softmax) over the last axis, from its output
    /// `y` and the upstream gradient `dy`.
    pub fn softmax_backward(&self, y: &Tensor, dy: &Tensor, log: bool) -> Result<Tensor> {
        let name = "softmax_backward";
        self.check(name, y)?;
        self.check(name, dy)?;
        if y.shape() != dy.shape() {
            return Err(Error::shape(
                name,
                format!("dy of shape {:?}", y.shape()),
                shape_str(dy.shape()),
            ));
        }
        let last = y
            .rank()
            .checked_sub(1)
            .ok_or_else(|| Error::invalid(name, "scalar input"))?;
        let p = ReduceParams::for_axis(y.shape(), last);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("softmax_backward");
                let mut dx = self.host_zeros(y.len());
                reference::softmax_backward(
                    &p,
                    log,
                    &self.host_f32(y),
                    &self.host_f32(dy),
                    &mut dx,
                );
                Ok(self.host_tensor(dx, y.shape()))
            }
            Backend::Gpu(g) => {
                let dx = self.alloc(name, DType::F32, y.shape())?;
                g.launch(Launch {
                    family: ShaderFamily::Reduce,
                    entry: "softmax_backward",
                    overrides: &[("LOG", log as u32 as f64)],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(1, y), (2, &dx), (4, dy)],
                    workgroups: p.outer as u64,
                })?;
                Ok(dx)
            }
        }
    }
}
