//! Optimizers over a [`ParamStore`]'s packed buffers: one fused dispatch per step, whatever the
//! number of parameters. State (moments, velocity, step count) lives on the device and travels
//! in checkpoints.

use kiln_device::{AdamConfig, SgdConfig, Tensor};
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
    /// (0, 10], decays outside [0, 1), a non-positive epsilon.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| Err(Error::model(what, message));
        let lr = match *self {
            OptimizerConfig::Adam { lr, .. } | OptimizerConfig::Sgd { lr, .. } => lr,
        };
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
        match *self {
            OptimizerConfig::Adam {
                beta1, beta2, eps, ..
            } => {
                decay("beta1", beta1)?;
                decay("beta2", beta2)?;
                if !(eps.is_finite() && eps > 0.0) {
                    return bad("epsilon", format!("{eps:?} must be positive and finite"));
                }
            }
            OptimizerConfig::Sgd { momentum, .. } => decay("momentum", momentum)?,
        }
        Ok(())
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

    /// The same optimizer with another learning rate.
    pub fn with_lr(self, lr: f32) -> Self {
        match self {
            OptimizerConfig::Adam {
                beta1, beta2, eps, ..
            } => OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
            },
            OptimizerConfig::Sgd {
                momentum, nesterov, ..
            } => OptimizerConfig::Sgd {
                lr,
                momentum,
                nesterov,
            },
        }
    }

    /// SGD at `lr` with `momentum` (0 for none).
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum,
            nesterov: false,
        }
    }
}

/// An optimizer's state over a [`ParamStore`]: one fused dispatch per step.
pub struct Optimizer {
    config: OptimizerConfig,
    step: u64,
    /// Adam's first moment or SGD's velocity, packed like the parameters.
    m: Tensor,
    /// Adam's second moment (unused by SGD).
    v: Tensor,
}

impl Optimizer {
    /// An optimizer for `params`, its moments zeroed.
    pub fn new(config: OptimizerConfig, params: &ParamStore) -> Result<Optimizer> {
        let d = params.device();
        let len = params.values_flat().len();
        Ok(Optimizer {
            config,
            step: 0,
            m: d.zeros(&[len])?,
            v: d.zeros(&[len])?,
        })
    }

    /// The settings.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Updates taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update of every parameter from the accumulated gradients.
    pub fn step(&mut self, params: &ParamStore) -> Result<()> {
        self.step += 1;
        let d = params.device();
        let (w, g) = (params.values_flat(), params.grads_flat());
        match self.config {
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => d.adam_update(
                &AdamConfig {
                    lr,
                    beta1,
                    beta2,
                    eps,
                },
                self.step,
                w,
                g,
                &self.m,
                &self.v,
            )?,
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
