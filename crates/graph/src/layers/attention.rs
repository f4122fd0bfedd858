//! Multi-head attention, as Keras's `MultiHeadAttention`: queries, keys and values projected to
//! `num_heads` heads (`query`, `key`, `value` kernels (E, H, key_dim) and biases (H, key_dim)),
//! scaled dot-product attention through the fused kernel ([`Tape::attention`]), and the heads
//! projected back (`attention_output`, kernel (H, value_dim, E_out) and bias (E_out)). Keras's
//! weight shapes, names, order and initializers (glorot_uniform with Keras's fans for an einsum
//! kernel, zero biases), so Keras weights load and give the same outputs.
//!
//! In a [`Sequential`](super::Sequential) it is self-attention on a (T, E) input; an embedding's
//! `mask_zero` masks padded queries and keys, as Keras's query and value masks do.
//! [`MultiHeadAttention::call`] takes a separate key/value sequence (cross-attention,
//! [`AttentionCall`]).

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use super::{bad, needs_values, Layer, LayerExample, LayerSpec, Signature};
use crate::attention::AttentionOptions;
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `MultiHeadAttention(num_heads, key_dim, value_dim, dropout, use_bias,
/// output_shape)`, with `use_causal_mask` (a call argument in Keras) as a setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiHeadAttentionConfig {
    /// Heads (H).
    pub num_heads: usize,
    /// Query and key width per head.
    pub key_dim: usize,
    /// Value width per head (key_dim when absent).
    #[serde(default)]
    pub value_dim: Option<usize>,
    /// The rate at which attention weights are dropped while training.
    #[serde(default)]
    pub dropout: f32,
    /// Whether the projections have biases (default true).
    #[serde(default = "super::yes")]
    pub use_bias: bool,
    /// Output features (the query's when absent).
    #[serde(default)]
    pub output_shape: Option<usize>,
    /// Query i attends only to keys j <= i.
    #[serde(default)]
    pub use_causal_mask: bool,
}

impl MultiHeadAttentionConfig {
    /// `num_heads` heads of `key_dim`, Keras's defaults otherwise.
    pub fn new(num_heads: usize, key_dim: usize) -> Self {
        MultiHeadAttentionConfig {
            num_heads,
            key_dim,
            value_dim: None,
            dropout: 0.0,
            use_bias: true,
            output_shape: None,
            use_causal_mask: false,
        }
    }

    /// The value width per head.
    pub fn value_dim(mut self, value_dim: usize) -> Self {
        self.value_dim = Some(value_dim);
        self
    }

    /// Attention dropout while training.
    pub fn dropout(mut self, rate: f32) -> Self {
        self.dropout = rate;
        self
    }

    /// Whether the projections have biases.
    pub fn use_bias(mut self, use_bias: bool) -> Self {
        self.use_bias = use_bias;
        self
    }

    /// Output features.
    pub fn output_shape(mut self, features: usize) -> Self {
        self.output_shape = Some(features);
        self
    }

    /// Causal (each query attends to itself and the keys before it).
    pub fn causal(mut self, causal: bool) -> Self {
        self.use_causal_mask = causal;
        self
    }

    /// The layer for queries of `query` features and keys and values of `value` features
    /// (the same for self-attention): registers Keras's eight weights (six without biases).
    pub fn init(
        &self,
        pb: &ParamBuilder,
        query: usize,
        value: usize,
    ) -> Result<MultiHeadAttention> {
        let what = "MultiHeadAttention";
        let (h, dk) = (self.num_heads, self.key_dim);
        let dv = self.value_dim.unwrap_or(dk);
        let max = kiln_device::AttentionParams::MAX_HEAD_DIM;
        if h == 0 || dk == 0 || dv == 0 {
            return Err(bad(what, "needs at least one head of width at least 1"));
        }
        if dk > max || dv > max {
            return Err(bad(
                what,
                format!("heads of width {dk} (keys) and {dv} (values): at most {max}; use more, narrower heads"),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(
                what,
                format!("dropout {} must be in [0, 1)", self.dropout),
            ));
        }
        let out = self.output_shape.unwrap_or(query);
        // Keras's fans for an einsum kernel (a, ..., b, c): in = b * (a ...), out = c * (a ...).
        let fans = |s: &[usize]| {
            let field: usize = s[..s.len() - 2].iter().product();
            Init::GlorotUniformFans {
                fan_in: s[s.len() - 2] * field,
                fan_out: s[s.len() - 1] * field,
            }
        };
        let proj = |name: &str, shape: [usize; 3], bias: &[usize]| -> Result<Projection> {
            let pb = pb.pp(name);
            let outputs: usize = bias.iter().product();
            Ok(Projection {
                kernel: pb.add("kernel", &shape, fans(&shape))?,
                bias: if self.use_bias {
                    Some(pb.add("bias", bias, Init::Zeros)?)
                } else {
                    None
                },
                inputs: shape.iter().product::<usize>() / outputs,
                outputs,
            })
        };
        Ok(MultiHeadAttention {
            query: proj("query", [query, h, dk], &[h, dk])?,
            key: proj("key", [value, h, dk], &[h, dk])?,
            value: proj("value", [value, h, dv], &[h, dv])?,
            output: proj("attention_output", [h, dv, out], &[out])?,
            heads: h,
            key_dim: dk,
            value_dim: dv,
            dropout: self.dropout,
            causal: self.use_causal_mask,
            out_shape: vec![],
        })
    }
}

/// A kernel and its bias, as a map from `inputs` to `outputs` features.
#[derive(Clone, Copy, Debug)]
struct Projection {
    kernel: ParamId,
    bias: Option<ParamId>,
    inputs: usize,
    outputs: usize,
}

impl Projection {
    /// x (..., inputs), its last axes holding the inputs, times the kernel viewed as
    /// (inputs, outputs), plus the bias: (rows, outputs).
    fn apply(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let rows = x.value().len() / self.inputs;
        let flat = tape.reshape(x, &[rows, self.inputs])?;
        let kernel = tape.param(params, self.kernel);
        let kernel = tape.reshape(&kernel, &[self.inputs, self.outputs])?;
        let mut y = tape.matmul(&flat, &kernel, false, false)?;
        if let Some(b) = self.bias {
            let bias = tape.param(params, b);
            y = tape.add(&y, &tape.reshape(&bias, &[self.outputs])?)?;
        }
        Ok(y)
    }
}

/// What one call of [`MultiHeadAttention`] attends with: queries (B, Tq, E), values
/// (B, Tk, Ev), keys (the values when None) and padding ids (u32; a step whose id is 0 is
/// masked, as Keras's query and value masks).
#[derive(Clone, Debug)]
pub struct AttentionCall<'a> {
    /// (B, Tq, E).
    pub query: &'a Var,
    /// (B, Tk, Ev).
    pub value: &'a Var,
    /// (B, Tk, Ev); the values when None.
    pub key: Option<&'a Var>,
    /// (B, Tq).
    pub query_ids: Option<Tensor>,
    /// (B, Tk).
    pub value_ids: Option<Tensor>,
}

impl<'a> AttentionCall<'a> {
    /// `query` attending over `value` (keys = values), unmasked.
    pub fn new(query: &'a Var, value: &'a Var) -> Self {
        AttentionCall {
            query,
            value,
            key: None,
            query_ids: None,
            value_ids: None,
        }
    }

    /// Keys apart from the values.
    pub fn key(self, key: &'a Var) -> Self {
        AttentionCall {
            key: Some(key),
            ..self
        }
    }

    /// Padding ids of the queries and of the values (and keys).
    pub fn ids(self, query_ids: Option<Tensor>, value_ids: Option<Tensor>) -> Self {
        AttentionCall {
            query_ids,
            value_ids,
            ..self
        }
    }
}

/// A built [`MultiHeadAttentionConfig`].
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    query: Projection,
    key: Projection,
    value: Projection,
    output: Projection,
    heads: usize,
    key_dim: usize,
    value_dim: usize,
    dropout: f32,
    causal: bool,
    out_shape: Vec<usize>,
}

impl MultiHeadAttention {
    /// Attention of the call's queries over its keys and values (self-attention when they are
    /// the same `Var`): (B, Tq, E_out).
    pub fn call(&self, tape: &Tape, params: &ParamStore, x: AttentionCall) -> Result<Var> {
        let (qs, vs) = (x.query.shape().to_vec(), x.value.shape().to_vec());
        if qs.len() != 3 || vs.len() != 3 || qs[0] != vs[0] {
            return Err(bad(
                "MultiHeadAttention",
                format!(
                    "wants query (B, Tq, E) and value (B, Tk, E) with one B, got {qs:?} and {vs:?}"
                ),
            ));
        }
        let (b, tq, tk, h) = (qs[0], qs[1], vs[1], self.heads);
        let q = self.query.apply(tape, params, x.query)?;
        let k = self.key.apply(tape, params, x.key.unwrap_or(x.value))?;
        let v = self.value.apply(tape, params, x.value)?;
        let q = tape.reshape(&q, &[b, tq, h, self.key_dim])?;
        let k = tape.reshape(&k, &[b, tk, h, self.key_dim])?;
        let v = tape.reshape(&v, &[b, tk, h, self.value_dim])?;
        let opts = AttentionOptions::new()
            .causal(self.causal)
            .dropout(self.dropout)
            .ids(x.query_ids, x.value_ids);
        let o = tape.attention(&q, &k, &v, &opts)?;
        let y = self.output.apply(tape, params, &o)?;
        tape.reshape(&y, &[b, tq, self.output.outputs])
    }
}

impl Layer for MultiHeadAttention {
    fn kind(&self) -> &'static str {
        "MultiHeadAttention"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out_shape
    }

    fn params(&self) -> Vec<ParamId> {
        [self.query, self.key, self.value, self.output]
            .iter()
            .flat_map(|p| std::iter::once(p.kernel).chain(p.bias))
            .collect()
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        Ok(self.forward_masked(tape, params, x, None)?.0)
    }

    /// Self-attention; the mask masks queries and keys alike, and passes on (Keras's output
    /// keeps the query's mask).
    fn forward_masked(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        mask: Option<Tensor>,
    ) -> Result<(Var, Option<Tensor>)> {
        let y = self.call(
            tape,
            params,
            AttentionCall::new(x, x).ids(mask.clone(), mask.clone()),
        )?;
        Ok((y, mask))
    }
}

impl LayerSpec for MultiHeadAttentionConfig {
    fn name_stem(&self) -> &'static str {
        "multi_head_attention"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let what = "MultiHeadAttention";
        needs_values(what, input)?;
        let &[t, e] = input.shape.as_slice() else {
            return Err(bad(
                what,
                format!(
                    "takes a sequence of vectors (T, E) per sample, got {:?}; put an Embedding or a Reshape first",
                    input.shape
                ),
            ));
        };
        let mut layer = self.init(pb, e, e)?;
        layer.out_shape = vec![t, self.output_shape.unwrap_or(e)];
        let out = input.with_shape(layer.out_shape.clone());
        Ok((Box::new(layer), out))
    }
}

impl LayerExample for MultiHeadAttentionConfig {
    fn example() -> (Self, Signature) {
        (
            MultiHeadAttentionConfig::new(2, 3)
                .value_dim(2)
                .causal(true),
            Signature::values(&[4, 5]),
        )
    }
}
