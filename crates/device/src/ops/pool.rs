//! Max, average and stochastic pooling, and their gather-based backward.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::groups;
use crate::params::{PoolMode, PoolParams};
use crate::shaders::ShaderFamily;
use crate::{reference, DType, Device, Error, Result, Tensor};

/// A pooling layer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// Max, average or stochastic.
    pub mode: PoolMode,
    /// Window height and width.
    pub size: (usize, usize),
    /// Step between windows.
    pub stride: usize,
    /// Stochastic pooling samples while training and averages by probability otherwise.
    pub training: bool,
    /// Key and counter offset of the stochastic pooling generator.
    pub seed: u64,
    /// Counter offset of the generator (advance it between calls).
    pub offset: u32,
}

impl PoolSpec {
    /// Square windows of `size` at `stride`, inference mode.
    pub fn new(mode: PoolMode, size: usize, stride: usize) -> PoolSpec {
        PoolSpec {
            mode,
            size: (size, size),
            stride,
            training: false,
            seed: 0,
            offset: 0,
        }
    }
}

/// A pooling result: the output and, for max and training-time stochastic pooling, the pick of
/// each window (flat input index) that backward routes through.
pub struct Pooled {
    /// (N, C, OH, OW).
    pub y: Tensor,
    /// The flat input index each window picked (max, and stochastic while training).
    pub picks: Option<Tensor>,
}

impl Device {
    fn pool_params(
        &self,
        op: &'static str,
        x_shape: &[usize],
        spec: &PoolSpec,
    ) -> Result<PoolParams> {
        let mut p = PoolParams::new(x_shape, spec.size.0, spec.size.1, spec.stride)
            .map_err(|what| Error::InvalidArgument { op, what })?;
        p.seed_lo = spec.seed as u32;
        p.seed_hi = (spec.seed >> 32) as u32;
        p.offset = spec.offset;
        Ok(p)
    }

    fn pool_launch(
        &self,
        entry: &'static str,
        p: &PoolParams,
        threads: usize,
        bindings: &[(u32, &Tensor)],
    ) -> Result<()> {
        let g = self.gpu().expect("GPU launch on a GPU device");
        g.launch(Launch {
            family: ShaderFamily::Pool,
            entry,
            overrides: &[],
            params: bytemuck::bytes_of(p),
            bindings,
            workgroups: groups(threads, 256),
        })
    }

    /// Pools x (N, C, H, W) to (N, C, OH, OW).
    pub fn pool2d(&self, x: &Tensor, spec: &PoolSpec) -> Result<Pooled> {
        let op = "pool2d";
        self.check(op, x)?;
        let p = self.pool_params(op, x.shape(), spec)?;
        let shape = p.out_shape();
        let routed = matches!(spec.mode, PoolMode::Max)
            || (spec.mode == PoolMode::Stochastic && spec.training);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("pool2d_forward");
                let xh = self.host_read(x);
                // The fast max pooling writes every output and pick.
                let max = spec.mode == PoolMode::Max;
                let mut y = if max {
                    self.host_out(p.out_len())
                } else {
                    self.host_zeros(p.out_len())
                };
                let mut picks = self.host_words(p.out_len(), max);
                match (spec.mode, spec.training) {
                    (PoolMode::Max, _) => {
                        host_kernel!(self, max_pool2d_forward)(&p, &xh, &mut y, &mut picks)
                    }
                    (PoolMode::Avg, _) => reference::avg_pool2d_forward(&p, &xh, &mut y),
                    (PoolMode::Stochastic, true) => {
                        reference::stochastic_pool2d_forward(&p, &xh, &mut y, &mut picks)
                    }
                    (PoolMode::Stochastic, false) => {
                        reference::stochastic_pool2d_eval(&p, &xh, &mut y)
                    }
                }
                let y = self.host_tensor(y, &shape);
                let picks = routed.then(|| self.host_tensor_u32(picks, &shape));
                Ok(Pooled { y, picks })
            }
            Backend::Gpu(_) => {
                let y = self.alloc(op, DType::F32, &shape)?;
                let picks = if routed {
                    Some(self.alloc(op, DType::U32, &shape)?)
                } else {
                    None
                };
                let n = y.len();
                match (spec.mode, spec.training, &picks) {
                    (PoolMode::Max, _, Some(a)) => {
                        self.pool_launch("max_pool2d_forward", &p, n, &[(1, x), (2, &y), (3, a)])?
                    }
                    (PoolMode::Stochastic, true, Some(a)) => self.pool_launch(
                        "stochastic_pool2d_forward",
                        &p,
                        n,
                        &[(1, x), (2, &y), (3, a)],
                    )?,
                    (PoolMode::Avg, _, _) => {
                        self.pool_launch("avg_pool2d_forward", &p, n, &[(1, x), (2, &y)])?
                    }
                    (PoolMode::Stochastic, false, _) => {
                        self.pool_launch("stochastic_pool2d_eval", &p, n, &[(1, x), (2, &y)])?
                    }
                    _ => unreachable!("picks exist exactly for routed modes"),
                }
                Ok(Pooled { y, picks })
            }
        }
    }

    /// dx (x's shape) from dy: routed through `picks` (max, training-time stochastic), spread evenly
    /// (average), or through d(sum(a^2) / sum(a)) (inference-time stochastic).
    pub fn pool2d_backward(
        &self,
        x: &Tensor,
        dy: &Tensor,
        pooled: &Pooled,
        spec: &PoolSpec,
    ) -> Result<Tensor> {
        let op = "pool2d_backward";
        self.check(op, x)?;
        self.check(op, dy)?;
        let p = self.pool_params(op, x.shape(), spec)?;
        if dy.shape() != p.out_shape() {
            return Err(Error::shape(
                op,
                format!("dy of shape {:?}", p.out_shape()),
                format!("{:?}", dy.shape()),
            ));
        }
        // 0: routed by pick, 1: average, 2: inference-time stochastic.
        let mode = match (&pooled.picks, spec.mode) {
            (Some(_), _) => 0u32,
            (None, PoolMode::Avg) => 1,
            (None, PoolMode::Stochastic) => 2,
            (None, PoolMode::Max) => {
                return Err(Error::invalid(op, "max pooling's picks are missing"))
            }
        };
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("pool2d_backward");
                // Every backward below zeroes dx itself before it adds.
                let mut dx = self.host_out(p.in_len());
                let dyh = self.host_read(dy);
                match &pooled.picks {
                    Some(a) => host_kernel!(self, pool2d_route_backward)(
                        &p,
                        &dyh,
                        self.host_read(a).u32(),
                        &mut dx,
                    ),
                    None if mode == 1 => reference::avg_pool2d_backward(&p, &dyh, &mut dx),
                    None => reference::stochastic_pool2d_eval_backward(
                        &p,
                        &self.host_f32(x),
                        &dyh,
                        &mut dx,
                    ),
                }
                Ok(self.host_tensor(dx, x.shape()))
            }
            Backend::Gpu(g) => {
                let dx = self.alloc(op, DType::F32, x.shape())?;
                // Without picks, dy stands in at binding 5 (the layout has it, MODE decides reads).
                g.launch(Launch {
                    family: ShaderFamily::Pool,
                    entry: "pool2d_backward",
                    overrides: &[("MODE", mode as f64)],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[
                        (1, x),
                        (4, dy),
                        (5, pooled.picks.as_ref().unwrap_or(dy)),
                        (6, &dx),
                    ],
                    workgroups: groups(dx.len(), 256),
                })?;
                Ok(dx)
            }
        }
    }
}
