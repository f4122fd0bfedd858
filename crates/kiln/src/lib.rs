//! kiln: deep-learning training on any GPU (Vulkan, Metal, DX12, WebGPU), every kernel a WGSL
//! compute shader run through wgpu, with a CPU device that needs no GPU at all. This crate is the
//! one to depend on; it re-exports kiln's libraries:
//!
//! - [`device`] (kiln-device): adapters, tensors, the WGSL kernels and their CPU reference;
//! - [`graph`] (kiln-graph): autodiff ([`Tape`]), layers, losses, optimizers;
//! - [`train`] (kiln-train): the training loop ([`fit`], [`Fit`]), datasets, checkpoints,
//!   callbacks;
//! - [`data`] (kiln-data): CSV and text tables, image folders, MNIST and Quora Question Pairs
//!   into datasets (`Dataset::from_csv`, `Dataset::from_image_folder`, ...), no row lost
//!   silently.
//!
//! [`prelude`] brings what a training program uses. The `kiln` command line (`kiln train`, model
//! files, the built-in jobs) is its own package and none of its dependencies come with this one.
//!
//! ```toml
//! [dependencies]
//! kiln = "0.1"
//!
//! # Debug builds of kiln run tens of times slower; keep its code optimized in them.
//! [profile.dev.package."*"]
//! opt-level = 2
//! ```
//!
//! XOR, on the CPU device (`Device::new(&DeviceChoice::Auto)?` takes the GPU when there is one):
//!
//! ```
//! use kiln::prelude::*;
//!
//! let device = Device::cpu();
//! let xor = Dataset::single(
//!     Column::f32(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[2]),
//!     Column::f32(vec![0., 1., 1., 0.], &[1]),
//! );
//! let pb = ParamBuilder::new(1);
//! let model = SequentialConfig::new(&[2])
//!     .add(DenseConfig::new(8).activation(Activation::Tanh))
//!     .add(DenseConfig::new(1).activation(Activation::Sigmoid))
//!     .init(&pb)?;
//! let params = pb.build(&device)?;
//! let config = TrainConfig::new(LossKind::BinaryCrossentropy)
//!     .epochs(300)
//!     .batch(4)
//!     .optimizer(OptimizerConfig::adam().with_lr(0.05));
//! let trained = fit(&model, &params, &xor, None, &config, &RunOptions::default())?;
//! assert_eq!(trained.history.epochs.last().unwrap().metric, Some(1.0));
//! # Ok::<(), kiln::train::Error>(())
//! ```
#![warn(missing_docs)]

pub use kiln_data as data;
pub use kiln_device as device;
pub use kiln_graph as graph;
pub use kiln_train as train;

pub use kiln_device::{Device, DeviceChoice, Tensor};
pub use kiln_graph::{Tape, Var};
pub use kiln_train::{fit, Fit};

/// What a training program uses, in one import: `use kiln::prelude::*;`.
pub mod prelude {
    pub use kiln_data::{CsvOptions, LoadFiles, Loaded, Targets, Task, TextCsvOptions};
    pub use kiln_device::{Device, DeviceChoice, Tensor};
    pub use kiln_graph::layers::{
        register_layer, ActivationConfig, AvgPool2dConfig, BidirectionalConfig, Conv2dConfig,
        DenseConfig, DropoutConfig, EmbeddingConfig, FlattenConfig, GlobalAvgPoolConfig,
        LayerNormalizationConfig, LstmConfig, MaxPool2dConfig, RegisteredLayer, ReshapeConfig,
        SimpleRnnConfig, StochasticPool2dConfig,
    };
    pub use kiln_graph::{
        Activation, CustomOp, Layer, LayerConfig, LayerSpec, LossFn, LossKind, MetricKind, Model,
        Objective, OptimizerConfig, ParamBuilder, ParamStore, Sequential, SequentialConfig,
        Signature, Tape, Var,
    };
    pub use kiln_train::{
        evaluate, fit, load_model, predict, save_model, Callback, Checkpoints, Column, Dataset,
        EarlyStopping, Fit, FitState, Monitor, Progress, RunOptions, TrainConfig, Trained,
    };
}
