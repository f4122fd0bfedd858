//! Dense: y = act(x · kernel + bias) on the last axis (any leading axes). kernel (in, units)
//! glorot_uniform, bias (units) zeros, as Keras.

use serde::{Deserialize, Serialize};

use super::{bad, Activation, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `Dense(units, activation, use_bias)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseConfig {
    /// Output features.
    pub units: usize,
    /// Applied after the affine map (default linear).
    #[serde(default)]
    pub activation: Activation,
    /// Whether to add a bias (default true).
    #[serde(default = "super::yes")]
    pub use_bias: bool,
}

impl DenseConfig {
    /// `units` outputs, linear, with a bias.
    pub fn new(units: usize) -> Self {
        DenseConfig {
            units,
            activation: Activation::Linear,
            use_bias: true,
        }
    }

    /// The activation applied to the output.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Whether to add a bias.
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self
    }

    /// Registers `kernel` (in, units) and `bias` (units) under `pb` for per-sample inputs of shape
    /// `input` (the last axis is `in`).
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<Dense> {
        let &inputs = input
            .last()
            .ok_or_else(|| bad("Dense", "needs an input with a last axis"))?;
        if self.units == 0 {
            return Err(bad("Dense", "needs at least one unit"));
        }
        let kernel = pb.add("kernel", &[inputs, self.units], Init::GlorotUniform)?;
        let bias = if self.use_bias {
            Some(pb.add("bias", &[self.units], Init::Zeros)?)
        } else {
            None
        };
        let mut out = input.to_vec();
        *out.last_mut().expect("checked") = self.units;
        Ok(Dense {
            kernel,
            bias,
            activation: self.activation,
            out,
        })
    }
}

/// A built [`DenseConfig`].
#[derive(Clone, Debug)]
pub struct Dense {
    kernel: ParamId,
    bias: Option<ParamId>,
    activation: Activation,
    out: Vec<usize>,
}

impl Dense {
    /// The kernel (in, units).
    pub fn kernel(&self) -> ParamId {
        self.kernel
    }

    /// The bias (units), if any.
    pub fn bias(&self) -> Option<ParamId> {
        self.bias
    }
}

impl Layer for Dense {
    fn kind(&self) -> &'static str {
        "Dense"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        std::iter::once(self.kernel).chain(self.bias).collect()
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let shape = x.shape().to_vec();
        let &input = shape
            .last()
            .ok_or_else(|| bad("Dense", "a scalar input has no feature axis"))?;
        let rows = x.value().len() / input.max(1);
        let x2 = if shape.len() == 2 {
            x.clone()
        } else {
            tape.reshape(x, &[rows, input])?
        };
        let mut y = tape.matmul(&x2, &tape.param(params, self.kernel), false, false)?;
        if let Some(bias) = self.bias {
            y = tape.add(&y, &tape.param(params, bias))?;
        }
        if shape.len() != 2 {
            let mut out = shape.clone();
            *out.last_mut().expect("rank >= 1") = y.shape()[1];
            y = tape.reshape(&y, &out)?;
        }
        self.activation.apply(tape, &y)
    }
}

impl LayerSpec for DenseConfig {
    fn name_stem(&self) -> &'static str {
        "dense"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("Dense", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for DenseConfig {
    fn example() -> (Self, Signature) {
        (DenseConfig::new(3), Signature::values(&[4]))
    }
}
