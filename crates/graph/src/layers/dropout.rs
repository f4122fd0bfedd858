//! Dropout: while training, zeroes a fraction `rate` of activations and scales the rest by
//! 1 / (1 - rate) (masks from the step's Threefry key); the identity otherwise.

use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{ParamBuilder, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `Dropout(rate)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutConfig {
    /// The fraction dropped, in [0, 1).
    pub rate: f32,
}

impl DropoutConfig {
    /// Drops a fraction `rate`.
    pub fn new(rate: f32) -> Self {
        DropoutConfig { rate }
    }

    /// The layer for per-sample inputs of shape `input` (no parameters).
    pub fn init(&self, _pb: &ParamBuilder, input: &[usize]) -> Result<Dropout> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(bad(
                "Dropout",
                format!("dropout rate {} must be in [0, 1)", self.rate),
            ));
        }
        Ok(Dropout {
            rate: self.rate,
            out: input.to_vec(),
        })
    }
}

/// A built [`DropoutConfig`].
#[derive(Clone, Debug)]
pub struct Dropout {
    rate: f32,
    out: Vec<usize>,
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "Dropout"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        tape.dropout(x, self.rate)
    }
}

impl LayerSpec for DropoutConfig {
    fn name_stem(&self) -> &'static str {
        "dropout"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("Dropout", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for DropoutConfig {
    fn example() -> (Self, Signature) {
        (DropoutConfig::new(0.5), Signature::values(&[4]))
    }
}
