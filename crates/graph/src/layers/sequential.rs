//! [`Sequential`]: a stack of layers applied in order, built from a [`SequentialConfig`] (the
//! per-sample input shape and the layers' configs: what a model file holds). Layers get Keras's
//! automatic names (`dense_1`, `dense_2`, `bidirectional_1`, ...) under the builder's prefix.

use std::collections::HashMap;

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use super::{Layer, LayerConfig, Signature};
use crate::model::Model;
use crate::params::{ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// The most dimensions a per-sample input shape may have.
pub const MAX_RANK: usize = 8;

/// What [`Sequential`] is built from: the per-sample input shape and the layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequentialConfig {
    /// Per-sample input shape, without the batch (e.g. `[31]` ids, or `[2]` features).
    pub input: Vec<usize>,
    /// The layers, first to last.
    #[serde(deserialize_with = "super::deserialize_layers")]
    pub layers: Vec<LayerConfig>,
}

impl SequentialConfig {
    /// No layers yet, for per-sample inputs of shape `input`.
    pub fn new(input: &[usize]) -> Self {
        SequentialConfig {
            input: input.to_vec(),
            layers: vec![],
        }
    }

    /// Appends a layer (Keras's `model.add`).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Into<LayerConfig>) -> Self {
        self.layers.push(layer.into());
        self
    }

    /// Checks that the shapes chain and registers every parameter under `pb` (Keras names:
    /// `dense_1.kernel`, `embedding_1.embeddings`, ...). A model whose first layer is an
    /// embedding reads u32 token ids; any other reads f32 values.
    pub fn init(&self, pb: &ParamBuilder) -> Result<Sequential> {
        let per_sample = self
            .input
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= u32::MAX as usize);
        match per_sample {
            _ if self.input.len() > MAX_RANK => {
                return Err(Error::model(
                    "input",
                    format!(
                        "has {} dimensions; kiln's layers take at most {MAX_RANK} (e.g. [4], [31] or [1, 28, 28])",
                        self.input.len()
                    ),
                ))
            }
            _ if self.input.is_empty() => {
                return Err(Error::model(
                    "input",
                    "is empty; give the per-sample shape, e.g. [4] or [1, 28, 28]",
                ))
            }
            Some(0) => {
                return Err(Error::model(
                    "input",
                    format!("{:?} has a zero dimension", self.input),
                ))
            }
            None => {
                return Err(Error::model(
                    "input",
                    format!("{:?} has too many values per sample", self.input),
                ))
            }
            Some(_) => {}
        }
        let mut counts = HashMap::<&str, usize>::new();
        let input = Signature {
            shape: self.input.clone(),
            ids: matches!(self.layers.first(), Some(LayerConfig::Embedding(_))),
            masked: false,
        };
        let mut sig = input.clone();
        let (mut names, mut layers) = (vec![], vec![]);
        for (i, cfg) in self.layers.iter().enumerate() {
            let spec = cfg.spec();
            let n = counts.entry(spec.name_stem()).or_default();
            *n += 1;
            let name = format!("{}_{n}", spec.name_stem());
            let (layer, out) = spec.build(&pb.pp(&name), &sig).map_err(|e| match e {
                Error::Model { what, message } => Error::model(
                    format!("layer {} ({}{name}, {what})", i + 1, pb.prefix()),
                    message,
                ),
                other => other,
            })?;
            names.push(name);
            layers.push(layer);
            sig = out;
        }
        if layers.is_empty() {
            return Err(Error::model("model", "has no layers; add at least one"));
        }
        Ok(Sequential {
            config: self.clone(),
            input,
            names,
            layers,
        })
    }
}

/// A stack of layers applied in order. Run it with [`Sequential::forward`] on one batch
/// (`model.forward(&tape, &params, &x)`); its [`Layer`] impl (a stack nested in a larger model)
/// and its [`Model`] impl (what `fit` calls, with the inputs as a slice of one) are that same
/// method.
pub struct Sequential {
    config: SequentialConfig,
    input: Signature,
    names: Vec<String>,
    layers: Vec<Box<dyn Layer>>,
}

/// One row of [`Sequential::summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// The layer's name (`dense_1`).
    pub name: String,
    /// Keras's class name (`Dense`).
    pub kind: &'static str,
    /// Per-sample output shape.
    pub output: Vec<usize>,
    /// Number of scalars in its parameters.
    pub params: usize,
}

impl Sequential {
    /// The config it was built from.
    pub fn config(&self) -> &SequentialConfig {
        &self.config
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        self.layers
            .last()
            .expect("at least one layer")
            .output_shape()
    }

    /// Whether the model reads token ids (its first layer is an embedding).
    pub fn takes_ids(&self) -> bool {
        self.input.ids
    }

    /// The layers, in order, with their names.
    pub fn layers(&self) -> impl Iterator<Item = (&str, &dyn Layer)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.layers.iter().map(|l| &**l))
    }

    /// Runs the layers on a batch `x` of shape (B, input...): u32 ids for an embedding model, f32
    /// otherwise.
    pub fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        if x.shape().get(1..) != Some(&self.config.input[..]) {
            return Err(Error::model(
                "input",
                format!(
                    "shape {:?}, the model expects (B, {})",
                    x.shape(),
                    self.config
                        .input
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let mut h = x.clone();
        let mut mask: Option<Tensor> = None;
        for layer in &self.layers {
            (h, mask) = layer.forward_masked(tape, params, &h, mask)?;
        }
        Ok(h)
    }

    /// Layer, output shape and parameter count, as Keras's `summary()`.
    pub fn summary(&self, params: &ParamStore) -> Vec<SummaryRow> {
        self.layers()
            .map(|(name, layer)| SummaryRow {
                name: name.to_string(),
                kind: layer.kind(),
                output: layer.output_shape().to_vec(),
                params: count(params, &layer.params()),
            })
            .collect()
    }

    /// The summary as a table.
    pub fn summary_table(&self, params: &ParamStore) -> String {
        let rows = self.summary(params);
        let mut out = format!(
            "{:<28} {:<22} {:>10}\n",
            "Layer (type)", "Output Shape", "Param #"
        );
        out += &"=".repeat(62);
        out += "\n";
        for r in &rows {
            let shape = format!(
                "(None, {})",
                r.output
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out += &format!(
                "{:<28} {:<22} {:>10}\n",
                format!("{} ({})", r.name, r.kind),
                shape,
                r.params
            );
        }
        out += &"=".repeat(62);
        out + "\n" + &params.count_lines()
    }
}

fn count(params: &ParamStore, ids: &[ParamId]) -> usize {
    ids.iter()
        .map(|&id| params.shape(id).iter().product::<usize>())
        .sum()
}

/// A stack nests inside a larger model as one layer.
impl Layer for Sequential {
    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn output_shape(&self) -> &[usize] {
        Sequential::output_shape(self)
    }

    fn params(&self) -> Vec<ParamId> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        Sequential::forward(self, tape, params, x)
    }
}

impl Model for Sequential {
    fn forward(&self, tape: &Tape, params: &ParamStore, inputs: &[Var]) -> Result<Var> {
        let [x] = inputs else {
            return Err(Error::model(
                "Sequential",
                format!("takes one input, got {}", inputs.len()),
            ));
        };
        Sequential::forward(self, tape, params, x)
    }

    fn config_json(&self) -> Option<String> {
        Some(serde_json::to_string(&self.config).expect("configs serialize"))
    }

    fn summary_table(&self, params: &ParamStore) -> String {
        Sequential::summary_table(self, params)
    }
}
