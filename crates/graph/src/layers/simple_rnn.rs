//! Keras's SimpleRNN: h_t = tanh(x_t · kernel + h_{t-1} · recurrent + bias), from h = 0. kernel
//! (E, H) glorot_uniform, recurrent (H, H) orthogonal, bias (H) zeros. Input (B, T, E); output
//! (B, T, H) with `return_sequences`, else the last state (B, H).

use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `SimpleRNN(units, return_sequences)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleRnnConfig {
    /// Hidden units H.
    pub units: usize,
    /// Output every step rather than the last state.
    #[serde(default)]
    pub return_sequences: bool,
}

impl SimpleRnnConfig {
    /// `units` hidden units, last state only.
    pub fn new(units: usize) -> Self {
        SimpleRnnConfig {
            units,
            return_sequences: false,
        }
    }

    /// Output every step.
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }

    /// Registers `kernel`, `recurrent_kernel` and `bias` under `pb` for per-sample inputs (T, E).
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<SimpleRnn> {
        let &[t, e] = input else {
            return Err(bad(
                "SimpleRNN",
                format!("an RNN needs (T, E) inputs per sample, got {input:?}"),
            ));
        };
        if self.units == 0 {
            return Err(bad("SimpleRNN", "needs at least one unit"));
        }
        let units = self.units;
        let kernel = pb.add("kernel", &[e, units], Init::GlorotUniform)?;
        let recurrent = pb.add("recurrent_kernel", &[units, units], Init::Orthogonal)?;
        let bias = pb.add("bias", &[units], Init::Zeros)?;
        Ok(SimpleRnn {
            kernel,
            recurrent,
            bias,
            return_sequences: self.return_sequences,
            out: if self.return_sequences {
                vec![t, units]
            } else {
                vec![units]
            },
        })
    }
}

/// A built [`SimpleRnnConfig`].
#[derive(Clone, Debug)]
pub struct SimpleRnn {
    kernel: ParamId,
    recurrent: ParamId,
    bias: ParamId,
    return_sequences: bool,
    out: Vec<usize>,
}

impl Layer for SimpleRnn {
    fn kind(&self) -> &'static str {
        "SimpleRNN"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.kernel, self.recurrent, self.bias]
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let p = |id: ParamId| tape.param(params, id);
        let (y, h) = tape.simple_rnn(
            x,
            &p(self.kernel),
            &p(self.recurrent),
            &p(self.bias),
            self.return_sequences,
        )?;
        Ok(y.unwrap_or(h))
    }

    fn forward_masked(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        mask: Option<kiln_device::Tensor>,
    ) -> Result<(Var, Option<kiln_device::Tensor>)> {
        if mask.is_some() {
            return Err(bad(
                "SimpleRNN",
                "does not take a padding mask; use an Lstm or drop mask_zero",
            ));
        }
        Ok((self.forward(tape, params, x)?, None))
    }
}

impl LayerSpec for SimpleRnnConfig {
    fn name_stem(&self) -> &'static str {
        "simple_rnn"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        if input.masked {
            return Err(bad(
                "SimpleRNN",
                "does not take a padding mask; use an Lstm or drop mask_zero",
            ));
        }
        super::build_on_values("SimpleRNN", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for SimpleRnnConfig {
    fn example() -> (Self, Signature) {
        (SimpleRnnConfig::new(3), Signature::values(&[4, 2]))
    }
}
