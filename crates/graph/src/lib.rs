//! kiln-graph: reverse-mode autodiff over kiln-device, layers with Keras's semantics and
//! initializers, losses, fused optimizers, and a training loop.
//!
//! - [`Tape`] / [`Var`]: record ops, `backward()` walks them in reverse (`tape.rs`, `ops.rs`).
//! - [`ParamBuilder`] / [`ParamStore`]: named parameters packed into one device buffer (`params.rs`).
//! - [`SequentialConfig`] -> [`Sequential`]: layers (`layers.rs`); [`Optimizer`]: fused Adam/SGD.

mod error;
pub mod layers;
mod ops;
pub mod optim;
pub mod params;
mod tape;

pub use error::{Error, Result};
pub use kiln_device;
pub use layers::{Activation, LayerConfig, Sequential, SequentialConfig, SummaryRow};
pub use optim::{Optimizer, OptimizerConfig};
pub use params::{Init, ParamBuilder, ParamId, ParamStore};
pub use tape::{Tape, Var};
