//! Elementwise ops: binary with row broadcast, unary functions and their derivatives, fill.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::{groups, shape_str};
use crate::params::{BinaryOp, ElementwiseParams, UnaryOp};
use crate::shaders::ShaderFamily;
use crate::{DType, Device, Error, Result, Tensor};

fn params(n: usize, b_len: usize, scalar: f32) -> ElementwiseParams {
    ElementwiseParams {
        n: n as u32,
        b_len: b_len as u32,
        scalar,
        scalar2: 0.0,
    }
}

/// The parameters of a unary op over `n` elements: its constants.
fn unary_params(n: usize, op: UnaryOp) -> ElementwiseParams {
    let (scalar, scalar2) = op.scalars();
    ElementwiseParams {
        scalar2,
        ..params(n, n, scalar)
    }
}

impl Device {
    fn elementwise_launch(
        &self,
        entry: &'static str,
        code: u32,
        p: ElementwiseParams,
        bindings: &[(u32, &Tensor)],
    ) -> Result<()> {
        let g = self.gpu().expect("GPU launch on a GPU device");
        g.launch(Launch {
            family: ShaderFamily::Elementwise,
            entry,
            overrides: &[("OP", code as f64)],
            params: bytemuck::bytes_of(&p),
            bindings,
            workgroups: groups(p.n as usize, 256),
        })
    }

    /// out = a op b under NumPy broadcasting: the shapes align at the right and each dimension
    /// is equal or 1 in one of them; the result has the broadcast shape. A `b` of `a`'s shape,
    /// of its trailing dimensions (a bias row) or of one element takes the plain elementwise
    /// kernel; other shapes (a per-channel `(C, 1, 1)` against `(N, C, H, W)`, an `a` smaller than
    /// `b`) the broadcast kernel.
    pub fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let name = "binary";
        self.check(name, a)?;
        self.check(name, b)?;
        let trailing = a.shape().ends_with(b.shape()) || b.len() == 1;
        if !trailing {
            return self.binary_broadcast(op, a, b);
        }
        let p = params(a.len(), b.len(), 0.0);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("binary");
                let mut out = self.host_out(a.len());
                let run = host_kernel!(self, binary);
                self.host_read_pair(a, b, |a, b| run(&p, op, a, b, &mut out));
                Ok(self.host_tensor(out, a.shape()))
            }
            Backend::Gpu(_) => {
                let out = self.alloc(name, DType::F32, a.shape())?;
                self.elementwise_launch("binary", op.code(), p, &[(1, a), (2, b), (3, &out)])?;
                Ok(out)
            }
        }
    }

    /// a + b, broadcasting as [`Device::binary`].
    pub fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// a * b elementwise, broadcasting as [`Device::binary`].
    pub fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// out = f(x)
    pub fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        let name = "unary";
        self.check(name, x)?;
        let p = unary_params(x.len(), op);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("unary");
                let mut out = self.host_out(x.len());
                host_kernel!(self, unary)(&p, op, &self.host_read(x), &mut out);
                Ok(self.host_tensor(out, x.shape()))
            }
            Backend::Gpu(_) => {
                let out = self.alloc(name, DType::F32, x.shape())?;
                self.elementwise_launch("unary", op.code(), p, &[(1, x), (3, &out)])?;
                Ok(out)
            }
        }
    }

    /// x * s.
    pub fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        self.unary(UnaryOp::Scale(s), x)
    }

    /// dx = dy * f'(x), with x the forward input.
    pub fn unary_backward(&self, op: UnaryOp, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let name = "unary_backward";
        self.check(name, x)?;
        self.check(name, dy)?;
        if x.shape() != dy.shape() {
            return Err(Error::shape(
                name,
                format!("dy of shape {:?}", x.shape()),
                shape_str(dy.shape()),
            ));
        }
        let p = unary_params(x.len(), op);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("unary_backward");
                let mut dx = self.host_out(x.len());
                host_kernel!(self, unary_backward)(
                    &p,
                    op,
                    &self.host_read(x),
                    &self.host_read(dy),
                    &mut dx,
                );
                Ok(self.host_tensor(dx, x.shape()))
            }
            Backend::Gpu(_) => {
                let dx = self.alloc(name, DType::F32, x.shape())?;
                self.elementwise_launch(
                    "unary_backward",
                    op.code(),
                    p,
                    &[(1, x), (2, dy), (3, &dx)],
                )?;
                Ok(dx)
            }
        }
    }

    /// A tensor with every element `value`.
    pub fn full(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("fill");
                if len == 0 {
                    return Err(Error::invalid(
                        "full",
                        format!("empty tensor of shape {shape:?}"),
                    ));
                }
                Ok(self.host_tensor(vec![value; len], shape))
            }
            Backend::Gpu(_) => {
                let out = self.alloc("full", DType::F32, shape)?;
                self.elementwise_launch("fill", 0, params(len, 1, value), &[(3, &out)])?;
                Ok(out)
            }
        }
    }

    /// dst += scale * x, in place (gradient accumulation). dst may be a view of a packed buffer.
    pub fn axpy(&self, dst: &Tensor, x: &Tensor, scale: f32) -> Result<()> {
        let name = "axpy";
        self.check(name, dst)?;
        self.check(name, x)?;
        if dst.len() != x.len() {
            return Err(Error::shape(
                name,
                format!("{:?} like dst", dst.shape()),
                shape_str(x.shape()),
            ));
        }
        if dst.same_storage(x) {
            return Err(Error::invalid(name, "dst and x must be separate buffers"));
        }
        let p = params(dst.len(), dst.len(), scale);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("axpy");
                // Separate buffers (checked above), so the guards cannot wait on each other.
                host_kernel!(self, axpy)(&p, &self.host_read(x), &mut self.host_write(dst));
                self.count_dispatch();
                Ok(())
            }
            Backend::Gpu(_) => self.elementwise_launch("axpy", 0, p, &[(1, x), (3, dst)]),
        }
    }

    /// Sets every element of `t` (or of the view) to zero, in place.
    pub fn zero_(&self, t: &Tensor) -> Result<()> {
        self.check("zero_", t)?;
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("zero");
                self.host_write(t).fill(0.0);
                Ok(())
            }
            Backend::Gpu(g) => {
                let crate::tensor::Storage::Gpu(b) = &t.storage else {
                    return Err(Error::DeviceMismatch { op: "zero_" });
                };
                g.record(|enc| enc.clear_buffer(&b.buffer, t.byte_offset(), Some(t.byte_len())));
                Ok(())
            }
        }
    }
}
