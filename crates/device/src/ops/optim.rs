//! Fused optimizer steps over flat (packed) parameter buffers: one dispatch per step.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::{groups, shape_str};
use crate::params::{AdamConfig, OptimParams, RmspropConfig, SgdConfig};
use crate::shaders::ShaderFamily;
use crate::{DType, Device, Error, Result, Tensor};

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

    /// Limits every gradient in `g` to [-limit, limit], in place (Keras's `clipvalue`).
    pub fn clip_by_value_(&self, g: &Tensor, limit: f32) -> Result<()> {
        let op = "clip_by_value";
        self.check(op, g)?;
        check_limit(op, limit)?;
        let p = OptimParams::clip(g.len() as u32, limit);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span(op);
                crate::reference::clip_value(&p, &mut self.host_write(g));
                self.count_dispatch();
                Ok(())
            }
            Backend::Gpu(_) => self.optim_launch("clip_value", &p, &[(1, g)]),
        }
    }

    /// Scales the gradients in `g` (every parameter's, packed) in place so that their global
    /// L2 norm is at most `max_norm` (Keras's `global_clipnorm`), without reading anything
    /// back: the norm and the factor stay on the device. Three dispatches.
    pub fn clip_by_global_norm_(&self, g: &Tensor, max_norm: f32) -> Result<()> {
        let op = "clip_by_global_norm";
        self.check(op, g)?;
        check_limit(op, max_norm)?;
        let p = OptimParams::clip(g.len() as u32, max_norm);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span(op);
                let mut gh = self.host_write(g);
                let scale = crate::reference::clip_scale(&p, &gh);
                for x in gh.iter_mut().take(p.n as usize) {
                    *x *= scale;
                }
                self.count_dispatch();
                Ok(())
            }
            Backend::Gpu(gpu) => {
                let partials = self.alloc(op, DType::F32, &[OptimParams::NORM_PARTS as usize])?;
                let scale = self.alloc(op, DType::F32, &[1])?;
                for (entry, bindings, workgroups) in [
                    (
                        "sumsq_partial",
                        vec![(2, g), (6, &partials)],
                        OptimParams::NORM_PARTS as u64,
                    ),
                    ("clip_scale", vec![(6, &partials), (7, &scale)], 1),
                ] {
                    gpu.launch(Launch {
                        family: ShaderFamily::Optim,
                        entry,
                        overrides: &[],
                        params: bytemuck::bytes_of(&p),
                        bindings: &bindings,
                        workgroups,
                    })?;
                }
                self.optim_launch("scale_by", &p, &[(1, g), (5, &scale)])
            }
        }
    }
}

/// A clipping threshold: positive and finite.
fn check_limit(op: &'static str, limit: f32) -> Result<()> {
    if limit.is_finite() && limit > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("the clipping threshold {limit} must be positive and finite"),
        ))
    }
}
