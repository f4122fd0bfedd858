//! Flatten: (B, d1, d2, ...) to (B, d1 * d2 * ...).

use serde::{Deserialize, Serialize};

use super::{Layer, LayerExample, LayerSpec, Signature};
use crate::params::{ParamBuilder, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `Flatten()`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {}

impl FlattenConfig {
    /// The layer.
    pub fn new() -> Self {
        FlattenConfig {}
    }

    /// The layer for per-sample inputs of shape `input` (no parameters).
    pub fn init(&self, _pb: &ParamBuilder, input: &[usize]) -> Result<Flatten> {
        Ok(Flatten {
            out: vec![input.iter().product()],
        })
    }
}

/// A built [`FlattenConfig`].
#[derive(Clone, Debug)]
pub struct Flatten {
    out: Vec<usize>,
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        let batch = *x.shape().first().unwrap_or(&1);
        let n = x.value().len() / batch.max(1);
        tape.reshape(x, &[batch, n])
    }
}

impl LayerSpec for FlattenConfig {
    fn name_stem(&self) -> &'static str {
        "flatten"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("Flatten", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for FlattenConfig {
    fn example() -> (Self, Signature) {
        (FlattenConfig::new(), Signature::values(&[2, 3]))
    }
}
