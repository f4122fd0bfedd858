//! kiln-device: the layer that owns wgpu.
//!
//! - [`Device`]: adapter choice (the best hardware GPU, else the CPU device; or what
//!   `KILN_DEVICE` / `--device` names), tensors, uploads and readbacks, [`Counters`].
//! - A caching allocator (`gpu::pool`), a pipeline cache keyed by (family, entry, overrides)
//!   (`gpu::pipeline`), command batching with one params arena per submit (`gpu`).
//! - WGSL kernels, one file per family under `shaders/` ([`ShaderFamily`]); their launchers are the
//!   ops on [`Device`] (`ops/`), and their plain-Rust specs are in [`reference`](mod@reference).
//!
//! ```
//! use kiln_device::{Device, MatmulSpec};
//!
//! let d = Device::cpu(); // or Device::new(&"gpu".parse()?)? for the best adapter
//! let a = d.from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let c = d.matmul(&a, &a, None, MatmulSpec::default())?;
//! assert_eq!(d.to_f32(&c)?, vec![7.0, 10.0, 15.0, 22.0]);
//! # Ok::<(), kiln_device::Error>(())
//! ```
//!
//! Dimension letters: B batch, M/N/K matmul rows/columns/reduction, N ids, E embedding width,
//! V vocabulary, C classes.

#![warn(missing_docs)]

pub mod adapter;
pub mod counters;
pub mod cpu;
mod device;
mod error;
pub(crate) mod gpu;
mod ops;
pub mod params;
pub mod profile;
pub mod reference;
pub mod shaders;
mod tensor;
pub mod testing;

pub use adapter::{list_adapters, AdapterSummary, DeviceChoice, LimitsChoice};
pub use counters::Counters;
pub use device::{Device, DeviceInfo, UNOPTIMIZED_WARNING};
pub use error::{Error, Result};
pub use gpu::dispatch_dims;
pub use gpu::pipeline::PipelineKey;
pub use gpu::tune::TuneMode;
pub use ops::attention::{AttentionGradients, AttentionInputs, AttentionOut, AttentionSpec};
pub use ops::conv::{Conv2dGrads, Conv2dWanted};
pub use ops::gru::{GruGrads, GruInputs, GruOutputGrads, GruState};
pub use ops::loss::{Loss, Metric};
pub use ops::lstm::{LstmGrads, LstmInputs, LstmOutputGrads, LstmPath, LstmState};
pub use ops::matmul::matmul_params;
pub use ops::pool::{PoolSpec, Pooled};
pub use params::{
    broadcast_shape, Activation, AdamConfig, AttentionParams, BinaryOp, Conv2dSpec, ConvVariant,
    GruParams, LstmParams, MatmulSpec, MatmulTile, MatmulVariant, PoolMode, ReduceOp,
    RmspropConfig, SgdConfig, UnaryOp,
};
pub use profile::{KernelSpan, KernelTotal, Profile, ProfileClock};
pub use shaders::ShaderFamily;
pub use tensor::{DType, Tensor};
/// wgpu, whose types appear in this crate's API (limits, backends).
pub use wgpu;
