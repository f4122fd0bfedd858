//! kiln-device's error type: every failure a user can cause is a variant with the facts needed to
//! fix it. Panics are reserved for broken internal invariants.

use crate::tensor::DType;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter matches `{requested}` (adapters seen: {seen}). {hint}")]
    NoAdapter {
        requested: String,
        seen: String,
        hint: &'static str,
    },

    #[error("could not open the GPU device on `{adapter}`: {message}")]
    DeviceRequest { adapter: String, message: String },

    #[error("invalid device choice `{value}`: expected auto, cpu, gpu, vulkan, metal, dx12, gl, or name:<adapter substring>")]
    BadDeviceChoice { value: String },

    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch {
        op: &'static str,
        expected: String,
        got: String,
    },

    #[error("{op}: {arg} must be {expected}, got {got:?}")]
    DType {
        op: &'static str,
        arg: &'static str,
        expected: DType,
        got: DType,
    },

    #[error("{op}: {what}")]
    InvalidArgument { op: &'static str, what: String },

    #[error("{op}: index {value} out of range for size {limit} (at position {position}); ids must be below the vocabulary size")]
    IndexOutOfRange {
        op: &'static str,
        value: u32,
        limit: usize,
        position: usize,
    },

    #[error("{op}: tensor of shape {shape:?} needs {bytes} bytes, over the adapter's limit of {limit} bytes for one binding; use a smaller batch or split the tensor")]
    TooLarge {
        op: &'static str,
        shape: Vec<usize>,
        bytes: u64,
        limit: u64,
    },

    #[error("{op}: a tensor lives on another device; move it with Device::to_device first")]
    DeviceMismatch { op: &'static str },

    #[error("shader {file} entry `{entry}` failed to compile or validate: {message}")]
    ShaderCompile {
        file: &'static str,
        entry: &'static str,
        message: String,
    },

    #[error("GPU error: {message}")]
    Gpu { message: String },

    #[error("reading back from the GPU failed: {message}")]
    Readback { message: String },
}

impl Error {
    pub(crate) fn shape(
        op: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            expected: expected.into(),
            got: got.into(),
        }
    }

    pub(crate) fn invalid(op: &'static str, what: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            what: what.into(),
        }
    }
}
