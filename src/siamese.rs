//! A siamese pair classifier, beyond the seed's model, written as any user writes a model of
//! their own: a struct of layers and one [`Model`] impl, on kiln-graph's public API only.
//!
//! One encoder (embedding and recurrent layers) is shared by both questions; a head runs on
//! [u, v, |u - v|, u * v] of the two encodings. A sample is the two questions' ids one after the
//! other (2 x seq_len), so the batch (B, 2L) reshapes for free to (2B, L): both questions go
//! through the encoder as one batch.

use kiln_graph::kiln_device::UnaryOp;
use kiln_graph::{
    Error, LayerConfig, Model, ParamBuilder, ParamStore, Result, Sequential, SequentialConfig,
    Tape, Var,
};
use serde::{Deserialize, Serialize};

/// What a [`Siamese`] is built from (and what its saved files hold).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiameseConfig {
    /// Ids per question.
    pub seq_len: usize,
    /// Applied to each question: an embedding, then layers down to one vector per question.
    #[serde(deserialize_with = "kiln_graph::layers::deserialize_layers")]
    pub encoder: Vec<LayerConfig>,
    /// Applied to [u, v, |u - v|, u * v].
    #[serde(deserialize_with = "kiln_graph::layers::deserialize_layers")]
    pub head: Vec<LayerConfig>,
}

/// A built siamese model.
pub struct Siamese {
    config: SiameseConfig,
    encoder: Sequential,
    head: Sequential,
}

impl SiameseConfig {
    /// Parameters are named `encoder.*` and `head.*`.
    pub fn init(&self, pb: &ParamBuilder) -> Result<Siamese> {
        let encoder = SequentialConfig {
            input: vec![self.seq_len],
            layers: self.encoder.clone(),
        }
        .init(&pb.pp("encoder"))?;
        let &[width] = encoder.output_shape() else {
            return Err(Error::model(
                "siamese encoder",
                format!(
                    "must end in one vector per question, ends in shape {:?}",
                    encoder.output_shape()
                ),
            ));
        };
        let head = SequentialConfig {
            input: vec![4 * width],
            layers: self.head.clone(),
        }
        .init(&pb.pp("head"))?;
        Ok(Siamese {
            config: self.clone(),
            encoder,
            head,
        })
    }
}

impl Siamese {
    /// Output values per pair.
    pub fn output_width(&self) -> usize {
        self.head.output_shape().iter().product()
    }
}

impl Model for Siamese {
    fn forward(&self, tape: &Tape, params: &ParamStore, inputs: &[Var]) -> Result<Var> {
        let l = self.config.seq_len;
        let [x] = inputs else {
            return Err(Error::model("siamese", "takes one input: the pair's ids"));
        };
        let &[b, n] = x.shape() else {
            return Err(Error::model(
                "input",
                format!("ids of shape [B, {}], got {:?}", 2 * l, x.shape()),
            ));
        };
        if n != 2 * l {
            return Err(Error::model(
                "input",
                format!("{n} ids per sample, the model expects {}", 2 * l),
            ));
        }
        let questions = tape.constant(x.value().reshape(&[2 * b, l])?);
        let enc = self.encoder.forward(tape, params, &questions)?;
        let w = enc.shape()[1];
        let pairs = tape.reshape(&enc, &[b, 2 * w])?;
        let u = tape.narrow(&pairs, 1, 0, w)?;
        let v = tape.narrow(&pairs, 1, w, w)?;
        let diff = tape.unary(UnaryOp::Abs, &tape.sub(&u, &v)?)?;
        let prod = tape.mul(&u, &v)?;
        let features = tape.concat(&[&u, &v, &diff, &prod], 1)?;
        self.head.forward(tape, params, &features)
    }

    fn config_json(&self) -> Option<String> {
        Some(
            serde_json::to_string(&crate::models::ModelConfig::Siamese {
                siamese: self.config.clone(),
            })
            .expect("configs serialize"),
        )
    }

    fn summary_table(&self, params: &ParamStore) -> String {
        format!(
            "encoder (shared by both questions):\n{}\nhead on [u, v, |u - v|, u * v]:\n{}",
            self.encoder.summary_table(params),
            self.head.summary_table(params)
        )
    }
}
