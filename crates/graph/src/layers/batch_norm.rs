//! Batch normalization (Ioffe and Szegedy, 2015), as Keras's `BatchNormalization(axis,
//! momentum, epsilon, center, scale)`. While training, each channel (the `axis` of the input)
//! is normalized with the batch's mean and (biased) variance over every other axis, and the
//! layer's moving statistics move towards them:
//!
//! y = (x - mean) / sqrt(var + epsilon) * gamma + beta
//! moving_mean = moving_mean * momentum + mean * (1 - momentum)   (likewise moving_variance)
//!
//! At inference the moving statistics stand in for the batch's. gamma and beta are trained;
//! the moving statistics are non-trainable weights (`ParamBuilder::add_state`): saved in
//! checkpoints and model files, restored on resume, never touched by the optimizer. The
//! normalization is a composition of tape ops, so its backward comes from autodiff; the moving
//! averages are device ops outside the tape, done once per training forward pass.

use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

fn keras_momentum() -> f32 {
    0.99
}

fn keras_epsilon() -> f32 {
    1e-3
}

fn last_axis() -> isize {
    -1
}

/// Keras's `BatchNormalization`. `axis` counts the batch as Keras does: -1 (the default) is
/// the last axis (features of a Dense output, channels-last data); 1 is the channels of kiln's
/// (B, C, H, W) convolutions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormalizationConfig {
    /// The channel axis, batch included (default -1).
    #[serde(default = "last_axis")]
    pub axis: isize,
    /// Weight of the old moving statistics in each update (default 0.99).
    #[serde(default = "keras_momentum")]
    pub momentum: f32,
    /// Added to the variance (default 1e-3).
    #[serde(default = "keras_epsilon")]
    pub epsilon: f32,
    /// Adds beta (default true).
    #[serde(default = "super::yes")]
    pub center: bool,
    /// Multiplies by gamma (default true).
    #[serde(default = "super::yes")]
    pub scale: bool,
}

impl Default for BatchNormalizationConfig {
    fn default() -> Self {
        BatchNormalizationConfig::new()
    }
}

impl BatchNormalizationConfig {
    /// Keras's defaults: the last axis, momentum 0.99, epsilon 1e-3, gamma and beta.
    pub fn new() -> Self {
        BatchNormalizationConfig {
            axis: -1,
            momentum: keras_momentum(),
            epsilon: keras_epsilon(),
            center: true,
            scale: true,
        }
    }

    /// The channel axis (batch included, as Keras counts).
    pub fn axis(mut self, axis: isize) -> Self {
        self.axis = axis;
        self
    }

    /// The moving averages' momentum.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Epsilon.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// The layer for per-sample inputs of shape `input`.
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<BatchNormalization> {
        let what = "BatchNormalization";
        let rank = input.len() as isize + 1;
        let axis = if self.axis < 0 {
            rank + self.axis
        } else {
            self.axis
        };
        if input.is_empty() || axis < 1 || axis >= rank {
            return Err(bad(
                what,
                format!("axis {} does not name a channel axis of inputs {input:?} (the batch is axis 0)", self.axis),
            ));
        }
        let momentum_ok = (0.0..=1.0).contains(&self.momentum);
        let epsilon_ok = self.epsilon.is_finite() && self.epsilon > 0.0;
        if !(momentum_ok && epsilon_ok) {
            return Err(bad(
                what,
                format!(
                    "momentum {} must be in [0, 1] and epsilon {} positive",
                    self.momentum, self.epsilon
                ),
            ));
        }
        let axis = axis as usize;
        let channels = input[axis - 1];
        let gamma = self
            .scale
            .then(|| pb.add("gamma", &[channels], Init::Ones))
            .transpose()?;
        let beta = self
            .center
            .then(|| pb.add("beta", &[channels], Init::Zeros))
            .transpose()?;
        let moving_mean = pb.add_state("moving_mean", &[channels], Init::Zeros)?;
        let moving_variance = pb.add_state("moving_variance", &[channels], Init::Ones)?;
        // The statistics' shape as they broadcast against a batch: 1 everywhere but the channels.
        let mut stats = vec![1; input.len() + 1];
        stats[axis] = channels;
        Ok(BatchNormalization {
            gamma,
            beta,
            moving_mean,
            moving_variance,
            axis,
            stats,
            momentum: self.momentum,
            epsilon: self.epsilon,
            out: input.to_vec(),
        })
    }
}

/// A built [`BatchNormalizationConfig`].
#[derive(Clone, Debug)]
pub struct BatchNormalization {
    gamma: Option<ParamId>,
    beta: Option<ParamId>,
    moving_mean: ParamId,
    moving_variance: ParamId,
    /// The channel axis, batch included.
    axis: usize,
    /// (1, .., C, .., 1): the statistics' broadcast shape.
    stats: Vec<usize>,
    momentum: f32,
    epsilon: f32,
    out: Vec<usize>,
}

impl BatchNormalization {
    /// The moving statistics (non-trainable weights).
    pub fn moving_statistics(&self) -> (ParamId, ParamId) {
        (self.moving_mean, self.moving_variance)
    }

    /// moving = moving * momentum + batch * (1 - momentum), on the device, outside the tape.
    fn update_moving(&self, params: &ParamStore, id: ParamId, batch: &Var) -> Result<()> {
        let d = params.device();
        let moving = params.value(id);
        let keep = d.scale(moving, self.momentum)?;
        // 1 - momentum as Keras's Python float gives it: rounded from f64.
        let take = (1.0 - self.momentum as f64) as f32;
        let new = d.scale(&batch.value().reshape(moving.shape())?, take)?;
        d.copy_into(moving, 0, &d.add(&keep, &new)?)?;
        Ok(())
    }

    fn stat(&self, tape: &Tape, params: &ParamStore, id: ParamId) -> Result<Var> {
        tape.reshape(&tape.param(params, id), &self.stats)
    }
}

impl Layer for BatchNormalization {
    fn kind(&self) -> &'static str {
        "BatchNormalization"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        self.gamma
            .into_iter()
            .chain(self.beta)
            .chain([self.moving_mean, self.moving_variance])
            .collect()
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let (centred, var) = if tape.is_training() {
            let axes: Vec<isize> = (0..x.shape().len())
                .filter(|&a| a != self.axis)
                .map(|a| a as isize)
                .collect();
            let mean = tape.mean_axes(x, &axes, true)?;
            let centred = tape.sub(x, &mean)?;
            let var = tape.mean_axes(&tape.square(&centred)?, &axes, true)?;
            self.update_moving(params, self.moving_mean, &mean)?;
            self.update_moving(params, self.moving_variance, &var)?;
            (centred, var)
        } else {
            let mean = self.stat(tape, params, self.moving_mean)?;
            let var = self.stat(tape, params, self.moving_variance)?;
            (tape.sub(x, &mean)?, var)
        };
        let inv_std = tape.rsqrt(&tape.add_scalar(&var, self.epsilon)?)?;
        let mut y = tape.mul(&centred, &inv_std)?;
        if let Some(g) = self.gamma {
            y = tape.mul(&y, &self.stat(tape, params, g)?)?;
        }
        if let Some(b) = self.beta {
            y = tape.add(&y, &self.stat(tape, params, b)?)?;
        }
        Ok(y)
    }
}

impl LayerSpec for BatchNormalizationConfig {
    fn name_stem(&self) -> &'static str {
        "batch_normalization"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("BatchNormalization", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for BatchNormalizationConfig {
    fn example() -> (Self, Signature) {
        (BatchNormalizationConfig::new(), Signature::values(&[4]))
    }
}
