//! kiln-device's error type: every failure a user can cause is a variant with the facts needed to
//! fix it. Panics are reserved for broken internal invariants.

use crate::tensor::DType;

/// kiln-device's result.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong, with what a user needs to fix it; `Display` says it in a sentence.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matches the device choice.
    #[error("no GPU adapter matches `{requested}` (adapters seen: {seen}). {hint}")]
    NoAdapter {
        /// The choice (`gpu`, `vulkan`, `name:...`).
        requested: String,
        /// The adapters there are.
        seen: String,
        /// How to get one.
        hint: &'static str,
    },

    /// The adapter was found but would not open a device.
    #[error("could not open the GPU device on `{adapter}`: {message}")]
    DeviceRequest {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        message: String,
    },

    /// A device choice that is not one of the known forms.
    #[error("invalid device choice `{value}`: expected auto, cpu, gpu, vulkan, metal, dx12, gl, or name:<adapter substring>")]
    BadDeviceChoice {
        /// What was given.
        value: String,
    },

    /// Operand shapes that do not fit together.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch {
        /// The op.
        op: &'static str,
        /// The shape it needs.
        expected: String,
        /// The shape it was given.
        got: String,
    },

    /// An operand of the wrong element type.
    #[error("{op}: {arg} must be {expected}, got {got:?}")]
    DType {
        /// The op.
        op: &'static str,
        /// Which operand.
        arg: &'static str,
        /// The type it needs.
        expected: DType,
        /// The type it was given.
        got: DType,
    },

    /// An argument out of its range (a size of zero, a rate past 1, ...).
    #[error("{op}: {what}")]
    InvalidArgument {
        /// The op.
        op: &'static str,
        /// What is wrong, and the fix.
        what: String,
    },

    /// An id past the table it indexes.
    #[error("{op}: index {value} out of range for size {limit} (at position {position}); ids must be below the vocabulary size")]
    IndexOutOfRange {
        /// The op.
        op: &'static str,
        /// The id.
        value: u32,
        /// The table's size.
        limit: usize,
        /// Where in the ids it is.
        position: usize,
    },

    /// A tensor larger than the adapter can bind.
    #[error("{op}: tensor of shape {shape:?} needs {bytes} bytes, over the adapter's limit of {limit} bytes for one binding; use a smaller batch or split the tensor")]
    TooLarge {
        /// The op.
        op: &'static str,
        /// The tensor's shape.
        shape: Vec<usize>,
        /// Its size.
        bytes: u64,
        /// The adapter's limit for one binding.
        limit: u64,
    },

    /// Operands on different devices.
    #[error("{op}: a tensor lives on another device; move it with Device::to_device first")]
    DeviceMismatch {
        /// The op.
        op: &'static str,
    },

    /// A kernel the adapter's compiler rejected.
    #[error("shader {file} entry `{entry}` failed to compile or validate: {message}")]
    ShaderCompile {
        /// The shader file.
        file: &'static str,
        /// The entry point.
        entry: &'static str,
        /// The compiler's message.
        message: String,
    },

    /// An error wgpu reported (validation, out of memory, device lost).
    #[error("GPU error: {message}")]
    Gpu {
        /// wgpu's message.
        message: String,
    },

    /// A readback that did not complete.
    #[error("reading back from the GPU failed: {message}")]
    Readback {
        /// Why.
        message: String,
    },
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
