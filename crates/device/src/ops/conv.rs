//! 2-D convolution: im2col + the tuned matmul (default) or the direct kernel; backward through the
//! matmul kernels and col2im.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::groups;
use crate::params::{Conv2dSpec, ConvParams, ConvVariant, MatmulSpec, ReduceOp};
use crate::shaders::ShaderFamily;
use crate::{reference, DType, Device, Error, Result, Tensor};

/// Which gradients a convolution's backward pass computes besides the weight's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dWanted {
    /// The bias's gradient.
    pub bias: bool,
    /// The input's gradient.
    pub dx: bool,
}

/// Gradients of a convolution.
#[derive(Clone, Debug)]
pub struct Conv2dGrads {
    /// (N, C, H, W); None when not asked for (a first layer's input needs no gradient)
    pub dx: Option<Tensor>,
    /// (F, C, FH, FW)
    pub dweight: Tensor,
    /// (F), when the forward had a bias
    pub dbias: Option<Tensor>,
}

impl Device {
    fn conv_params(
        &self,
        op: &'static str,
        x: &Tensor,
        weight: &Tensor,
        spec: &Conv2dSpec,
    ) -> Result<ConvParams> {
        self.check(op, x)?;
        self.check(op, weight)?;
        ConvParams::new(x.shape(), weight.shape(), spec)
            .map_err(|what| Error::InvalidArgument { op, what })
    }

    fn conv_launch(
        &self,
        entry: &'static str,
        p: &ConvParams,
        threads: usize,
        bindings: &[(u32, &Tensor)],
    ) -> Result<()> {
        let g = self.gpu().expect("GPU launch on a GPU device");
        g.launch(Launch {
            family: ShaderFamily::Conv,
            entry,
            overrides: &[],
            params: bytemuck::bytes_of(p),
            bindings,
            workgroups: groups(threads, 256),
        })
    }

    /// The im2col matrix (N, C*FH*FW, OH*OW) of x (N, C, H, W) for filters of `weight_shape`.
    pub fn im2col(&self, x: &Tensor, weight_shape: &[usize], spec: &Conv2dSpec) -> Result<Tensor> {
        let op = "im2col";
        self.check(op, x)?;
        let p = ConvParams::new(x.shape(), weight_shape, spec)
            .map_err(|what| Error::InvalidArgument { op, what })?;
        self.im2col_p(&p, x)
    }

    fn im2col_p(&self, p: &ConvParams, x: &Tensor) -> Result<Tensor> {
        let shape = p.cols_shape();
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("im2col");
                let mut cols = self.host_out(shape.iter().product());
                host_kernel!(self, im2col)(p, &self.host_read(x), &mut cols);
                Ok(self.host_tensor(cols, &shape))
            }
            Backend::Gpu(_) => {
                let cols = self.alloc("im2col", DType::F32, &shape)?;
                self.conv_launch("im2col", p, cols.len(), &[(1, x), (2, &cols)])?;
                Ok(cols)
            }
        }
    }

    fn col2im_p(&self, p: &ConvParams, dcols: &Tensor) -> Result<Tensor> {
        let shape = [p.n as usize, p.c as usize, p.h as usize, p.w as usize];
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("col2im");
                let mut dx = self.host_zeros(shape.iter().product());
                host_kernel!(self, col2im)(p, &self.host_read(dcols), &mut dx);
                Ok(self.host_tensor(dx, &shape))
            }
            Backend::Gpu(_) => {
                let dx = self.alloc("col2im", DType::F32, &shape)?;
                self.conv_launch("col2im", p, dx.len(), &[(3, dcols), (4, &dx)])?;
                Ok(dx)
            }
        }
    }

    /// y (N, F, OH, OW) = conv(x (N, C, H, W), weight (F, C, FH, FW)) + bias (F).
    pub fn conv2d(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        spec: &Conv2dSpec,
        variant: ConvVariant,
    ) -> Result<Tensor> {
        Ok(self.conv2d_impl(x, weight, bias, spec, variant)?.0)
    }

    /// conv2d through im2col, returning the columns (N, K, OH*OW) with y: a training step keeps
    /// them for [`Device::conv2d_backward_with_cols`] instead of building them again.
    pub fn conv2d_with_cols(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        spec: &Conv2dSpec,
    ) -> Result<(Tensor, Tensor)> {
        let (y, cols) = self.conv2d_impl(x, weight, bias, spec, ConvVariant::Im2col)?;
        Ok((y, cols.expect("the im2col variant builds columns")))
    }

    fn conv2d_impl(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        spec: &Conv2dSpec,
        variant: ConvVariant,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let op = "conv2d";
        let p = self.conv_params(op, x, weight, spec)?;
        if let Some(b) = bias {
            self.check(op, b)?;
            if b.shape() != [p.f as usize] {
                return Err(Error::shape(
                    op,
                    format!("bias of shape [{}]", p.f),
                    format!("{:?}", b.shape()),
                ));
            }
        }
        let shape = p.out_shape();
        let mut kept = None;
        let y = match (variant, self.backend()) {
            (ConvVariant::Im2col, _) => {
                let cols = self.im2col_p(&p, x)?;
                let w2 = weight.reshape(&[p.f as usize, p.k()])?;
                let y = self
                    .matmul(&w2, &cols, None, MatmulSpec::default())?
                    .reshape(&shape)?;
                kept = Some(cols);
                y
            }
            (ConvVariant::Direct, Backend::Cpu) => {
                let _span = self.span("conv2d_direct");
                let mut y = self.host_zeros(shape.iter().product());
                reference::conv2d_direct(&p, &self.host_f32(x), &self.host_f32(weight), &mut y);
                self.host_tensor(y, &shape)
            }
            (ConvVariant::Direct, Backend::Gpu(_)) => {
                let y = self.alloc(op, DType::F32, &shape)?;
                self.conv_launch(
                    "conv2d_direct",
                    &p,
                    y.len(),
                    &[(1, x), (5, &y), (7, weight)],
                )?;
                y
            }
        };
        if let Some(b) = bias {
            match self.backend() {
                Backend::Cpu => {
                    let _span = self.span("bias_channels");
                    // y is this op's fresh output, so it shares no storage with b.
                    host_kernel!(self, bias_channels)(
                        &p,
                        &self.host_read(b),
                        &mut self.host_write(&y),
                    );
                    self.count_dispatch();
                }
                Backend::Gpu(_) => {
                    self.conv_launch("bias_channels", &p, y.len(), &[(5, &y), (6, b)])?
                }
            }
        }
        Ok((y, kept))
    }

    /// Gradients of conv2d from dy (N, F, OH, OW): dweight = sum_n dy_n · cols_n^T (one
    /// [`Device::matmul_sum_batch`]), dx = col2im(w^T · dy), dbias = dy summed over N, OH, OW.
    /// `with_dx = false` skips the input gradient (its GEMM and col2im), which a network's first
    /// layer never needs.
    pub fn conv2d_backward(
        &self,
        x: &Tensor,
        weight: &Tensor,
        dy: &Tensor,
        spec: &Conv2dSpec,
        with_bias: bool,
        with_dx: bool,
    ) -> Result<Conv2dGrads> {
        let wanted = Conv2dWanted {
            bias: with_bias,
            dx: with_dx,
        };
        self.conv2d_backward_with_cols(x, weight, dy, spec, wanted, None)
    }

    /// [`Device::conv2d_backward`] with the forward pass's columns
    /// ([`Device::conv2d_with_cols`]) instead of building them again from x.
    pub fn conv2d_backward_with_cols(
        &self,
        x: &Tensor,
        weight: &Tensor,
        dy: &Tensor,
        spec: &Conv2dSpec,
        wanted: Conv2dWanted,
        cols: Option<&Tensor>,
    ) -> Result<Conv2dGrads> {
        let Conv2dWanted {
            bias: with_bias,
            dx: with_dx,
        } = wanted;
        let op = "conv2d_backward";
        let p = self.conv_params(op, x, weight, spec)?;
        if let Some(c) = cols {
            self.check(op, c)?;
            if c.shape() != p.cols_shape() {
                return Err(Error::shape(
                    op,
                    format!(
                        "columns of shape {:?} (from conv2d_with_cols)",
                        p.cols_shape()
                    ),
                    format!("{:?}", c.shape()),
                ));
            }
        }
        self.check(op, dy)?;
        if dy.shape() != p.out_shape() {
            return Err(Error::shape(
                op,
                format!("dy of shape {:?}", p.out_shape()),
                format!("{:?}", dy.shape()),
            ));
        }
        let (n, f, k, hw) = (p.n as usize, p.f as usize, p.k(), p.out_h() * p.out_w());
        let dy3 = dy.reshape(&[n, f, hw])?;
        let cols = match cols {
            Some(c) => c.clone(),
            None => self.im2col_p(&p, x)?,
        };
        // One GEMM over the whole batch (its images summed in chunks), not a product per image
        // and a reduction over N.
        let dweight = self
            .matmul_sum_batch(
                &dy3,
                &cols,
                MatmulSpec {
                    trans_b: true,
                    ..Default::default()
                },
            )?
            .reshape(weight.shape())?;
        let dx = if with_dx {
            let w2 = weight.reshape(&[f, k])?;
            let dcols = self.matmul(
                &w2,
                &dy3,
                None,
                MatmulSpec {
                    trans_a: true,
                    ..Default::default()
                },
            )?;
            Some(self.col2im_p(&p, &dcols)?)
        } else {
            None
        };
        let dbias = if with_bias {
            Some(self.reduce(ReduceOp::Sum, &self.reduce(ReduceOp::Sum, &dy3, 2)?, 0)?)
        } else {
            None
        };
        Ok(Conv2dGrads { dx, dweight, dbias })
    }
}
