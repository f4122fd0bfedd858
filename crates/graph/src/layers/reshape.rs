//! Reshape: (B, d1, d2, ...) to (B, t1, t2, ...), as Keras's `Reshape(target_shape)`: the same
//! values in the same order, one target dimension may be -1 (inferred).

use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{ParamBuilder, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `Reshape(target_shape)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshapeConfig {
    /// The per-sample output shape; one entry may be -1, inferred from the input's size.
    pub target_shape: Vec<i64>,
}

impl ReshapeConfig {
    /// Reshapes each sample to `target_shape`.
    pub fn new(target_shape: &[i64]) -> Self {
        ReshapeConfig {
            target_shape: target_shape.to_vec(),
        }
    }

    /// The layer for per-sample inputs of shape `input`: the target's size must be the input's.
    pub fn init(&self, _pb: &ParamBuilder, input: &[usize]) -> Result<Reshape> {
        let size: usize = input.iter().product();
        let what = "Reshape";
        let unknown = self.target_shape.iter().filter(|&&d| d == -1).count();
        if unknown > 1 || self.target_shape.iter().any(|&d| d == 0 || d < -1) {
            return Err(bad(
                what,
                format!(
                    "target_shape {:?}: dimensions are positive, and at most one is -1 (inferred)",
                    self.target_shape
                ),
            ));
        }
        let known: usize = self
            .target_shape
            .iter()
            .filter(|&&d| d > 0)
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
            .unwrap_or(usize::MAX);
        let fits = if unknown == 1 {
            known > 0 && size.is_multiple_of(known)
        } else {
            known == size
        };
        if !fits {
            return Err(bad(
                what,
                format!(
                    "target_shape {:?} does not hold the input's {size} values per sample ({input:?})",
                    self.target_shape
                ),
            ));
        }
        let out = self
            .target_shape
            .iter()
            .map(|&d| if d == -1 { size / known } else { d as usize })
            .collect();
        Ok(Reshape { out })
    }
}

/// A built [`ReshapeConfig`].
#[derive(Clone, Debug)]
pub struct Reshape {
    out: Vec<usize>,
}

impl Layer for Reshape {
    fn kind(&self) -> &'static str {
        "Reshape"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        let mut shape = vec![*x.shape().first().unwrap_or(&1)];
        shape.extend(&self.out);
        tape.reshape(x, &shape)
    }
}

impl LayerSpec for ReshapeConfig {
    fn name_stem(&self) -> &'static str {
        "reshape"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("Reshape", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for ReshapeConfig {
    fn example() -> (Self, Signature) {
        (ReshapeConfig::new(&[-1, 3]), Signature::values(&[2, 3]))
    }
}
