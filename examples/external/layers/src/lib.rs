//! A layer and an op of one's own, outside kiln's crates, on the `kiln` crate alone.
//!
//! - [`Swish`]: x * sigmoid(x) as one op with its own backward ([`kiln::graph::CustomOp`]).
//! - [`ChannelSwishConfig`]: a layer, y = swish(x * scale) with one learned scale per feature of
//!   the last axis; it goes into a `SequentialConfig` like a built-in layer and, once
//!   [`register`]ed, model files name it `{"type": "channel_swish"}`.

use kiln::device::{BinaryOp, UnaryOp};
use kiln::graph::layers::{register_layer, RegisteredLayer};
use kiln::graph::{
    CustomOp, Init, Layer, LayerSpec, ParamBuilder, ParamId, ParamStore, Result, Signature, Tape,
    Var,
};
use kiln::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// x * sigmoid(x), forward and backward written on device tensors:
/// d/dx = s + x * s * (1 - s) = s * (1 + x * (1 - s)).
pub struct Swish;

impl CustomOp for Swish {
    fn name(&self) -> &str {
        "swish"
    }

    fn forward(&self, d: &Device, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let s = d.unary(UnaryOp::Sigmoid, &inputs[0])?;
        Ok(vec![d.mul(&inputs[0], &s)?])
    }

    fn backward(
        &self,
        d: &Device,
        inputs: &[Tensor],
        _outputs: &[Tensor],
        grads: &[Tensor],
    ) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        let s = d.unary(UnaryOp::Sigmoid, x)?;
        let one_minus_s = d.unary(
            UnaryOp::Affine {
                scale: -1.0,
                shift: 1.0,
            },
            &s,
        )?;
        let inner = d.unary(
            UnaryOp::Affine {
                scale: 1.0,
                shift: 1.0,
            },
            &d.binary(BinaryOp::Mul, x, &one_minus_s)?,
        )?;
        Ok(vec![Some(d.mul(&grads[0], &d.mul(&s, &inner)?)?)])
    }
}

/// y = swish(x * scale), `scale` one per feature of the last axis (initialised near 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSwishConfig {}

/// The built [`ChannelSwishConfig`].
pub struct ChannelSwish {
    scale: ParamId,
    shape: Vec<usize>,
}

impl Layer for ChannelSwish {
    fn kind(&self) -> &'static str {
        "ChannelSwish"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.scale]
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let scaled = tape.mul(x, &tape.param(params, self.scale))?;
        tape.custom1(Swish, &[&scaled])
    }
}

impl LayerSpec for ChannelSwishConfig {
    fn name_stem(&self) -> &'static str {
        "channel_swish"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let features = *input.shape.last().unwrap_or(&0);
        let scale = pb.add("scale", &[features], Init::Uniform(0.9, 1.1))?;
        let layer = ChannelSwish {
            scale,
            shape: input.shape.clone(),
        };
        Ok((Box::new(layer), input.clone()))
    }
}

impl RegisteredLayer for ChannelSwishConfig {
    const TYPE: &'static str = "channel_swish";

    fn example() -> Option<(Self, Signature)> {
        Some((ChannelSwishConfig {}, Signature::values(&[4])))
    }
}

/// Lets model files name this crate's layer (`{"type": "channel_swish"}`).
pub fn register() -> Result<()> {
    register_layer::<ChannelSwishConfig>()
}
