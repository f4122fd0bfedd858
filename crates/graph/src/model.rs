//! [`Model`]: what the training loop trains. A user's model is a struct of layers plus this one
//! trait; [`Sequential`](crate::Sequential) implements it too.
//!
//! ```
//! use kiln_graph::layers::{Activation, Dense, DenseConfig};
//! use kiln_graph::{Model, ParamBuilder, ParamStore, Result, Tape, Var};
//!
//! /// Two inputs, one shared layer, their difference through a head.
//! struct Pair {
//!     shared: Dense,
//!     head: Dense,
//! }
//!
//! impl Model for Pair {
//!     fn forward(&self, tape: &Tape, params: &ParamStore, inputs: &[Var]) -> Result<Var> {
//!         use kiln_graph::Layer;
//!         let a = self.shared.forward(tape, params, &inputs[0])?;
//!         let b = self.shared.forward(tape, params, &inputs[1])?;
//!         self.head.forward(tape, params, &tape.sub(&a, &b)?)
//!     }
//! }
//!
//! let pb = ParamBuilder::new(0);
//! let model = Pair {
//!     shared: DenseConfig::new(8).activation(Activation::Tanh).init(&pb.pp("shared"), &[3]).unwrap(),
//!     head: DenseConfig::new(1).init(&pb.pp("head"), &[8]).unwrap(),
//! };
//! assert_eq!(pb.names(), ["shared.kernel", "shared.bias", "head.kernel", "head.bias"]);
//! # let _ = model;
//! ```

use crate::params::ParamStore;
use crate::tape::{Tape, Var};
use crate::Result;

/// A model: a forward pass over one or more inputs (each batch first). `fit`, `evaluate`,
/// `predict`, checkpoints and resume take any implementation.
pub trait Model {
    /// Runs the model on a batch. `inputs` are in the dataset's column order; ids columns arrive
    /// as u32 tensors (for an embedding), value columns as f32.
    fn forward(&self, tape: &Tape, params: &ParamStore, inputs: &[Var]) -> Result<Var>;

    /// A description that rebuilds the model (JSON), stored in checkpoints and saved models;
    /// resuming refuses a checkpoint whose description differs. None: only the parameters' names
    /// and shapes are checked.
    fn config_json(&self) -> Option<String> {
        None
    }

    /// A table of the model, as Keras's `summary()`; by default every parameter with its shape.
    fn summary_table(&self, params: &ParamStore) -> String {
        let mut out = format!("{:<40} {:<20} {:>10}\n", "Parameter", "Shape", "Count");
        for id in params.ids() {
            let shape = params.shape(id);
            out += &format!(
                "{:<40} {:<20} {:>10}\n",
                params.name(id),
                format!("{shape:?}"),
                shape.iter().product::<usize>()
            );
        }
        out + &params.count_lines()
    }
}

impl<M: Model + ?Sized> Model for Box<M> {
    fn forward(&self, tape: &Tape, params: &ParamStore, inputs: &[Var]) -> Result<Var> {
        (**self).forward(tape, params, inputs)
    }

    fn config_json(&self) -> Option<String> {
        (**self).config_json()
    }

    fn summary_table(&self, params: &ParamStore) -> String {
        (**self).summary_table(params)
    }
}
