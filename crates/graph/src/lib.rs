//! kiln-graph: reverse-mode autodiff over kiln-device, layers with Keras's semantics and
//! initializers, losses, fused optimizers, and a training loop.
//!
//! - [`Tape`] / [`Var`]: record ops, `backward()` walks them in reverse (`tape.rs`, `ops.rs`).
//! - Recurrent ops: the fused and unfused LSTM, the simple RNN (`recurrent.rs`).
//! - [`ParamBuilder`] / [`ParamStore`]: named parameters packed into one device buffer (`params.rs`).
//! - [`SequentialConfig`] -> [`Sequential`]: layers (`layers.rs`); [`Optimizer`]: fused Adam/SGD.
//! - [`fit`]: the training loop (`train.rs`), [`History`] (`history.rs`), checkpoints (`checkpoint.rs`).

pub mod checkpoint;
mod error;
pub mod history;
pub mod layers;
mod ops;
pub mod optim;
pub mod params;
pub mod recurrent;
pub mod siamese;
mod tape;
pub mod train;

pub use error::{Error, Result};
pub use history::{EpochStats, History};
pub use kiln_device;
pub use layers::{Activation, LayerConfig, Module, Sequential, SequentialConfig, SummaryRow};
pub use optim::{Optimizer, OptimizerConfig};
pub use params::{Init, ParamBuilder, ParamId, ParamStore};
pub use recurrent::{LstmOutputs, LstmPath};
pub use siamese::{ModelConfig, Siamese, SiameseConfig};
pub use tape::{Tape, Var};
pub use train::{evaluate, fit, Dataset, Inputs, LossKind, RunOptions, TrainConfig};
