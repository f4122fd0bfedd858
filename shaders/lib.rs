//! kiln's kernels: one WGSL file per kernel family, each compiled after `common.wgsl` (shared
//! helpers; WGSL has no includes). This crate holds only their text, so that every crate builds
//! from its own packaged sources; `kiln-device` compiles them into pipelines (one per entry point
//! and set of override constants) and runs them through wgpu.
//!
//! Every kernel fits WebGPU's default limits (at most 8 storage buffers per stage, 16 KiB of
//! workgroup memory, 256 invocations per workgroup) and is valid for both WGSL compilers in use,
//! naga (wgpu) and Tint (Chrome, Dawn).
//!
//! ```
//! // A family's source is `common.wgsl` followed by its own file.
//! assert!(kiln_shaders::MATMUL.starts_with(kiln_shaders::COMMON));
//! assert!(kiln_shaders::MATMUL.contains("fn matmul_tiled("));
//! assert_eq!(kiln_shaders::FAMILIES.len(), 14);
//! ```
#![warn(missing_docs)]

/// The prelude prepended to every family: dispatch indexing, a safe sigmoid, Threefry-2x32,
/// f32's lowest value.
pub const COMMON: &str = include_str!("common.wgsl");

macro_rules! families {
    ($($(#[$doc:meta])* $name:ident = $file:literal),* $(,)?) => {
        $(
            $(#[$doc])*
            pub const $name: &str = concat!(include_str!("common.wgsl"), include_str!($file));
        )*

        /// Every family as (file name, source), in the order of the constants above.
        pub const FAMILIES: [(&str, &str); [$($file),*].len()] = [$(($file, $name)),*];
    };
}

families! {
    /// Naive and tiled matmul (128x64, 64x64, 32x32 tiles) with a bias and activation epilogue.
    MATMUL = "matmul.wgsl",
    /// Binary ops with broadcast, unary ops and their derivatives, fill, axpy.
    ELEMENTWISE = "elementwise.wgsl",
    /// Binary ops under NumPy broadcasting; broadcasting copies.
    BROADCAST = "broadcast.wgsl",
    /// Sum, mean and max along an axis; argmax; softmax and its backward.
    REDUCE = "reduce.wgsl",
    /// Embedding lookups, their deterministic backward, one-hot rows.
    EMBEDDING = "embedding.wgsl",
    /// Dropout masks from a counter-based generator (Threefry-2x32).
    DROPOUT = "dropout.wgsl",
    /// Adam and SGD over packed parameter buffers.
    OPTIM = "optim.wgsl",
    /// Cross-entropy losses, their gradients, accuracy counts.
    LOSS = "loss.wgsl",
    /// im2col, col2im, channel bias, direct convolution.
    CONV = "conv.wgsl",
    /// Max, average and stochastic pooling, forward and backward.
    POOL = "pool.wgsl",
    /// The fused, persistent LSTM recurrence, forward and backward through time.
    LSTM = "lstm.wgsl",
    /// The fused, persistent GRU recurrence (Keras's reset_after), forward and backward.
    GRU = "gru.wgsl",
    /// Block copies along an axis (narrow, concat and their gradients).
    LAYOUT = "layout.wgsl",
    /// Fused scaled dot-product attention: forward with an online softmax, backward in two
    /// passes from the log-sum-exp; block kernels for GPUs, and generated row kernels for CPU
    /// adapters (the same bits).
    ATTENTION = "attention.wgsl",
}
