//! Inverted dropout from the counter-based generator.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::groups;
use crate::params::DropoutParams;
use crate::shaders::ShaderFamily;
use crate::{reference, DType, Device, Error, Result, Tensor};

impl Device {
    /// Returns (x * mask, mask): elements dropped with probability `rate`, kept ones scaled by
    /// 1 / (1 - rate). The same (seed, offset) gives the same mask on every device. Backward is
    /// `mul(dy, mask)`.
    pub fn dropout(
        &self,
        x: &Tensor,
        rate: f32,
        seed: u64,
        offset: u32,
    ) -> Result<(Tensor, Tensor)> {
        let op = "dropout";
        self.check(op, x)?;
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::invalid(op, format!("rate {rate} must be in [0, 1)")));
        }
        let p = DropoutParams::new(x.len() as u32, rate, seed, offset);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("dropout_forward");
                let (mut out, mut mask) = (self.host_zeros(x.len()), self.host_zeros(x.len()));
                reference::dropout_forward(&p, &self.host_f32(x), &mut out, &mut mask);
                let mask = self.host_tensor(mask, x.shape());
                Ok((self.host_tensor(out, x.shape()), mask))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(op, DType::F32, x.shape())?;
                let mask = self.alloc(op, DType::F32, x.shape())?;
                g.launch(Launch {
                    family: ShaderFamily::Dropout,
                    entry: "dropout_forward",
                    overrides: &[],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(1, x), (2, &out), (3, &mask)],
                    workgroups: groups(x.len(), 256),
                })?;
                Ok((out, mask))
            }
        }
    }
}
