//! Layer normalization (Ba, Kiros and Hinton, 2016), as Keras's `LayerNormalization(axis=-1)`:
//! each sample's last axis is shifted to mean 0 and scaled to variance 1, then scaled by `gamma`
//! and shifted by `beta` (one per feature):
//!
//! y = (x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta
//!
//! A composition of tape ops, so its backward comes from autodiff: means over the last axis
//! with `keepdims`, broadcast back by the binary ops, and `rsqrt`.

use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

fn keras_epsilon() -> f32 {
    1e-3
}

/// Keras's `LayerNormalization` over the last axis; Keras's defaults (epsilon 1e-3, gamma ones,
/// beta zeros).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNormalizationConfig {
    /// Added to the variance (Keras: 1e-3).
    #[serde(default = "keras_epsilon")]
    pub epsilon: f32,
    /// Add the learned offset `beta`.
    #[serde(default = "super::yes")]
    pub center: bool,
    /// Multiply by the learned scale `gamma`.
    #[serde(default = "super::yes")]
    pub scale: bool,
}

impl Default for LayerNormalizationConfig {
    fn default() -> Self {
        LayerNormalizationConfig::new()
    }
}

impl LayerNormalizationConfig {
    /// Keras's defaults.
    pub fn new() -> Self {
        LayerNormalizationConfig {
            epsilon: keras_epsilon(),
            center: true,
            scale: true,
        }
    }

    /// The value added to the variance.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Whether to learn an offset `beta`.
    pub fn center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }

    /// Whether to learn a scale `gamma`.
    pub fn scale(mut self, scale: bool) -> Self {
        self.scale = scale;
        self
    }

    /// The layer for per-sample inputs of shape `input`, normalised over the last axis:
    /// registers `gamma` and `beta` (each of the last axis's size).
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<LayerNormalization> {
        let what = "LayerNormalization";
        let Some(&features) = input.last() else {
            return Err(bad(what, "needs at least one feature axis"));
        };
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(bad(
                what,
                format!("epsilon {} must be positive and finite", self.epsilon),
            ));
        }
        let gamma = if self.scale {
            Some(pb.add("gamma", &[features], Init::Ones)?)
        } else {
            None
        };
        let beta = if self.center {
            Some(pb.add("beta", &[features], Init::Zeros)?)
        } else {
            None
        };
        Ok(LayerNormalization {
            epsilon: self.epsilon,
            gamma,
            beta,
            out: input.to_vec(),
        })
    }
}

/// A built [`LayerNormalizationConfig`].
#[derive(Clone, Debug)]
pub struct LayerNormalization {
    epsilon: f32,
    gamma: Option<ParamId>,
    beta: Option<ParamId>,
    out: Vec<usize>,
}

impl LayerNormalization {
    /// The scale (features), if any.
    pub fn gamma(&self) -> Option<ParamId> {
        self.gamma
    }

    /// The offset (features), if any.
    pub fn beta(&self) -> Option<ParamId> {
        self.beta
    }
}

impl Layer for LayerNormalization {
    fn kind(&self) -> &'static str {
        "LayerNormalization"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        self.gamma.into_iter().chain(self.beta).collect()
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let mean = tape.mean_axes(x, &[-1], true)?;
        let centred = tape.sub(x, &mean)?;
        let var = tape.mean_axes(&tape.square(&centred)?, &[-1], true)?;
        let inv_std = tape.rsqrt(&tape.add_scalar(&var, self.epsilon)?)?;
        let mut y = tape.mul(&centred, &inv_std)?;
        if let Some(g) = self.gamma {
            y = tape.mul(&y, &tape.param(params, g))?;
        }
        if let Some(b) = self.beta {
            y = tape.add(&y, &tape.param(params, b))?;
        }
        Ok(y)
    }
}

impl LayerSpec for LayerNormalizationConfig {
    fn name_stem(&self) -> &'static str {
        "layer_normalization"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("LayerNormalization", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for LayerNormalizationConfig {
    fn example() -> (Self, Signature) {
        (LayerNormalizationConfig::new(), Signature::values(&[4]))
    }
}
