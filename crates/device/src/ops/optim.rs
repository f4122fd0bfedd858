//! Fused optimizer steps over flat (packed) parameter buffers: one dispatch per step.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::{groups, shape_str};
use crate::params::{AdamConfig, OptimParams, RmspropConfig, SgdConfig};
use crate::shaders::ShaderFamily;
use crate::{Device, Error, Result, Tensor};

impl Device {
    fn optim_check(&self, op: &'static str, w: &Tensor, others: &[&Tensor]) -> Result<()> {
        self.check(op, w)?;
        for t in others {
            self.check(op, t)?;
            if t.len() != w.len() {
                return Err(Error::shape(
                    op,
                    format!("{} elements like the parameters", w.len()),
                    shape_str(t.shape()),
                ));
            }
        }
        for (i, a) in others.iter().enumerate() {
            if a.same_storage(w) || others[i + 1..].iter().any(|b| a.same_storage(b)) {
                return Err(Error::invalid(
                    op,
                    "parameters, gradients and state must be separate buffers",
                ));
            }
        }
        Ok(())
    }

    fn optim_launch(
        &self,
        entry: &'static str,
        p: &OptimParams,
        bindings: &[(u32, &Tensor)],
    ) -> Result<()> {
        let g = self.gpu().expect("GPU launch on a GPU device");
        g.launch(Launch {
            family: ShaderFamily::Optim,
            entry,
            overrides: &[],
            params: bytemuck::bytes_of(p),
            bindings,
            workgroups: groups(p.n as usize, 256),
        })
    }

    /// One Adam step (number `step`, from 1) on w in place, with moments m and v, Keras's formula.
    pub fn adam_update(
        &self,
        cfg: &AdamConfig,
        step: u64,
        w: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<()> {
        let op = "adam_update";
        self.optim_check(op, w, &[g, m, v])?;
        if step == 0 {
            return Err(Error::invalid(op, "step counts from 1"));
        }
        let p = cfg.params(w.len() as u32, step);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("adam_update");
                // Separate buffers (optim_check), so the four guards cannot wait on each other.
                let (mut wh, mut mh, mut vh) =
                    (self.host_write(w), self.host_write(m), self.host_write(v));
                let run = host_kernel!(self, adam_update);
                run(&p, &mut wh, &self.host_read(g), &mut mh, &mut vh);
                self.count_dispatch();
                Ok(())
            }
            Backend::Gpu(_) => {
                self.optim_launch("adam_update", &p, &[(1, w), (2, g), (3, m), (4, v)])
            }
        }
    }

    /// One SGD step on w in place, with velocity u (Keras's momentum formula).
    pub fn sgd_update(&self, cfg: &SgdConfig, w: &Tensor, g: &Tensor, u: &Tensor) -> Result<()> {
        let op = "sgd_update";
        self.optim_check(op, w, &[g, u])?;
        let p = cfg.params(w.len() as u32);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("sgd_update");
                let (mut wh, mut uh) = (self.host_write(w), self.host_write(u));
                let run = host_kernel!(self, sgd_update);
                run(&p, &mut wh, &self.host_read(g), &mut uh);
                self.count_dispatch();
                Ok(())
            }
            Backend::Gpu(_) => self.optim_launch("sgd_update", &p, &[(1, w), (2, g), (3, u)]),
        }
    }

    /// One RMSprop step on w in place, with mean square v and momentum m (Keras's formula;
    /// m is untouched without momentum).
    pub fn rmsprop_update(
        &self,
        cfg: &RmspropConfig,
        w: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<()> {
        let op = "rmsprop_update";
        self.optim_check(op, w, &[g, m, v])?;
        let p = cfg.params(w.len() as u32);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("rmsprop_update");
                let (mut wh, mut mh, mut vh) =
                    (self.host_write(w), self.host_write(m), self.host_write(v));
                let run = host_kernel!(self, rmsprop_update);
                run(&p, &mut wh, &self.host_read(g), &mut mh, &mut vh);
                self.count_dispatch();
                Ok(())
            }
            Backend::Gpu(_) => {
                self.optim_launch("rmsprop_update", &p, &[(1, w), (2, g), (3, m), (4, v)])
            }
        }
    }
}
