//! A siamese pair classifier, beyond the seed's model: one encoder (embedding and recurrent
//! layers) shared by both questions, and a head on [u, v, |u - v|, u * v] of the two encodings.
//! A sample is the two questions' ids one after the other (2 x seq_len), so the batch (B, 2L)
//! reshapes for free to (2B, L): both questions go through the encoder as one batch.
//!
//! [`ModelConfig`] is what a saved model's `model_config` holds: a Sequential stack or this.

use kiln_device::{Tensor, UnaryOp};
use serde::{Deserialize, Serialize};

use crate::layers::{LayerConfig, Module, Sequential, SequentialConfig};
use crate::params::{ParamBuilder, ParamStore};
use crate::recurrent::LstmPath;
use crate::tape::{Tape, Var};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiameseConfig {
    /// Ids per question.
    pub seq_len: usize,
    /// Applied to each question: an embedding, then layers down to one vector per question.
    pub encoder: Vec<LayerConfig>,
    /// Applied to [u, v, |u - v|, u * v].
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
    pub fn init(&self, b: &mut ParamBuilder) -> Result<Siamese> {
        let encoder = SequentialConfig {
            input: vec![self.seq_len],
            layers: self.encoder.clone(),
        }
        .init_named(b, "encoder.")?;
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
        .init_named(b, "head.")?;
        Ok(Siamese {
            config: self.clone(),
            encoder,
            head,
        })
    }
}

impl Module for Siamese {
    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Tensor) -> Result<Var> {
        let l = self.config.seq_len;
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
        let enc = self
            .encoder
            .forward(tape, params, &x.reshape(&[2 * b, l])?)?;
        let w = enc.shape()[1];
        let pairs = tape.reshape(&enc, &[b, 2 * w])?;
        let u = tape.narrow(&pairs, 1, 0, w)?;
        let v = tape.narrow(&pairs, 1, w, w)?;
        let diff = tape.unary(UnaryOp::Abs, &tape.sub(&u, &v)?)?;
        let prod = tape.mul(&u, &v)?;
        let features = tape.concat(&[&u, &v, &diff, &prod], 1)?;
        self.head.forward_var(tape, params, &features)
    }

    fn config_json(&self) -> String {
        serde_json::to_string(&ModelConfig::Siamese {
            siamese: self.config.clone(),
        })
        .expect("configs serialize")
    }

    fn summary_table(&self, params: &ParamStore) -> String {
        format!(
            "encoder (shared by both questions):\n{}\nhead on [u, v, |u - v|, u * v]:\n{}",
            self.encoder.summary_table(params),
            self.head.summary_table(params)
        )
    }

    fn set_lstm_path(&mut self, path: LstmPath) {
        self.encoder.set_lstm_path(path);
    }
}

/// Any model kiln builds from a saved config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModelConfig {
    Sequential(SequentialConfig),
    Siamese { siamese: SiameseConfig },
}

impl ModelConfig {
    pub fn init(&self, b: &mut ParamBuilder) -> Result<Box<dyn Module>> {
        Ok(match self {
            ModelConfig::Sequential(c) => Box::new(c.init(b)?),
            ModelConfig::Siamese { siamese } => Box::new(siamese.init(b)?),
        })
    }
}
