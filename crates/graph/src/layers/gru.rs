//! GRU and Bidirectional(GRU), Keras's semantics (`reset_after=True`, Keras's default): gates z
//! (update), r (reset), n (candidate); kernel (D, E, 3H) glorot_uniform (fans E and 3H),
//! recurrent kernel (D, H, 3H) orthogonal per direction, bias (D, 2, 3H) zeros (the input bias,
//! then the recurrent one); D = 1, or 2 inside `Bidirectional`. Input (B, T, E); output
//! (B, T, D*H) with `return_sequences`, else the last state (B, D*H).

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::recurrent::GruVars;
use crate::tape::{Tape, Var};
use crate::Result;

fn keras_default() -> bool {
    true
}

/// Keras's `GRU(units, return_sequences)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GruConfig {
    /// Hidden units H.
    pub units: usize,
    /// Output every step (B, T, H) rather than the last state (B, H).
    #[serde(default)]
    pub return_sequences: bool,
    /// Keras's `reset_after`: the reset gate applies after the recurrent product (Keras's
    /// default, and the only form kiln computes; `false`, Keras 1's form, is refused).
    #[serde(default = "keras_default")]
    pub reset_after: bool,
}

impl GruConfig {
    /// `units` hidden units, last state only.
    pub fn new(units: usize) -> Self {
        GruConfig {
            units,
            return_sequences: false,
            reset_after: true,
        }
    }

    /// Output every step.
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }

    /// Registers `kernel`, `recurrent_kernel` and `bias` under `pb` for per-sample inputs (T, E).
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<Gru> {
        self.init_directions(pb, input, 1)
    }

    pub(crate) fn init_directions(
        &self,
        pb: &ParamBuilder,
        input: &[usize],
        d: usize,
    ) -> Result<Gru> {
        let kind = if d == 2 { "Bidirectional" } else { "GRU" };
        let &[t, e] = input else {
            return Err(bad(
                kind,
                format!("a GRU needs (T, E) inputs per sample, got {input:?}"),
            ));
        };
        if self.units == 0 {
            return Err(bad(kind, "a GRU needs at least one unit"));
        }
        if !self.reset_after {
            return Err(bad(
                kind,
                "reset_after: false (Keras 1's GRU) is not computed by kiln; use Keras's default, \
                 reset_after: true",
            ));
        }
        let units = self.units;
        let h3 = units
            .checked_mul(3)
            .ok_or_else(|| bad(kind, format!("{units} units is too many")))?;
        let kernel = pb.add(
            "kernel",
            &[d, e, h3],
            Init::GlorotUniformFans {
                fan_in: e,
                fan_out: h3,
            },
        )?;
        let recurrent = pb.add("recurrent_kernel", &[d, units, h3], Init::Orthogonal)?;
        let bias = pb.add("bias", &[d, 2, h3], Init::Zeros)?;
        let out = if self.return_sequences {
            vec![t, d * units]
        } else {
            vec![d * units]
        };
        Ok(Gru {
            kernel,
            recurrent,
            bias,
            return_sequences: self.return_sequences,
            bidirectional: d == 2,
            out,
        })
    }
}

/// A built GRU layer, one or two directions.
#[derive(Clone, Debug)]
pub struct Gru {
    kernel: ParamId,
    recurrent: ParamId,
    bias: ParamId,
    return_sequences: bool,
    bidirectional: bool,
    out: Vec<usize>,
}

impl Gru {
    /// (kernel (D, E, 3H), recurrent kernel (D, H, 3H), bias (D, 2, 3H)).
    pub fn weights(&self) -> (ParamId, ParamId, ParamId) {
        (self.kernel, self.recurrent, self.bias)
    }
}

impl Layer for Gru {
    fn kind(&self) -> &'static str {
        if self.bidirectional {
            "Bidirectional"
        } else {
            "GRU"
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
        let out = tape.gru(
            GruVars::new(x, &kernel, &recurrent, &bias)
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

/// Builds a GRU of `d` directions (2 inside `Bidirectional`).
pub(crate) fn build_gru(
    cfg: &GruConfig,
    pb: &ParamBuilder,
    input: &Signature,
    d: usize,
) -> Result<(Box<dyn Layer>, Signature)> {
    super::needs_values(if d == 2 { "Bidirectional" } else { "GRU" }, input)?;
    let layer = cfg.init_directions(pb, &input.shape, d)?;
    let out = Signature {
        shape: layer.out.clone(),
        ids: false,
        masked: input.masked && cfg.return_sequences,
    };
    Ok((Box::new(layer), out))
}

impl LayerSpec for GruConfig {
    fn name_stem(&self) -> &'static str {
        "gru"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        build_gru(self, pb, input, 1)
    }
}

impl LayerExample for GruConfig {
    fn example() -> (Self, Signature) {
        (
            GruConfig::new(3).return_sequences(true),
            Signature::values(&[4, 2]),
        )
    }
}
