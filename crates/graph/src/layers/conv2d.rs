//! 2-D convolution over (B, C, H, W): kernel (filters, C, k, k) glorot_uniform with Keras's fans
//! (C·k·k in, filters·k·k out), bias (filters) zeros; output (B, filters, OH, OW). Runs as im2col
//! and the tuned matmul (kiln-device's `conv2d`).

use kiln_device::params::ConvParams;
use kiln_device::Conv2dSpec;
use serde::{Deserialize, Serialize};

use super::{bad, Activation, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// Keras's `Conv2D(filters, kernel_size, strides, padding)` with square kernels; `padding` is
/// the number of zero rows and columns added on each side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dConfig {
    /// Output channels.
    pub filters: usize,
    /// Kernel height and width.
    pub kernel: usize,
    /// Step between windows (default 1).
    #[serde(default = "super::one")]
    pub stride: usize,
    /// Zeros added on each side (default 0).
    #[serde(default)]
    pub padding: usize,
    /// Applied to the output (default linear).
    #[serde(default)]
    pub activation: Activation,
}

impl Conv2dConfig {
    /// `filters` output channels, `kernel` x `kernel` windows, stride 1, no padding, linear.
    pub fn new(filters: usize, kernel: usize) -> Self {
        Conv2dConfig {
            filters,
            kernel,
            stride: 1,
            padding: 0,
            activation: Activation::Linear,
        }
    }

    /// The step between windows.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Zeros added on each side.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// The activation applied to the output.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Registers `kernel` and `bias` under `pb` for per-sample inputs (C, H, W).
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<Conv2d> {
        let &[c, h, w] = input else {
            return Err(bad(
                "Conv2D",
                format!("a convolution needs (C, H, W) inputs, got {input:?}"),
            ));
        };
        let (f, k) = (self.filters, self.kernel);
        let spec = Conv2dSpec {
            stride: self.stride,
            padding: self.padding,
            dilation: 1,
        };
        let p =
            ConvParams::new(&[1, c, h, w], &[f, c, k, k], &spec).map_err(|m| bad("Conv2D", m))?;
        let fans = Init::GlorotUniformFans {
            fan_in: c * k * k,
            fan_out: f * k * k,
        };
        let kernel = pb.add("kernel", &[f, c, k, k], fans)?;
        let bias = pb.add("bias", &[f], Init::Zeros)?;
        Ok(Conv2d {
            kernel,
            bias,
            spec,
            activation: self.activation,
            out: vec![f, p.out_h(), p.out_w()],
        })
    }
}

/// A built [`Conv2dConfig`].
#[derive(Clone, Debug)]
pub struct Conv2d {
    kernel: ParamId,
    bias: ParamId,
    spec: Conv2dSpec,
    activation: Activation,
    out: Vec<usize>,
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "Conv2D"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        vec![self.kernel, self.bias]
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let y = tape.conv2d(
            x,
            &tape.param(params, self.kernel),
            Some(&tape.param(params, self.bias)),
            self.spec,
        )?;
        self.activation.apply(tape, &y)
    }
}

impl LayerSpec for Conv2dConfig {
    fn name_stem(&self) -> &'static str {
        "conv2d"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        super::build_on_values("Conv2D", input, |shape| self.init(pb, shape))
    }
}

impl LayerExample for Conv2dConfig {
    fn example() -> (Self, Signature) {
        (Conv2dConfig::new(2, 3), Signature::values(&[1, 5, 5]))
    }
}
