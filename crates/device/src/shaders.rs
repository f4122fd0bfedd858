//! The kernel families and their WGSL: the text is the `kiln-shaders` crate's (the workspace's
//! `shaders/`, one file per family, each preceded by `common.wgsl`).

/// A kernel family: one WGSL file, several entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderFamily {
    /// shaders/matmul.wgsl: naive and tiled matmul with an activation epilogue.
    Matmul,
    /// shaders/elementwise.wgsl: binary ops with broadcast, unary ops and their derivatives, fill.
    Elementwise,
    /// shaders/broadcast.wgsl: binary ops under NumPy broadcasting, broadcasting copies.
    Broadcast,
    /// shaders/reduce.wgsl: sum, mean, max and argmax along an axis; softmax.
    Reduce,
    /// shaders/embedding.wgsl: lookups, their backward, one-hot rows.
    Embedding,
    /// shaders/dropout.wgsl: counter-based (Threefry) masks.
    Dropout,
    /// shaders/optim.wgsl: Adam and SGD over packed parameters.
    Optim,
    /// shaders/loss.wgsl: losses, their gradients and metrics.
    Loss,
    /// shaders/conv.wgsl: im2col, col2im and the direct convolution.
    Conv,
    /// shaders/pool.wgsl: max, average and stochastic pooling.
    Pool,
    /// shaders/lstm.wgsl: the fused LSTM recurrence, forward and backward.
    Lstm,
    /// shaders/gru.wgsl: the fused GRU recurrence, forward and backward.
    Gru,
    /// shaders/layout.wgsl: block copies along an axis (narrow, concat).
    Layout,
    /// shaders/attention.wgsl: fused attention, forward and backward.
    Attention,
}

/// The prelude prepended to every family.
pub use kiln_shaders::COMMON;

impl ShaderFamily {
    /// Every family, in order.
    pub const ALL: [ShaderFamily; 14] = [
        ShaderFamily::Matmul,
        ShaderFamily::Elementwise,
        ShaderFamily::Broadcast,
        ShaderFamily::Reduce,
        ShaderFamily::Embedding,
        ShaderFamily::Dropout,
        ShaderFamily::Optim,
        ShaderFamily::Loss,
        ShaderFamily::Conv,
        ShaderFamily::Pool,
        ShaderFamily::Lstm,
        ShaderFamily::Gru,
        ShaderFamily::Layout,
        ShaderFamily::Attention,
    ];

    /// The file name under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            ShaderFamily::Matmul => "matmul.wgsl",
            ShaderFamily::Elementwise => "elementwise.wgsl",
            ShaderFamily::Broadcast => "broadcast.wgsl",
            ShaderFamily::Reduce => "reduce.wgsl",
            ShaderFamily::Embedding => "embedding.wgsl",
            ShaderFamily::Dropout => "dropout.wgsl",
            ShaderFamily::Optim => "optim.wgsl",
            ShaderFamily::Loss => "loss.wgsl",
            ShaderFamily::Conv => "conv.wgsl",
            ShaderFamily::Pool => "pool.wgsl",
            ShaderFamily::Lstm => "lstm.wgsl",
            ShaderFamily::Gru => "gru.wgsl",
            ShaderFamily::Layout => "layout.wgsl",
            ShaderFamily::Attention => "attention.wgsl",
        }
    }

    /// The WGSL compiled for this family: `shaders/common.wgsl` followed by the family's file.
    pub fn source(self) -> &'static str {
        match self {
            ShaderFamily::Matmul => kiln_shaders::MATMUL,
            ShaderFamily::Elementwise => kiln_shaders::ELEMENTWISE,
            ShaderFamily::Broadcast => kiln_shaders::BROADCAST,
            ShaderFamily::Reduce => kiln_shaders::REDUCE,
            ShaderFamily::Embedding => kiln_shaders::EMBEDDING,
            ShaderFamily::Dropout => kiln_shaders::DROPOUT,
            ShaderFamily::Optim => kiln_shaders::OPTIM,
            ShaderFamily::Loss => kiln_shaders::LOSS,
            ShaderFamily::Conv => kiln_shaders::CONV,
            ShaderFamily::Pool => kiln_shaders::POOL,
            ShaderFamily::Lstm => kiln_shaders::LSTM,
            ShaderFamily::Gru => kiln_shaders::GRU,
            ShaderFamily::Layout => kiln_shaders::LAYOUT,
            ShaderFamily::Attention => kiln_shaders::ATTENTION,
        }
    }
}
