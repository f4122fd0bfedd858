//! kiln: deep-learning training on any GPU, every kernel a WGSL compute shader run through wgpu.
//!
//! This facade re-exports the layers ([`device`], [`graph`], [`train`]) and holds what the `kiln` binary and
//! `cargo bench` share: the benchmark harness ([`bench`](mod@bench)) and the command line ([`cli`]).

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
