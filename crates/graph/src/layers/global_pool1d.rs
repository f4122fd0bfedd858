//! Keras's `GlobalAveragePooling1D`: (T, E) per sample to (E), the mean over the steps, over
//! the steps an embedding's `mask_zero` keeps when there is a mask. The masked mean runs on the
//! device as attention with equal scores (zero queries and keys), whose weights are 1 / (kept
//! steps) on the kept steps: one dispatch, no host round trip. A sample with every step padded
//! averages all its steps (Keras divides 0 by 0 there).

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use super::{bad, needs_values, Layer, LayerExample, LayerSpec, Signature};
use crate::attention::AttentionOptions;
use crate::params::ParamStore;
use crate::tape::{Tape, Var};
use crate::{ParamBuilder, Result};

/// Keras's `GlobalAveragePooling1D()` over (T, E).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalAveragePooling1dConfig {}

/// A built [`GlobalAveragePooling1dConfig`].
#[derive(Clone, Debug)]
pub struct GlobalAveragePooling1d {
    steps: usize,
    out: Vec<usize>,
}

impl Layer for GlobalAveragePooling1d {
    fn kind(&self) -> &'static str {
        "GlobalAveragePooling1D"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        Ok(self.forward_masked(tape, params, x, None)?.0)
    }

    /// Drops the mask, as Keras's pooling does.
    fn forward_masked(
        &self,
        tape: &Tape,
        _params: &ParamStore,
        x: &Var,
        mask: Option<Tensor>,
    ) -> Result<(Var, Option<Tensor>)> {
        let Some(ids) = mask else {
            return Ok((tape.mean_axes(x, &[1], false)?, None));
        };
        let (b, t, e) = (x.shape()[0], self.steps, self.out[0]);
        // Heads of at most the kernel's width that split E evenly.
        let max = kiln_device::AttentionParams::MAX_HEAD_DIM;
        let heads = (e.div_ceil(max)..=e)
            .find(|h| e.is_multiple_of(*h))
            .unwrap_or(e);
        let d = tape.device();
        let q = tape.constant(d.zeros(&[b, 1, heads, 1])?);
        let k = tape.constant(d.zeros(&[b, t, heads, 1])?);
        let v = tape.reshape(x, &[b, t, heads, e / heads])?;
        let opts = AttentionOptions::new().ids(None, Some(ids));
        let mean = tape.attention(&q, &k, &v, &opts)?;
        Ok((tape.reshape(&mean, &[b, e])?, None))
    }
}

impl LayerSpec for GlobalAveragePooling1dConfig {
    fn name_stem(&self) -> &'static str {
        "global_average_pooling1d"
    }

    fn build(&self, _pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let what = "GlobalAveragePooling1D";
        needs_values(what, input)?;
        let &[t, e] = input.shape.as_slice() else {
            return Err(bad(
                what,
                format!("takes (T, E) per sample, got {:?}", input.shape),
            ));
        };
        let layer = GlobalAveragePooling1d {
            steps: t,
            out: vec![e],
        };
        Ok((Box::new(layer), Signature::values(&[e])))
    }
}

impl LayerExample for GlobalAveragePooling1dConfig {
    fn example() -> (Self, Signature) {
        (
            GlobalAveragePooling1dConfig::default(),
            Signature::values(&[4, 3]),
        )
    }
}
