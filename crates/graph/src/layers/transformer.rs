//! Transformer building blocks with keras-hub's semantics:
//!
//! - [`TransformerEncoderConfig`]: keras-hub's `TransformerEncoder`: self-attention
//!   ([`MultiHeadAttention`](super::MultiHeadAttention), `num_heads` heads of E / num_heads),
//!   dropout, a residual and LayerNormalization, then a feed-forward block (Dense to
//!   `intermediate_dim` with the activation, Dense back to E), dropout, a residual and
//!   LayerNormalization; `normalize_first` moves each normalization before its block (pre-norm).
//!   Weights in keras-hub's order: the attention's eight, the two normalizations', the two
//!   Dense layers'.
//! - [`PositionEmbeddingConfig`]: x + keras-hub's `PositionEmbedding` (learned, one vector per
//!   position, glorot_uniform).
//! - [`SinePositionEncodingConfig`]: x + keras-hub's `SinePositionEncoding` (fixed sines and
//!   cosines of wavelengths up to `max_wavelength`).
//!
//! Each keeps the (T, E) shape and passes an embedding's padding mask on.

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use super::{
    bad, needs_values, Activation, AttentionCall, Dense, DenseConfig, Layer, LayerExample,
    LayerNormalization, LayerNormalizationConfig, LayerSpec, MultiHeadAttention,
    MultiHeadAttentionConfig, Signature,
};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

fn relu() -> Activation {
    Activation::Relu
}

fn hub_epsilon() -> f32 {
    1e-5
}

/// The (T, E) a sequence layer takes.
fn sequence_shape(what: &str, input: &Signature) -> Result<(usize, usize)> {
    needs_values(what, input)?;
    match input.shape.as_slice() {
        &[t, e] => Ok((t, e)),
        s => Err(bad(
            what,
            format!(
                "takes a sequence of vectors (T, E) per sample, got {s:?}; put an Embedding first"
            ),
        )),
    }
}

/// keras-hub's `TransformerEncoder(intermediate_dim, num_heads, dropout, activation,
/// layer_norm_epsilon, normalize_first)`, with a causal flag for decoder-only stacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerEncoderConfig {
    /// Width of the feed-forward block.
    pub intermediate_dim: usize,
    /// Attention heads; E must divide by it.
    pub num_heads: usize,
    /// Dropout after the attention and after the feed-forward block (and on the attention
    /// weights), while training.
    #[serde(default)]
    pub dropout: f32,
    /// The feed-forward block's activation (keras-hub: relu).
    #[serde(default = "relu")]
    pub activation: Activation,
    /// The normalizations' epsilon (keras-hub: 1e-5).
    #[serde(default = "hub_epsilon")]
    pub layer_norm_epsilon: f32,
    /// Pre-norm: normalize before each block instead of after its residual.
    #[serde(default)]
    pub normalize_first: bool,
    /// Each position attends only to itself and those before it (a GPT-style decoder block).
    #[serde(default)]
    pub use_causal_mask: bool,
}

impl TransformerEncoderConfig {
    /// keras-hub's defaults with a feed-forward width and a head count.
    pub fn new(intermediate_dim: usize, num_heads: usize) -> Self {
        TransformerEncoderConfig {
            intermediate_dim,
            num_heads,
            dropout: 0.0,
            activation: Activation::Relu,
            layer_norm_epsilon: hub_epsilon(),
            normalize_first: false,
            use_causal_mask: false,
        }
    }

    /// Dropout while training.
    pub fn dropout(mut self, rate: f32) -> Self {
        self.dropout = rate;
        self
    }

    /// The feed-forward activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Pre-norm (true) or post-norm (false, keras-hub's default).
    pub fn normalize_first(mut self, yes: bool) -> Self {
        self.normalize_first = yes;
        self
    }

    /// Causal self-attention.
    pub fn causal(mut self, yes: bool) -> Self {
        self.use_causal_mask = yes;
        self
    }

    /// The block for sequences of (T, E).
    pub fn init(&self, pb: &ParamBuilder, t: usize, e: usize) -> Result<TransformerEncoder> {
        let what = "TransformerEncoder";
        if self.num_heads == 0 || !e.is_multiple_of(self.num_heads) {
            return Err(bad(
                what,
                format!("{} heads must divide the width {e}", self.num_heads),
            ));
        }
        if self.intermediate_dim == 0 {
            return Err(bad(what, "intermediate_dim must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(
                what,
                format!("dropout {} must be in [0, 1)", self.dropout),
            ));
        }
        let attention = MultiHeadAttentionConfig::new(self.num_heads, e / self.num_heads)
            .dropout(self.dropout)
            .causal(self.use_causal_mask)
            .init(&pb.pp("self_attention_layer"), e, e)?;
        let norm = LayerNormalizationConfig::new().epsilon(self.layer_norm_epsilon);
        let attention_norm = norm.init(&pb.pp("self_attention_layer_norm"), &[t, e])?;
        let feedforward_norm = norm.init(&pb.pp("feedforward_layer_norm"), &[t, e])?;
        let intermediate = DenseConfig::new(self.intermediate_dim)
            .activation(self.activation)
            .init(&pb.pp("feedforward_intermediate_dense"), &[t, e])?;
        let output = DenseConfig::new(e).init(
            &pb.pp("feedforward_output_dense"),
            &[t, self.intermediate_dim],
        )?;
        Ok(TransformerEncoder {
            attention,
            attention_norm,
            feedforward_norm,
            intermediate,
            output,
            dropout: self.dropout,
            normalize_first: self.normalize_first,
            out: vec![t, e],
        })
    }
}

/// A built [`TransformerEncoderConfig`].
#[derive(Clone, Debug)]
pub struct TransformerEncoder {
    attention: MultiHeadAttention,
    attention_norm: LayerNormalization,
    feedforward_norm: LayerNormalization,
    intermediate: Dense,
    output: Dense,
    dropout: f32,
    normalize_first: bool,
    out: Vec<usize>,
}

impl TransformerEncoder {
    /// One residual block: `block` on x (normalized first when pre-norm), dropout, + x, then
    /// normalized when post-norm.
    fn residual(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        norm: &LayerNormalization,
        block: impl FnOnce(&Var) -> Result<Var>,
    ) -> Result<Var> {
        let input = if self.normalize_first {
            norm.forward(tape, params, x)?
        } else {
            x.clone()
        };
        let y = tape.dropout(&block(&input)?, self.dropout)?;
        let sum = tape.add(&y, x)?;
        if self.normalize_first {
            Ok(sum)
        } else {
            norm.forward(tape, params, &sum)
        }
    }
}

impl Layer for TransformerEncoder {
    fn kind(&self) -> &'static str {
        "TransformerEncoder"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        let mut all = self.attention.params();
        for layer in [
            &self.attention_norm as &dyn Layer,
            &self.feedforward_norm,
            &self.intermediate,
            &self.output,
        ] {
            all.extend(layer.params());
        }
        all
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
        let attended = self.residual(tape, params, x, &self.attention_norm, |h| {
            let call = AttentionCall::new(h, h).ids(mask.clone(), mask.clone());
            self.attention.call(tape, params, call)
        })?;
        let y = self.residual(tape, params, &attended, &self.feedforward_norm, |h| {
            let wide = self.intermediate.forward(tape, params, h)?;
            self.output.forward(tape, params, &wide)
        })?;
        Ok((y, mask))
    }
}

impl LayerSpec for TransformerEncoderConfig {
    fn name_stem(&self) -> &'static str {
        "transformer_encoder"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let (t, e) = sequence_shape("TransformerEncoder", input)?;
        Ok((Box::new(self.init(pb, t, e)?), input.clone()))
    }
}

impl LayerExample for TransformerEncoderConfig {
    fn example() -> (Self, Signature) {
        (
            TransformerEncoderConfig::new(5, 2).normalize_first(true),
            Signature::values(&[3, 4]),
        )
    }
}

/// x + keras-hub's `PositionEmbedding(sequence_length)`: a learned vector per position
/// (`embeddings`, (sequence_length, E), glorot_uniform), the first T added to a (T, E) input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionEmbeddingConfig {
    /// The most positions (T at most this).
    pub sequence_length: usize,
}

impl PositionEmbeddingConfig {
    /// Up to `sequence_length` positions.
    pub fn new(sequence_length: usize) -> Self {
        PositionEmbeddingConfig { sequence_length }
    }
}

/// A built [`PositionEmbeddingConfig`].
#[derive(Clone, Debug)]
pub struct PositionEmbedding {
    embeddings: ParamId,
    out: Vec<usize>,
}

impl Layer for PositionEmbedding {
    fn kind(&self) -> &'static str {
        "PositionEmbedding"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.embeddings]
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let table = tape.param(params, self.embeddings);
        let positions = tape.narrow(&table, 0, 0, self.out[0])?;
        tape.add(x, &positions)
    }
}

impl LayerSpec for PositionEmbeddingConfig {
    fn name_stem(&self) -> &'static str {
        "position_embedding"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let what = "PositionEmbedding";
        let (t, e) = sequence_shape(what, input)?;
        if t > self.sequence_length {
            return Err(bad(
                what,
                format!(
                    "sequences of {t} steps, past its sequence_length {}; raise it",
                    self.sequence_length
                ),
            ));
        }
        let embeddings = pb.add(
            "embeddings",
            &[self.sequence_length, e],
            Init::GlorotUniform,
        )?;
        let layer = PositionEmbedding {
            embeddings,
            out: vec![t, e],
        };
        Ok((Box::new(layer), input.clone()))
    }
}

impl LayerExample for PositionEmbeddingConfig {
    fn example() -> (Self, Signature) {
        (PositionEmbeddingConfig::new(6), Signature::values(&[4, 3]))
    }
}

fn ten_thousand() -> f32 {
    10_000.0
}

/// x + keras-hub's `SinePositionEncoding(max_wavelength)`: feature 2k of position t is
/// sin(t / max_wavelength^(2k / E)), feature 2k + 1 its cosine. No weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinePositionEncodingConfig {
    /// The longest wavelength (keras-hub: 10,000).
    #[serde(default = "ten_thousand")]
    pub max_wavelength: f32,
}

impl Default for SinePositionEncodingConfig {
    fn default() -> Self {
        SinePositionEncodingConfig {
            max_wavelength: ten_thousand(),
        }
    }
}

/// The (T, E) encodings, as keras-hub computes them (in f32).
pub fn sine_position_encoding(t: usize, e: usize, max_wavelength: f32) -> Vec<f32> {
    let min_freq = 1.0 / max_wavelength;
    let mut out = Vec::with_capacity(t * e);
    for pos in 0..t {
        for i in 0..e {
            let timescale = min_freq.powf((2 * (i / 2)) as f32 / e as f32);
            let angle = pos as f32 * timescale;
            out.push(if i % 2 == 0 { angle.sin() } else { angle.cos() });
        }
    }
    out
}

/// A built [`SinePositionEncodingConfig`]: its (T, E) table, computed once.
#[derive(Clone, Debug)]
pub struct SinePositionEncoding {
    table: Vec<f32>,
    out: Vec<usize>,
}

impl Layer for SinePositionEncoding {
    fn kind(&self) -> &'static str {
        "SinePositionEncoding"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        let table = tape.constant(tape.device().from_f32(&self.table, &self.out)?);
        tape.add(x, &table)
    }
}

impl LayerSpec for SinePositionEncodingConfig {
    fn name_stem(&self) -> &'static str {
        "sine_position_encoding"
    }

    fn build(&self, _pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let what = "SinePositionEncoding";
        let (t, e) = sequence_shape(what, input)?;
        if !(self.max_wavelength > 1.0 && self.max_wavelength.is_finite()) {
            return Err(bad(
                what,
                format!(
                    "max_wavelength {} must be finite and above 1",
                    self.max_wavelength
                ),
            ));
        }
        let layer = SinePositionEncoding {
            table: sine_position_encoding(t, e, self.max_wavelength),
            out: vec![t, e],
        };
        Ok((Box::new(layer), input.clone()))
    }
}

impl LayerExample for SinePositionEncodingConfig {
    fn example() -> (Self, Signature) {
        (
            SinePositionEncodingConfig::default(),
            Signature::values(&[5, 4]),
        )
    }
}
