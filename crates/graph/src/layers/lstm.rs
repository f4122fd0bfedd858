//! LSTM and Bidirectional(LSTM), Keras's semantics: gates i, f, g, o; kernel (D, E, 4H)
//! glorot_uniform (fans E and 4H), recurrent kernel (D, H, 4H) orthogonal per direction, bias
//! (D, 4H) zeros with the forget block at 1 (`unit_forget_bias`); D = 1, or 2 for a bidirectional
//! layer (0 forward, 1 backward). Input (B, T, E); output (B, T, D*H) with `return_sequences`,
//! else the last state (B, D*H): [forward state at T-1, backward state at t = 0].

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerConfig, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::recurrent::LstmVars;
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `LSTM(units, return_sequences)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LstmConfig {
    /// Hidden units H.
    pub units: usize,
    /// Output every step (B, T, H) rather than the last state (B, H).
    #[serde(default)]
    pub return_sequences: bool,
}

/// Keras's `Bidirectional(LSTM(...))` or `Bidirectional(GRU(...))`: the layer run forward and
/// backward in time, outputs concatenated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidirectionalConfig {
    /// The wrapped layer (an LSTM or a GRU).
    #[serde(deserialize_with = "super::deserialize_boxed_layer")]
    pub layer: Box<LayerConfig>,
}

impl LstmConfig {
    /// `units` hidden units, last state only.
    pub fn new(units: usize) -> Self {
        LstmConfig {
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
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<Lstm> {
        self.init_directions(pb, input, 1)
    }

    fn init_directions(&self, pb: &ParamBuilder, input: &[usize], d: usize) -> Result<Lstm> {
        let kind = if d == 2 { "Bidirectional" } else { "LSTM" };
        let &[t, e] = input else {
            return Err(bad(
                kind,
                format!("an LSTM needs (T, E) inputs per sample, got {input:?}"),
            ));
        };
        if self.units == 0 {
            return Err(bad(kind, "an LSTM needs at least one unit"));
        }
        let units = self.units;
        let h4 = units
            .checked_mul(4)
            .ok_or_else(|| bad(kind, format!("{units} units is too many")))?;
        let kernel = pb.add(
            "kernel",
            &[d, e, h4],
            Init::GlorotUniformFans {
                fan_in: e,
                fan_out: h4,
            },
        )?;
        let recurrent = pb.add("recurrent_kernel", &[d, units, h4], Init::Orthogonal)?;
        let bias = pb.add("bias", &[d, h4], Init::UnitForgetBias { units })?;
        let out = if self.return_sequences {
            vec![t, d * units]
        } else {
            vec![d * units]
        };
        Ok(Lstm {
            kernel,
            recurrent,
            bias,
            return_sequences: self.return_sequences,
            bidirectional: d == 2,
            out,
        })
    }
}

impl BidirectionalConfig {
    /// Wraps `layer`: an [`LstmConfig`] or a [`GruConfig`](super::GruConfig).
    pub fn new(layer: impl Into<LayerConfig>) -> Self {
        BidirectionalConfig {
            layer: Box::new(layer.into()),
        }
    }

    fn lstm(&self) -> Result<&LstmConfig> {
        match &*self.layer {
            LayerConfig::Lstm(c) => Ok(c),
            _ => Err(bad(
                "Bidirectional",
                "wraps an Lstm or Gru layer (SimpleRnn runs one way only)",
            )),
        }
    }

    /// Registers the two directions' weights (leading axis 2) of a wrapped LSTM under `pb` for
    /// inputs (T, E).
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<Lstm> {
        self.lstm()?.init_directions(pb, input, 2)
    }
}

/// A built LSTM layer, one or two directions.
#[derive(Clone, Debug)]
pub struct Lstm {
    kernel: ParamId,
    recurrent: ParamId,
    bias: ParamId,
    return_sequences: bool,
    bidirectional: bool,
    out: Vec<usize>,
}

impl Lstm {
    /// (kernel (D, E, 4H), recurrent kernel (D, H, 4H), bias (D, 4H)).
    pub fn weights(&self) -> (ParamId, ParamId, ParamId) {
        (self.kernel, self.recurrent, self.bias)
    }
}

impl Layer for Lstm {
    fn kind(&self) -> &'static str {
        if self.bidirectional {
            "Bidirectional"
        } else {
            "LSTM"
        }
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.kernel, self.recurrent, self.bias]
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        Ok(self.forward_masked(tape, params, x, None)?.0)
    }

    fn forward_masked(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        mask: Option<Tensor>,
    ) -> Result<(Var, Option<Tensor>)> {
        let p = |id: ParamId| tape.param(params, id);
        let (kernel, recurrent, bias) = (p(self.kernel), p(self.recurrent), p(self.bias));
        let out = tape.lstm(
            LstmVars::new(x, &kernel, &recurrent, &bias)
                .mask(mask.as_ref())
                .return_sequences(self.return_sequences),
        )?;
        // Keras keeps the mask on a returned sequence and drops it with the last state.
        Ok(match out.y {
            Some(y) => (y, mask),
            None => (out.h, None),
        })
    }
}

fn build_lstm(
    cfg: &LstmConfig,
    pb: &ParamBuilder,
    input: &Signature,
    d: usize,
) -> Result<(Box<dyn Layer>, Signature)> {
    super::needs_values(if d == 2 { "Bidirectional" } else { "LSTM" }, input)?;
    let layer = cfg.init_directions(pb, &input.shape, d)?;
    let out = Signature {
        shape: layer.out.clone(),
        ids: false,
        masked: input.masked && cfg.return_sequences,
    };
    Ok((Box::new(layer), out))
}

impl LayerSpec for LstmConfig {
    fn name_stem(&self) -> &'static str {
        "lstm"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        build_lstm(self, pb, input, 1)
    }
}

impl LayerSpec for BidirectionalConfig {
    fn name_stem(&self) -> &'static str {
        "bidirectional"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        match &*self.layer {
            LayerConfig::Gru(gru) => super::gru::build_gru(gru, pb, input, 2),
            _ => build_lstm(self.lstm()?, pb, input, 2),
        }
    }
}

impl LayerExample for LstmConfig {
    fn example() -> (Self, Signature) {
        (
            LstmConfig::new(3).return_sequences(true),
            Signature::values(&[4, 2]),
        )
    }
}

impl LayerExample for BidirectionalConfig {
    fn example() -> (Self, Signature) {
        (
            BidirectionalConfig::new(LstmConfig::new(2)),
            Signature::values(&[4, 2]),
        )
    }
}
