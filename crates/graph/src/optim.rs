//! Optimizers over a [`ParamStore`]'s packed buffers: one fused dispatch per step, whatever the
//! number of parameters. State (moments, velocity, step count) lives on the device and travels
//! in checkpoints.

use kiln_device::{AdamConfig, RmspropConfig, SgdConfig, Tensor};
use serde::{Deserialize, Serialize};

use crate::params::ParamStore;
use crate::{Error, Result};

/// Which optimizer, with its hyperparameters. Defaults are Keras's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Adam (Kingma & Ba) with Keras's defaults from [`OptimizerConfig::adam`].
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
    },
    /// Adam with decoupled weight decay (Loshchilov & Hutter; Keras's `AdamW`, defaults from
    /// [`OptimizerConfig::adamw`]): before each update w -= w * weight_decay * lr.
    AdamW {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Added to the denominator.
        eps: f32,
        /// Decay per unit of learning rate (Keras: 0.004).
        weight_decay: f32,
    },
    /// RMSprop (Keras's, uncentered; defaults from [`OptimizerConfig::rmsprop`]).
    Rmsprop {
        /// Learning rate.
        lr: f32,
        /// Decay of the mean square of the gradients.
        rho: f32,
        /// Momentum (0 for none).
        momentum: f32,
        /// Added to the mean square under the root.
        eps: f32,
    },
    /// Stochastic gradient descent with (optionally Nesterov) momentum.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum (0 for none).
        momentum: f32,
        /// Nesterov momentum.
        nesterov: bool,
    },
}

impl OptimizerConfig {
    /// Refuses settings no run can train with: a learning rate that is not finite or not in
    /// (0, 10], decays outside [0, 1), a non-positive epsilon, a weight decay outside [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| Err(Error::model(what, message));
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0 && lr <= 10.0) {
            return bad(
                "lr",
                format!("the learning rate {lr:?} must be a number in (0, 10] (Adam's default is 0.001)"),
            );
        }
        let decay = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                bad(name, format!("{v:?} must be in [0, 1)"))
            }
        };
        let positive = |name: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(name, format!("{v:?} must be positive and finite"))
            }
        };
        match *self {
            OptimizerConfig::Adam {
                beta1, beta2, eps, ..
            } => {
                decay("beta1", beta1)?;
                decay("beta2", beta2)?;
                positive("epsilon", eps)?;
            }
            OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                decay("beta1", beta1)?;
                decay("beta2", beta2)?;
                positive("epsilon", eps)?;
                decay("weight_decay", weight_decay)?;
            }
            OptimizerConfig::Rmsprop {
                rho, momentum, eps, ..
            } => {
                decay("rho", rho)?;
                decay("momentum", momentum)?;
                positive("epsilon", eps)?;
            }
            OptimizerConfig::Sgd { momentum, .. } => decay("momentum", momentum)?,
        }
        Ok(())
    }

    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match *self {
            OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::AdamW { lr, .. }
            | OptimizerConfig::Rmsprop { lr, .. }
            | OptimizerConfig::Sgd { lr, .. } => lr,
        }
    }

    /// Keras's Adam: lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-7.
    pub fn adam() -> Self {
        let d = AdamConfig::default();
        OptimizerConfig::Adam {
            lr: d.lr,
            beta1: d.beta1,
            beta2: d.beta2,
            eps: d.eps,
        }
    }

    /// Keras's AdamW: Adam's defaults and weight decay 0.004.
    pub fn adamw() -> Self {
        let d = AdamConfig::adamw();
        OptimizerConfig::AdamW {
            lr: d.lr,
            beta1: d.beta1,
            beta2: d.beta2,
            eps: d.eps,
            weight_decay: d.weight_decay,
        }
    }

    /// Keras's RMSprop: lr 1e-3, rho 0.9, no momentum, eps 1e-7.
    pub fn rmsprop() -> Self {
        let d = RmspropConfig::default();
        OptimizerConfig::Rmsprop {
            lr: d.lr,
            rho: d.rho,
            momentum: d.momentum,
            eps: d.eps,
        }
    }

    /// The same optimizer with another learning rate.
    pub fn with_lr(self, lr: f32) -> Self {
        let mut c = self;
        match &mut c {
            OptimizerConfig::Adam { lr: l, .. }
            | OptimizerConfig::AdamW { lr: l, .. }
            | OptimizerConfig::Rmsprop { lr: l, .. }
            | OptimizerConfig::Sgd { lr: l, .. } => *l = lr,
        }
        c
    }

    /// SGD at `lr` with `momentum` (0 for none).
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum,
            nesterov: false,
        }
    }

    /// The optimizer's name as Keras spells it in `compile(optimizer=...)`.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Adam { .. } => "adam",
            OptimizerConfig::AdamW { .. } => "adamw",
            OptimizerConfig::Rmsprop { .. } => "rmsprop",
            OptimizerConfig::Sgd { .. } => "sgd",
        }
    }
}

/// What happens to the gradients before an update (Keras's optimizer arguments; one at a time,
/// as Keras allows).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GradClip {
    /// Every gradient scaled so that their global L2 norm is at most this (Keras's
    /// `global_clipnorm`): computed on the device, never read back.
    GlobalNorm(f32),
    /// Each gradient element limited to [-v, v] (Keras's `clipvalue`).
    Value(f32),
}

impl GradClip {
    /// Refuses a threshold that is not positive and finite.
    pub fn validate(&self) -> Result<()> {
        let (what, v) = match *self {
            GradClip::GlobalNorm(v) => ("clip-norm", v),
            GradClip::Value(v) => ("clip-value", v),
        };
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(Error::model(
                what,
                format!("the clipping threshold {v:?} must be positive and finite"),
            ))
        }
    }
}

/// An optimizer's state over a [`ParamStore`]: one fused dispatch per step.
pub struct Optimizer {
    config: OptimizerConfig,
    step: u64,
    /// Adam's first moment, SGD's velocity or RMSprop's momentum, packed like the parameters.
    m: Tensor,
    /// Adam's second moment or RMSprop's mean square (unused by SGD).
    v: Tensor,
    /// Gradient clipping before each update.
    clip: Option<GradClip>,
}

impl Optimizer {
    /// An optimizer for `params` (their trainable share), its moments zeroed.
    pub fn new(config: OptimizerConfig, params: &ParamStore) -> Result<Optimizer> {
        let d = params.device();
        let len = params.trainable_values().len().max(1);
        Ok(Optimizer {
            config,
            step: 0,
            m: d.zeros(&[len])?,
            v: d.zeros(&[len])?,
            clip: None,
        })
    }

    /// Clips the gradients before each update.
    pub fn with_clip(mut self, clip: Option<GradClip>) -> Self {
        self.clip = clip;
        self
    }

    /// The settings.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The rate of the next update.
    pub fn lr(&self) -> f32 {
        self.config.lr()
    }

    /// Sets the rate of the next updates (a schedule's), keeping every other setting.
    pub fn set_lr(&mut self, lr: f32) {
        self.config = self.config.with_lr(lr);
    }

    /// One update of every parameter from the accumulated gradients.
    pub fn step(&mut self, params: &ParamStore) -> Result<()> {
        self.step += 1;
        let d = params.device();
        let (w, g) = (&params.trainable_values(), &params.trainable_grads());
        if w.is_empty() {
            return Ok(());
        }
        match self.clip {
            Some(GradClip::GlobalNorm(n)) => d.clip_by_global_norm_(g, n)?,
            Some(GradClip::Value(v)) => d.clip_by_value_(g, v)?,
            None => {}
        }
        match self.config {
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => {
                let cfg = AdamConfig {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay: 0.0,
                };
                d.adam_update(&cfg, self.step, w, g, &self.m, &self.v)?
            }
            OptimizerConfig::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let cfg = AdamConfig {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                };
                d.adam_update(&cfg, self.step, w, g, &self.m, &self.v)?
            }
            OptimizerConfig::Rmsprop {
                lr,
                rho,
                momentum,
                eps,
            } => {
                let cfg = RmspropConfig {
                    lr,
                    rho,
                    momentum,
                    eps,
                    weight_decay: 0.0,
                };
                d.rmsprop_update(&cfg, w, g, &self.m, &self.v)?
            }
            OptimizerConfig::Sgd {
                lr,
                momentum,
                nesterov,
            } => d.sgd_update(
                &SgdConfig {
                    lr,
                    momentum,
                    nesterov,
                },
                w,
                g,
                &self.m,
            )?,
        }
        Ok(())
    }

    /// This optimizer's settings, clipping and state for `to` (a replica of `from`, whose
    /// optimizer this is, on another device).
    pub fn replicate(&self, from: &ParamStore, to: &ParamStore) -> Result<Optimizer> {
        let mut copy = Optimizer::new(self.config, to)?.with_clip(self.clip);
        copy.copy_state_from(self, from, to)?;
        Ok(copy)
    }

    /// The settings (the rate included), step count and moments of `other` (the optimizer of
    /// `from`), for this optimizer of `to`.
    pub fn copy_state_from(
        &mut self,
        other: &Optimizer,
        from: &ParamStore,
        to: &ParamStore,
    ) -> Result<()> {
        let (step, m, v) = other.state(from)?;
        self.config = other.config;
        self.clip = other.clip;
        self.load_state(to, step, &m, &v)
    }

    /// (step, m, v) on the host, for checkpoints.
    pub fn state(&self, params: &ParamStore) -> Result<(u64, Vec<f32>, Vec<f32>)> {
        let d = params.device();
        Ok((self.step, d.to_f32(&self.m)?, d.to_f32(&self.v)?))
    }

    /// Restores the step count and moments saved by [`state`](Self::state).
    pub fn load_state(
        &mut self,
        params: &ParamStore,
        step: u64,
        m: &[f32],
        v: &[f32],
    ) -> Result<()> {
        let d = params.device();
        d.write_f32(&self.m, m)?;
        d.write_f32(&self.v, v)?;
        self.step = step;
        Ok(())
    }
}
