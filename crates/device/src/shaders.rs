//! The WGSL sources, one file per kernel family under `shaders/`, embedded at build time, each
//! preceded by `shaders/common.wgsl` (shared helpers; WGSL has no includes).

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
    Conv,
    Pool,
    Lstm,
    Layout,
}

/// The prelude prepended to every family.
pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");

impl ShaderFamily {
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
