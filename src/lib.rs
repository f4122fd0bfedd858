//! kiln: deep-learning training on any GPU, every kernel a WGSL compute shader run through wgpu.
//!
//! This facade re-exports the layers ([`device`], [`graph`], [`train`]) and holds what the `kiln` binary and
//! `cargo bench` share: the benchmark harness ([`bench`](mod@bench)) and the command line ([`cli`]).
//!
//! It also holds the built-in jobs ([`models`]), model files over data files ([`files`]) and the
//! loaders of the embedded data ([`data`]). This package is not published (it embeds 13 MB of
//! data); the libraries it re-exports are.
//!
//! ```
//! use kiln::models::ModelConfig;
//!
//! // A model file, checked layer by layer without allocating anything.
//! let config = ModelConfig::from_json(
//!     r#"{"input": [4], "layers": [{"type": "dense", "units": 8, "activation": "relu"},
//!                                  {"type": "dense", "units": 3, "activation": "softmax"}]}"#,
//! )?;
//! let outline = config.outline()?;
//! assert_eq!((outline.input, outline.outputs), (vec![4], 3));
//! # Ok::<(), String>(())
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod data;
pub mod eval;
pub mod files;
pub mod fuzz;
pub mod models;
pub mod pictures;
pub mod profile;
pub mod qqp;
pub mod siamese;

pub use kiln_device as device;
pub use kiln_graph as graph;
pub use kiln_train as train;
