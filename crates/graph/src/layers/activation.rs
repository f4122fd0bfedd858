//! Activation functions, and the layer that applies one on its own.

use serde::{Deserialize, Serialize};

use super::{Layer, LayerExample, LayerSpec, Signature};
use crate::params::{ParamBuilder, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;
use kiln_device::UnaryOp;

/// Activation functions a layer can apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// The identity.
    #[default]
    Linear,
    /// max(x, 0).
    Relu,
    /// 1 / (1 + exp(-x)).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// 1 where x > 0, else 0 (the seed's perceptron; no gradient).
    Step,
    /// exp(x) / sum(exp(x)) over the last axis.
    Softmax,
    /// x Phi(x), Phi the standard normal's distribution function (Keras's `gelu`, exact).
    Gelu,
    /// GELU with tanh's approximation (keras-hub's `gelu_approximate`, Keras's
    /// `gelu(x, approximate=True)`).
    #[serde(rename = "gelu_approximate")]
    GeluApproximate,
}

impl Activation {
    /// The activation of `x` on the tape.
    pub fn apply(self, tape: &Tape, x: &Var) -> Result<Var> {
        let op = match self {
            Activation::Linear => return Ok(x.clone()),
            Activation::Softmax => return tape.softmax(x),
            Activation::Relu => UnaryOp::Relu,
            Activation::Sigmoid => UnaryOp::Sigmoid,
            Activation::Tanh => UnaryOp::Tanh,
            Activation::Step => UnaryOp::Step,
            Activation::Gelu => UnaryOp::Gelu,
            Activation::GeluApproximate => UnaryOp::GeluTanh,
        };
        tape.unary(op, x)
    }
}

/// An activation as a layer of its own (Keras's `Activation`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationConfig {
    /// The function.
    pub activation: Activation,
}

impl ActivationConfig {
    /// A layer applying `activation`.
    pub fn new(activation: Activation) -> Self {
        ActivationConfig { activation }
    }

    /// The layer for per-sample inputs of shape `input` (no parameters).
    pub fn init(&self, _pb: &ParamBuilder, input: &[usize]) -> Result<ActivationLayer> {
        Ok(ActivationLayer {
            activation: self.activation,
            out: input.to_vec(),
        })
    }
}

/// A built [`ActivationConfig`].
#[derive(Clone, Debug)]
pub struct ActivationLayer {
    activation: Activation,
    out: Vec<usize>,
}

impl Layer for ActivationLayer {
    fn kind(&self) -> &'static str {
        "Activation"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        self.activation.apply(tape, x)
    }
}

impl LayerSpec for ActivationConfig {
    fn name_stem(&self) -> &'static str {
        "activation"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("Activation", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for ActivationConfig {
    fn example() -> (Self, Signature) {
        (
            ActivationConfig::new(Activation::Tanh),
            Signature::values(&[4]),
        )
    }
}
