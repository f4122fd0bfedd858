//! Embedding: token ids (u32) to vectors. table (vocab, dim) uniform in [-0.05, 0.05], as Keras.
//! With `mask_zero`, id 0 is padding: the layer passes a mask on, and the recurrent layers that
//! follow carry their state through padded steps.

use kiln_device::Tensor;
use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `Embedding(vocab, dim, mask_zero)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Number of ids (ids must be below it).
    pub vocab: usize,
    /// Vector width.
    pub dim: usize,
    /// Keras's `mask_zero`: id 0 is padding.
    #[serde(default)]
    pub mask_zero: bool,
}

impl EmbeddingConfig {
    /// `vocab` ids to vectors of width `dim`, no mask.
    pub fn new(vocab: usize, dim: usize) -> Self {
        EmbeddingConfig {
            vocab,
            dim,
            mask_zero: false,
        }
    }

    /// Treat id 0 as padding.
    pub fn mask_zero(mut self, mask_zero: bool) -> Self {
        self.mask_zero = mask_zero;
        self
    }

    /// Registers `embeddings` (vocab, dim) under `pb`, for per-sample ids of shape `input`.
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<Embedding> {
        if self.vocab == 0 || self.dim == 0 {
            return Err(bad(
                "Embedding",
                format!(
                    "vocab ({}) and dim ({}) must be positive",
                    self.vocab, self.dim
                ),
            ));
        }
        let table = pb.add(
            "embeddings",
            &[self.vocab, self.dim],
            Init::Uniform(-0.05, 0.05),
        )?;
        let mut out = input.to_vec();
        out.push(self.dim);
        Ok(Embedding {
            table,
            mask_zero: self.mask_zero,
            out,
        })
    }
}

/// A built [`EmbeddingConfig`].
#[derive(Clone, Debug)]
pub struct Embedding {
    table: ParamId,
    mask_zero: bool,
    out: Vec<usize>,
}

impl Embedding {
    /// The table (vocab, dim).
    pub fn table(&self) -> ParamId {
        self.table
    }
}

impl Layer for Embedding {
    fn kind(&self) -> &'static str {
        "Embedding"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.table]
    }

    /// `x` holds u32 ids (a `tape.constant` of an ids tensor).
    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        tape.embedding(&tape.param(params, self.table), x.value())
    }

    fn forward_masked(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        mask: Option<Tensor>,
    ) -> Result<(Var, Option<Tensor>)> {
        let y = self.forward(tape, params, x)?;
        Ok((
            y,
            if self.mask_zero {
                Some(x.value().clone())
            } else {
                mask
            },
        ))
    }
}

impl LayerSpec for EmbeddingConfig {
    fn name_stem(&self) -> &'static str {
        "embedding"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        if !input.ids {
            return Err(bad(
                "Embedding",
                "reads token ids, so it must be the first layer of the model",
            ));
        }
        let layer = self.init(pb, &input.shape)?;
        let out = Signature {
            shape: layer.out.clone(),
            ids: false,
            masked: self.mask_zero,
        };
        Ok((Box::new(layer), out))
    }
}

impl LayerExample for EmbeddingConfig {
    fn example() -> (Self, Signature) {
        let ids = Signature {
            shape: vec![5],
            ids: true,
            masked: false,
        };
        (EmbeddingConfig::new(9, 3).mask_zero(true), ids)
    }
}
