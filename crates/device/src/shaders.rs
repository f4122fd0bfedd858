//! The WGSL sources, one file per kernel family under `shaders/`, embedded at build time, each
//! preceded by `shaders/common.wgsl` (shared helpers; WGSL has no includes).

/// A kernel family: one WGSL file, several entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderFamily {
    /// shaders/matmul.wgsl: naive and tiled matmul with an activation epilogue.
    Matmul,
    /// shaders/elementwise.wgsl: binary ops with broadcast, unary ops and their derivatives, fill.
    Elementwise,
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
    /// shaders/layout.wgsl: block copies along an axis (narrow, concat).
    Layout,
}

/// The prelude prepended to every family.
pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");

impl ShaderFamily {
    /// Every family, in order.
    pub const ALL: [ShaderFamily; 11] = [
        ShaderFamily::Matmul,
        ShaderFamily::Elementwise,
        ShaderFamily::Reduce,
        ShaderFamily::Embedding,
        ShaderFamily::Dropout,
        ShaderFamily::Optim,
        ShaderFamily::Loss,
        ShaderFamily::Conv,
        ShaderFamily::Pool,
        ShaderFamily::Lstm,
        ShaderFamily::Layout,
    ];

    /// The file name under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            ShaderFamily::Matmul => "matmul.wgsl",
            ShaderFamily::Elementwise => "elementwise.wgsl",
            ShaderFamily::Reduce => "reduce.wgsl",
            ShaderFamily::Embedding => "embedding.wgsl",
            ShaderFamily::Dropout => "dropout.wgsl",
            ShaderFamily::Optim => "optim.wgsl",
            ShaderFamily::Loss => "loss.wgsl",
            ShaderFamily::Conv => "conv.wgsl",
            ShaderFamily::Pool => "pool.wgsl",
            ShaderFamily::Lstm => "lstm.wgsl",
            ShaderFamily::Layout => "layout.wgsl",
        }
    }

    /// The WGSL compiled for this family: `shaders/common.wgsl` followed by the family's file.
    pub fn source(self) -> &'static str {
        macro_rules! family {
            ($file:literal) => {
                concat!(
                    include_str!("../../../shaders/common.wgsl"),
                    include_str!(concat!("../../../shaders/", $file))
                )
            };
        }
        match self {
            ShaderFamily::Matmul => family!("matmul.wgsl"),
            ShaderFamily::Elementwise => family!("elementwise.wgsl"),
            ShaderFamily::Reduce => family!("reduce.wgsl"),
            ShaderFamily::Embedding => family!("embedding.wgsl"),
            ShaderFamily::Dropout => family!("dropout.wgsl"),
            ShaderFamily::Optim => family!("optim.wgsl"),
            ShaderFamily::Loss => family!("loss.wgsl"),
            ShaderFamily::Conv => family!("conv.wgsl"),
            ShaderFamily::Pool => family!("pool.wgsl"),
            ShaderFamily::Lstm => family!("lstm.wgsl"),
            ShaderFamily::Layout => family!("layout.wgsl"),
        }
    }
}
