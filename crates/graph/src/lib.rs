//! kiln-graph: reverse-mode autodiff over kiln-device, layers with Keras's semantics and
//! initializers, losses and fused optimizers. No files but safetensors weights, no terminal.
//!
//! - [`Tape`] / [`Var`]: record ops, `backward()` walks them in reverse (`tape.rs`, `ops.rs`);
//!   [`Tape::input`] and [`Tape::grad`] give gradients with respect to inputs.
//! - Scalar and axis helpers (`add_scalar`, `rsub`, `pow`, `rsqrt`, `clamp`, `sum_axes`,
//!   `mean_axes`, `max_axes` with `keepdims`, `broadcast_to`; `math.rs`); binary ops broadcast as
//!   NumPy does.
//! - [`CustomOp`] / [`Tape::custom`]: ops of one's own with their own backward (`custom.rs`).
//! - Attention: the fused kernel ([`Tape::attention`]) and its unfused composition
//!   (`attention.rs`).
//! - Recurrent ops: the fused and unfused LSTM, the simple RNN (`recurrent.rs`).
//! - [`ParamBuilder`] (with `pp` prefixes) / [`ParamStore`]: named parameters packed into one
//!   device buffer (`params.rs`); strict loading by name.
//! - [`layers`]: one file per layer, `XConfig -> init -> X: Layer`; [`Sequential`].
//! - [`Model`]: what training takes (`model.rs`); [`Objective`] / [`LossKind`] / [`LossFn`]:
//!   losses and metrics (`loss.rs`); [`Optimizer`]: fused Adam/SGD; [`train_step`] (`step.rs`).
//! - [`checkpoint`]: safetensors files, written atomically.
//!
//! ```
//! use kiln_graph::kiln_device::Device;
//! use kiln_graph::kiln_device::UnaryOp;
//! use kiln_graph::Tape;
//!
//! // d/dx of mean(tanh(x)) at x = 0 is 1 / n.
//! let d = Device::cpu();
//! let tape = Tape::recording(&d);
//! let x = tape.input(d.from_f32(&[0.0, 0.0, 0.0, 0.0], &[4])?);
//! let loss = tape.mean(&tape.unary(UnaryOp::Tanh, &x)?)?;
//! tape.backward(&loss)?;
//! assert_eq!(d.to_f32(&tape.grad(&x).unwrap())?, vec![0.25; 4]);
//! # Ok::<(), kiln_graph::Error>(())
//! ```
#![warn(missing_docs)]

mod attention;
pub mod checkpoint;
mod custom;
mod error;
pub mod layers;
mod loss;
mod math;
pub mod metrics;
mod model;
mod ops;
pub mod optim;
pub mod parallel;
pub mod params;
pub mod recurrent;
mod step;
mod tape;
pub mod testing;

pub use attention::AttentionOptions;
pub use custom::CustomOp;
pub use error::{Error, Result, WeightReport};
pub use kiln_device;
pub use kiln_device::LstmPath;
pub use layers::{
    register_layer, Activation, Layer, LayerConfig, LayerSpec, RegisteredLayer, Sequential,
    SequentialConfig, Signature, SummaryRow,
};
pub use loss::{LossFn, LossKind, MetricKind, Objective};
pub use metrics::TrackedMetric;
pub use model::Model;
pub use optim::{GradClip, Optimizer, OptimizerConfig};
pub use parallel::{shard_of, train_step_shared, Collective, Replica, Replicas};
pub use params::{Init, ParamBuilder, ParamId, ParamStore, Snapshot};
pub use recurrent::{GruOutputs, GruVars, LstmOutputs, LstmVars};
pub use step::{step_seed, train_step, Batch, StepOutput};
pub use tape::{Shard, Tape, Var};
