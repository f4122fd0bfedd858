//! Layers with Keras's semantics and initializers, one file each. A layer is a config (serde,
//! builder methods, Keras defaults) whose `init(&ParamBuilder, input shape)` registers its
//! parameters and returns a module with `forward`, as burn's `LstmConfig::new(..).init(..)` and
//! candle's `lstm(.., vb.pp("enc"))`:
//!
//! ```
//! use kiln_graph::layers::{Activation, DenseConfig};
//! use kiln_graph::{Layer, ParamBuilder, Tape};
//! use kiln_graph::kiln_device::Device;
//!
//! let device = Device::cpu();
//! let pb = ParamBuilder::new(0);
//! let dense = DenseConfig::new(3).activation(Activation::Relu).init(&pb.pp("head"), &[4]).unwrap();
//! let params = pb.build(&device).unwrap();
//! assert_eq!(params.name(dense.kernel()), "head.kernel");
//! let tape = Tape::inference(&device);
//! let x = tape.constant(device.from_f32(&[1.0; 8], &[2, 4]).unwrap());
//! assert_eq!(dense.forward(&tape, &params, &x).unwrap().shape(), &[2, 3]);
//! ```
//!
//! [`LayerConfig`] is the serde front end of model files: one variant per built-in layer config,
//! listed once in `layer_registry!` (adding a layer to kiln is its own file plus one line there),
//! and `Custom` for a layer of one's own: a config implementing [`RegisteredLayer`] goes into a
//! `SequentialConfig` as a built-in one does, and model files name it once registered
//! ([`register_layer`]).
//!
//! Shapes: B batch; a layer is initialised with, and reports, per-sample shapes; at run time the
//! batch is in front.

mod activation;
mod attention;
mod batch_norm;
mod conv1d;
mod conv2d;
mod custom;
mod dense;
mod dropout;
mod embedding;
mod flatten;
mod global_pool1d;
mod gru;
mod layer_norm;
mod lstm;
mod pool;
mod reshape;
mod sequential;
mod simple_rnn;
mod transformer;

pub use activation::{Activation, ActivationConfig, ActivationLayer};
pub use attention::{AttentionCall, MultiHeadAttention, MultiHeadAttentionConfig};
pub use batch_norm::{BatchNormalization, BatchNormalizationConfig};
pub use conv1d::{Conv1d, Conv1dConfig, GlobalMaxPooling1d, GlobalMaxPooling1dConfig, Padding1d};
pub use conv2d::{Conv2d, Conv2dConfig};
pub use custom::{register_layer, CustomLayerConfig, RegisteredLayer};
pub use dense::{Dense, DenseConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use embedding::{Embedding, EmbeddingConfig};
pub use flatten::{Flatten, FlattenConfig};
pub use global_pool1d::{GlobalAveragePooling1d, GlobalAveragePooling1dConfig};
pub use gru::{Gru, GruConfig};
pub use layer_norm::{LayerNormalization, LayerNormalizationConfig};
pub use lstm::{BidirectionalConfig, Lstm, LstmConfig};
pub use pool::{
    AvgPool2dConfig, GlobalAvgPool, GlobalAvgPoolConfig, MaxPool2dConfig, Pool2d,
    StochasticPool2dConfig,
};
pub use reshape::{Reshape, ReshapeConfig};
pub use sequential::{Sequential, SequentialConfig, SummaryRow, MAX_RANK};
pub use simple_rnn::{SimpleRnn, SimpleRnnConfig};
pub use transformer::{
    sine_position_encoding, PositionEmbedding, PositionEmbeddingConfig, SinePositionEncoding,
    SinePositionEncodingConfig, TransformerEncoder, TransformerEncoderConfig,
};

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use crate::params::{ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// What flows into or out of a layer, per sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Per-sample shape, without the batch.
    pub shape: Vec<usize>,
    /// u32 token ids rather than f32 values.
    pub ids: bool,
    /// A padding mask (Keras's `mask_zero`) comes with the values.
    pub masked: bool,
}

impl Signature {
    /// f32 values of per-sample shape `shape`, unmasked.
    pub fn values(shape: &[usize]) -> Signature {
        Signature {
            shape: shape.to_vec(),
            ids: false,
            masked: false,
        }
    }

    /// The same flags with another shape.
    pub fn with_shape(&self, shape: Vec<usize>) -> Signature {
        Signature {
            shape,
            ..self.clone()
        }
    }
}

/// A built layer: parameters (by id into a [`ParamStore`]) and a forward pass.
pub trait Layer {
    /// Keras's class name, as `summary()` prints it (`Dense`, `Bidirectional`).
    fn kind(&self) -> &'static str;

    /// Per-sample output shape.
    fn output_shape(&self) -> &[usize];

    /// The layer's parameters, in registration order.
    fn params(&self) -> Vec<ParamId> {
        vec![]
    }

    /// Runs the layer on a batch (batch first).
    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var>;

    /// Runs the layer with Keras's mask propagation: `mask` is the (B, T) token ids whose zeros
    /// mark padding. The default passes the mask through unchanged; an embedding with
    /// `mask_zero` makes one, recurrent layers use (and, returning only a last state, drop) it.
    fn forward_masked(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        mask: Option<Tensor>,
    ) -> Result<(Var, Option<Tensor>)> {
        Ok((self.forward(tape, params, x)?, mask))
    }
}

/// A layer config as [`Sequential`] (and model files) use it: builds the layer for an input.
pub trait LayerSpec {
    /// The stem of Keras's automatic names (`dense` gives `dense_1`, `dense_2`, ...).
    fn name_stem(&self) -> &'static str;

    /// Checks the input against the layer, registers its parameters in `pb` and returns the
    /// layer with its output signature. Nothing touches a device here.
    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)>;
}

/// A config with a valid example of itself and an input it builds on: what the registry's
/// tests walk (serde round trips, model files, finite-difference gradients), so that a layer
/// added to the registry is covered without an edit elsewhere.
pub trait LayerExample: Sized {
    /// The example config and a per-sample input it takes.
    fn example() -> (Self, Signature);
}

/// An error in building a layer: the layer named by `what`, and what to change.
pub(crate) fn bad(what: &str, message: impl Into<String>) -> Error {
    Error::model(what, message)
}

/// Refuses token ids where a layer needs values.
pub(crate) fn needs_values(what: &str, input: &Signature) -> Result<()> {
    if input.ids {
        return Err(bad(
            what,
            "takes f32 values, not token ids; put an Embedding first",
        ));
    }
    Ok(())
}

/// The usual [`LayerSpec::build`]: values in (not ids), the layer built for the input's shape, the
/// input's flags (mask) passed on with the layer's output shape.
pub(crate) fn build_on_values<L: Layer + 'static>(
    kind: &str,
    input: &Signature,
    init: impl FnOnce(&[usize]) -> Result<L>,
) -> Result<(Box<dyn Layer>, Signature)> {
    needs_values(kind, input)?;
    let layer = init(&input.shape)?;
    let out = input.with_shape(layer.output_shape().to_vec());
    Ok((Box::new(layer), out))
}

/// Lists every built-in layer config once: the enum of model files ([`LayerConfig`], tagged by
/// `"type"` in snake case, with a `Custom` variant for registered layers of one's own), its serde
/// form, its conversions from each config, and the dispatch to [`LayerSpec`].
macro_rules! layer_registry {
    ($($(#[$doc:meta])* $variant:ident($config:ty)),* $(,)?) => {
        /// One layer of a model file: `{"type": "dense", "units": 64, ...}`. Every variant holds
        /// the layer's own config; `Custom` one of the user's own ([`RegisteredLayer`]).
        #[derive(Clone, Debug, PartialEq)]
        pub enum LayerConfig {
            $($(#[$doc])* $variant($config),)*
            /// A layer of one's own ([`RegisteredLayer`]).
            Custom(CustomLayerConfig),
        }

        /// The built-in layers' serde form, written.
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum BuiltinRef<'a> {
            $($variant(&'a $config),)*
        }

        /// The built-in layers' serde form, read.
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum BuiltinOwned {
            $($variant($config),)*
        }

        impl Serialize for LayerConfig {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                match self {
                    $(LayerConfig::$variant(c) => BuiltinRef::$variant(c).serialize(s),)*
                    LayerConfig::Custom(c) => c.to_json().serialize(s),
                }
            }
        }

        impl From<BuiltinOwned> for LayerConfig {
            fn from(b: BuiltinOwned) -> Self {
                match b {
                    $(BuiltinOwned::$variant(c) => LayerConfig::$variant(c),)*
                }
            }
        }

        impl LayerConfig {
            /// The built-in layers' `type` names, in registry order (`dense`, `embedding`, ...).
            pub fn builtin_types() -> Vec<String> {
                vec![$(snake_case(stringify!($variant))),*]
            }

            /// The config as a [`LayerSpec`].
            pub fn spec(&self) -> &dyn LayerSpec {
                match self {
                    $(LayerConfig::$variant(c) => c,)*
                    LayerConfig::Custom(c) => c.spec(),
                }
            }

            /// One example of every built-in layer, in registry order, then of every registered
            /// layer that has one, each with an input it builds on ([`LayerExample`]).
            pub fn examples() -> Vec<(LayerConfig, Signature)> {
                let mut all = vec![$({
                    let (config, input) = <$config as LayerExample>::example();
                    (LayerConfig::$variant(config), input)
                }),*];
                all.extend(custom::registered_examples());
                all
            }
        }

        $(impl From<$config> for LayerConfig {
            fn from(c: $config) -> Self {
                LayerConfig::$variant(c)
            }
        })*
    };
}

layer_registry! {
    /// y = act(x · kernel + bias) on the last axis.
    Dense(DenseConfig),
    /// Token ids to vectors.
    Embedding(EmbeddingConfig),
    /// Keras's LSTM.
    Lstm(LstmConfig),
    /// Keras's SimpleRNN.
    SimpleRnn(SimpleRnnConfig),
    /// An LSTM or GRU run forward and backward in time, concatenated.
    Bidirectional(BidirectionalConfig),
    /// Drops activations while training.
    Dropout(DropoutConfig),
    /// An activation function on its own.
    Activation(ActivationConfig),
    /// (B, d1, d2, ...) to (B, d1 * d2 * ...).
    Flatten(FlattenConfig),
    /// 2-D convolution over (B, C, H, W).
    Conv2d(Conv2dConfig),
    /// Max pooling over (B, C, H, W).
    MaxPool2d(MaxPool2dConfig),
    /// Average pooling over (B, C, H, W).
    AvgPool2d(AvgPool2dConfig),
    /// Stochastic pooling (Zeiler & Fergus) over (B, C, H, W).
    StochasticPool2d(StochasticPool2dConfig),
    /// (B, C, H, W) to (B, C), the mean of each channel.
    GlobalAvgPool(GlobalAvgPoolConfig),
    /// Each sample's last axis to mean 0, variance 1, then gamma and beta.
    LayerNormalization(LayerNormalizationConfig),
    /// (B, d1, d2, ...) to (B, t1, t2, ...), the same values in order.
    Reshape(ReshapeConfig),
    /// Keras's MultiHeadAttention, as self-attention on (T, E).
    MultiHeadAttention(MultiHeadAttentionConfig),
    /// keras-hub's TransformerEncoder: attention and feed-forward blocks with residuals.
    TransformerEncoder(TransformerEncoderConfig),
    /// Adds a learned vector per position.
    PositionEmbedding(PositionEmbeddingConfig),
    /// Adds fixed sines and cosines of the position.
    SinePositionEncoding(SinePositionEncodingConfig),
    /// (T, E) to (E), the mean over the (unmasked) steps.
    GlobalAveragePooling1d(GlobalAveragePooling1dConfig),
    /// Keras's Conv1D over (T, C): valid, same or causal padding, strides, dilation.
    Conv1d(Conv1dConfig),
    /// (T, C) to (C), the largest value of each channel over the steps.
    GlobalMaxPooling1d(GlobalMaxPooling1dConfig),
    /// Each channel normalized with the batch's statistics (training) or the moving ones.
    BatchNormalization(BatchNormalizationConfig),
    /// Keras's GRU (reset_after).
    Gru(GruConfig),
}

fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

impl LayerConfig {
    /// Every `type` a model file may name: the built-in layers', then those registered
    /// ([`register_layer`]) in this process.
    pub fn types() -> Vec<String> {
        let mut all = LayerConfig::builtin_types();
        all.extend(custom::registered_types());
        all
    }

    /// Parses one layer of a model file, with an error that names the layer (`position`, counted
    /// from 1), what is wrong and the fix: a missing or unknown `type`, a missing or unknown field.
    pub fn from_json_value(position: usize, value: serde_json::Value) -> Result<LayerConfig> {
        let what = format!("layer {position}");
        let Some(ty) = value
            .get("type")
            .and_then(|t| t.as_str())
            .map(str::to_string)
        else {
            return Err(bad(
                &what,
                format!(
                    "has no \"type\"; give one of {} (`kiln model mnist` prints a complete file)",
                    LayerConfig::types().join(", ")
                ),
            ));
        };
        let field_error = |e: serde_json::Error| {
            bad(
                &format!("{what} ({ty})"),
                format!("{e}; `kiln model <job>` prints complete files to start from"),
            )
        };
        if LayerConfig::builtin_types().contains(&ty) {
            return serde_json::from_value::<BuiltinOwned>(value)
                .map(LayerConfig::from)
                .map_err(field_error);
        }
        match custom::parse_registered(&ty, value) {
            Some(parsed) => parsed.map(LayerConfig::Custom).map_err(field_error),
            None => Err(bad(
                &what,
                format!(
                    "unknown layer type `{ty}`; kiln knows {} (a layer of your own is read once registered: kiln_graph::layers::register_layer)",
                    LayerConfig::types().join(", ")
                ),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LayerConfig {
    /// Through [`LayerConfig::from_json_value`] (JSON only), so that a registered layer of one's
    /// own is read as the built-in ones are.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        LayerConfig::from_json_value(1, value).map_err(serde::de::Error::custom)
    }
}

/// The most layers one list of a model file may hold: far past any model people build (a
/// 152-layer ResNet or a 96-block transformer is a few thousand), and a refusal at once for a
/// generated file that runs away.
pub const MAX_LAYERS: usize = 10_000;

/// serde's `deserialize_with` for a `Vec<LayerConfig>` field of one's own model config: each
/// layer parsed by [`LayerConfig::from_json_value`], so errors name the layer; more than
/// [`MAX_LAYERS`] are refused as soon as the list passes it.
pub fn deserialize_layers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<LayerConfig>, D::Error> {
    struct Layers;
    impl<'de> serde::de::Visitor<'de> for Layers {
        type Value = Vec<LayerConfig>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of layers")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<LayerConfig>, A::Error> {
            use serde::de::Error as _;
            let mut layers = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_LAYERS));
            while let Some(value) = seq.next_element::<serde_json::Value>()? {
                if layers.len() == MAX_LAYERS {
                    return Err(A::Error::custom(format!(
                        "more than {MAX_LAYERS} layers; kiln builds at most {MAX_LAYERS} in one list (was the file generated by mistake?)"
                    )));
                }
                let layer = LayerConfig::from_json_value(layers.len() + 1, value)
                    .map_err(A::Error::custom)?;
                layers.push(layer);
            }
            Ok(layers)
        }
    }
    d.deserialize_seq(Layers)
}

pub(crate) fn deserialize_boxed_layer<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Box<LayerConfig>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    LayerConfig::from_json_value(1, v)
        .map(Box::new)
        .map_err(serde::de::Error::custom)
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn one() -> usize {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> std::result::Result<SequentialConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn model_files_with_bad_layers_are_refused_naming_the_layer_and_the_fix() {
        let e = parse(
            r#"{"input":[2],"layers":[{"type":"dense","units":4},{"type":"dnse","units":1}]}"#,
        )
        .unwrap_err();
        assert!(
            e.contains("layer 2")
                && e.contains("unknown layer type `dnse`")
                && e.contains("dense, embedding"),
            "{e}"
        );
        let e = parse(r#"{"input":[2],"layers":[{"type":"dense"}]}"#).unwrap_err();
        assert!(
            e.contains("layer 1 (dense)") && e.contains("missing field `units`"),
            "{e}"
        );
        let e = parse(r#"{"input":[2],"layers":[{"type":"dense","units":1,"activaton":"relu"}]}"#)
            .unwrap_err();
        assert!(e.contains("unknown field `activaton`"), "{e}");
        let e = parse(r#"{"input":[2],"layers":[{"units":1}]}"#).unwrap_err();
        assert!(
            e.contains("layer 1") && e.contains("has no \"type\""),
            "{e}"
        );
        let e = parse(r#"{"input":[5],"layers":[{"type":"embedding","vocab":9,"dim":4},{"type":"bidirectional","layer":{"type":"lstm"}}]}"#)
            .unwrap_err();
        assert!(
            e.contains("(lstm)") && e.contains("missing field `units`"),
            "{e}"
        );
        let ok = parse(r#"{"input":[2],"layers":[{"type":"dense","units":3,"activation":"relu"},{"type":"dense","units":1}]}"#)
            .unwrap();
        assert_eq!(ok.layers.len(), 2);
        assert_eq!(LayerConfig::types()[..3], ["dense", "embedding", "lstm"]);
        assert!(LayerConfig::types().contains(&"global_avg_pool".to_string()));
    }

    #[test]
    fn shapes_that_do_not_chain_are_refused_before_anything_is_allocated() {
        // A 1e11-row embedding followed by a conv2d on a sequence: refused at init (no device, no
        // values drawn), naming the layer.
        let cfg = parse(r#"{"input":[8],"layers":[{"type":"embedding","vocab":100000000000,"dim":4},{"type":"conv2d","filters":2,"kernel":3}]}"#)
            .unwrap();
        let e = cfg
            .init(&ParamBuilder::new(0))
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("layer 1") || e.contains("layer 2"), "{e}");
    }
}
