//! Pooling over (B, C, H, W): max, average and stochastic (Zeiler & Fergus: samples by value
//! while training, the probability-weighted average otherwise) windows of `size` at `stride`
//! (default: the size), no padding, sizes rounded down; and global average pooling, (B, C, H, W)
//! to (B, C).

use kiln_device::params::PoolParams;
use kiln_device::PoolMode;
use serde::{Deserialize, Serialize};

use super::{bad, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{ParamBuilder, ParamStore};
use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// A built pooling layer (any of the three windowed modes).
#[derive(Clone, Debug)]
pub struct Pool2d {
    mode: PoolMode,
    size: usize,
    stride: usize,
    out: Vec<usize>,
}

fn pool_init(
    mode: PoolMode,
    size: usize,
    stride: Option<usize>,
    input: &[usize],
) -> Result<Pool2d> {
    let kind = pool_kind(mode);
    let &[c, h, w] = input else {
        return Err(bad(
            kind,
            format!("pooling needs (C, H, W) inputs, got {input:?}"),
        ));
    };
    let stride = stride.unwrap_or(size);
    let p = PoolParams::new(&[1, c, h, w], size, size, stride).map_err(|m| bad(kind, m))?;
    Ok(Pool2d {
        mode,
        size,
        stride,
        out: vec![c, p.oh as usize, p.ow as usize],
    })
}

fn pool_kind(mode: PoolMode) -> &'static str {
    match mode {
        PoolMode::Max => "MaxPooling2D",
        PoolMode::Avg => "AveragePooling2D",
        PoolMode::Stochastic => "StochasticPooling2D",
    }
}

impl Layer for Pool2d {
    fn kind(&self) -> &'static str {
        pool_kind(self.mode)
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        tape.pool2d(x, self.mode, (self.size, self.size), self.stride)
    }
}

/// One config type per pooling mode, all `{size, stride}`.
macro_rules! pool_config {
    ($(#[$doc:meta])* $name:ident, $mode:expr, $stem:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Window height and width.
            pub size: usize,
            /// Step between windows (default: the size).
            pub stride: Option<usize>,
        }

        impl $name {
            /// Windows of `size` x `size` at stride `size`.
            pub fn new(size: usize) -> Self {
                $name { size, stride: None }
            }

            /// The step between windows.
            pub fn stride(mut self, stride: usize) -> Self {
                self.stride = Some(stride);
                self
            }

            /// The layer for per-sample inputs (C, H, W) (no parameters).
            pub fn init(&self, _pb: &ParamBuilder, input: &[usize]) -> Result<Pool2d> {
                pool_init($mode, self.size, self.stride, input)
            }
        }

        impl LayerSpec for $name {
            fn name_stem(&self) -> &'static str {
                $stem
            }

            fn build(
                &self,
                pb: &ParamBuilder,
                input: &Signature,
            ) -> Result<(Box<dyn Layer>, Signature)> {
                super::build_on_values(pool_kind($mode), input, |shape| self.init(pb, shape))
            }
        }
    };
}

pool_config!(
    /// Keras's `MaxPooling2D`.
    MaxPool2dConfig,
    PoolMode::Max,
    "max_pooling2d"
);
pool_config!(
    /// Keras's `AveragePooling2D`.
    AvgPool2dConfig,
    PoolMode::Avg,
    "average_pooling2d"
);
pool_config!(
    /// Stochastic pooling (Zeiler & Fergus).
    StochasticPool2dConfig,
    PoolMode::Stochastic,
    "stochastic_pooling2d"
);

/// Keras's `GlobalAveragePooling2D`: (B, C, H, W) to (B, C).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalAvgPoolConfig {}

impl GlobalAvgPoolConfig {
    /// The layer.
    pub fn new() -> Self {
        GlobalAvgPoolConfig {}
    }

    /// The layer for per-sample inputs (C, H, W) (no parameters).
    pub fn init(&self, _pb: &ParamBuilder, input: &[usize]) -> Result<GlobalAvgPool> {
        let &[c, _, _] = input else {
            return Err(bad(
                "GlobalAveragePooling2D",
                format!("global pooling needs (C, H, W) inputs, got {input:?}"),
            ));
        };
        Ok(GlobalAvgPool { out: vec![c] })
    }
}

/// A built [`GlobalAvgPoolConfig`]: a window the size of the image.
#[derive(Clone, Debug)]
pub struct GlobalAvgPool {
    out: Vec<usize>,
}

impl Layer for GlobalAvgPool {
    fn kind(&self) -> &'static str {
        "GlobalAveragePooling2D"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        let &[b, c, h, w] = x.shape() else {
            return Err(Error::model(
                "global pooling",
                format!("(B, C, H, W) input expected, got {:?}", x.shape()),
            ));
        };
        let y = tape.pool2d(x, PoolMode::Avg, (h, w), 1)?;
        tape.reshape(&y, &[b, c])
    }
}

impl LayerSpec for GlobalAvgPoolConfig {
    fn name_stem(&self) -> &'static str {
        "global_average_pooling2d"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("GlobalAveragePooling2D", input, |shape| {
            self.init(pb, shape)
        })
    }
}

impl LayerExample for MaxPool2dConfig {
    fn example() -> (Self, Signature) {
        (MaxPool2dConfig::new(2), Signature::values(&[2, 4, 4]))
    }
}

impl LayerExample for AvgPool2dConfig {
    fn example() -> (Self, Signature) {
        (
            AvgPool2dConfig::new(2).stride(1),
            Signature::values(&[2, 4, 4]),
        )
    }
}

impl LayerExample for StochasticPool2dConfig {
    fn example() -> (Self, Signature) {
        (
            StochasticPool2dConfig::new(2),
            Signature::values(&[2, 4, 4]),
        )
    }
}

impl LayerExample for GlobalAvgPoolConfig {
    fn example() -> (Self, Signature) {
        (GlobalAvgPoolConfig::new(), Signature::values(&[2, 3, 3]))
    }
}
