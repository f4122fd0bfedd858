//! The WGSL sources, one file per kernel family under `shaders/`, embedded at build time.

/// A kernel family: one WGSL file, several entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderFamily {
    Matmul,
    Elementwise,
    Reduce,
    Embedding,
    Dropout,
    Optim,
    Loss,
}

impl ShaderFamily {
    pub const ALL: [ShaderFamily; 7] = [
        ShaderFamily::Matmul,
        ShaderFamily::Elementwise,
        ShaderFamily::Reduce,
        ShaderFamily::Embedding,
        ShaderFamily::Dropout,
        ShaderFamily::Optim,
        ShaderFamily::Loss,
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
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            ShaderFamily::Matmul => include_str!("../../../shaders/matmul.wgsl"),
            ShaderFamily::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            ShaderFamily::Reduce => include_str!("../../../shaders/reduce.wgsl"),
            ShaderFamily::Embedding => include_str!("../../../shaders/embedding.wgsl"),
            ShaderFamily::Dropout => include_str!("../../../shaders/dropout.wgsl"),
            ShaderFamily::Optim => include_str!("../../../shaders/optim.wgsl"),
            ShaderFamily::Loss => include_str!("../../../shaders/loss.wgsl"),
        }
    }
}
