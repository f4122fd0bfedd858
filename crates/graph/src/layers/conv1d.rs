//! Keras's `Conv1D` over (T, C) per sample: kernel (k, C, filters) glorot_uniform with Keras's
//! fans (k·C in, k·filters out), bias (filters) zeros, padding `valid`, `same` or `causal`,
//! stride and dilation. Runs as im2col on the tape and one matmul: the padded input's k shifted
//! windows (narrowed along time) are joined along the channels into (B·T', k·C) columns, whose
//! product with the kernel seen as (k·C, filters) is the output. Gradients come from the
//! composition (narrow, concat, matmul).

use serde::{Deserialize, Serialize};

use super::{bad, needs_values, Activation, Layer, LayerExample, LayerSpec, Signature};
use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::tape::{Tape, Var};
use crate::Result;

/// How Conv1D pads the time axis (Keras's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding1d {
    /// No padding: only windows wholly inside the input.
    #[default]
    Valid,
    /// ceil(T / stride) outputs, zeros split around the input (the extra one after).
    Same,
    /// Zeros before the input only, so that output t sees inputs up to t.
    Causal,
}

/// Keras's `Conv1D(filters, kernel_size, strides, padding, dilation_rate, activation,
/// use_bias)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv1dConfig {
    /// Output channels.
    pub filters: usize,
    /// Taps of the kernel.
    pub kernel_size: usize,
    /// Step between windows (default 1).
    #[serde(default = "super::one")]
    pub strides: usize,
    /// `valid` (default), `same` or `causal`.
    #[serde(default)]
    pub padding: Padding1d,
    /// Spacing of the taps (default 1).
    #[serde(default = "super::one")]
    pub dilation_rate: usize,
    /// Applied to the output (default linear).
    #[serde(default)]
    pub activation: Activation,
    /// Adds a bias per filter (default true).
    #[serde(default = "super::yes")]
    pub use_bias: bool,
}

impl Conv1dConfig {
    /// `filters` filters of `kernel_size` taps, stride 1, valid padding, linear.
    pub fn new(filters: usize, kernel_size: usize) -> Self {
        Conv1dConfig {
            filters,
            kernel_size,
            strides: 1,
            padding: Padding1d::Valid,
            dilation_rate: 1,
            activation: Activation::Linear,
            use_bias: true,
        }
    }

    /// The padding.
    pub fn padding(mut self, padding: Padding1d) -> Self {
        self.padding = padding;
        self
    }

    /// The stride.
    pub fn strides(mut self, strides: usize) -> Self {
        self.strides = strides;
        self
    }

    /// The dilation.
    pub fn dilation_rate(mut self, dilation_rate: usize) -> Self {
        self.dilation_rate = dilation_rate;
        self
    }

    /// The activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The layer for inputs of (steps, channels) per sample.
    pub fn init(&self, pb: &ParamBuilder, input: &[usize]) -> Result<Conv1d> {
        let what = "Conv1D";
        let &[steps, channels] = input else {
            return Err(bad(what, format!("takes (T, C) per sample, got {input:?}")));
        };
        let (k, s, d) = (self.kernel_size, self.strides, self.dilation_rate);
        if self.filters == 0 || k == 0 || s == 0 || d == 0 || channels == 0 {
            return Err(bad(
                what,
                "filters, kernel_size, strides, dilation_rate and the channels must be at least 1",
            ));
        }
        if s > 1 && d > 1 {
            return Err(bad(
                what,
                "strides and dilation_rate cannot both pass 1 (Keras refuses it too)",
            ));
        }
        let span = (k - 1) * d + 1;
        let (left, out_steps) = match self.padding {
            Padding1d::Valid => {
                if steps < span {
                    return Err(bad(
                        what,
                        format!("{steps} steps are fewer than the kernel's span {span}; use padding \"same\""),
                    ));
                }
                (0, (steps - span) / s + 1)
            }
            Padding1d::Same => {
                let out = steps.div_ceil(s);
                let total = ((out - 1) * s + span).saturating_sub(steps);
                (total / 2, out)
            }
            Padding1d::Causal => (span - 1, steps),
        };
        let kernel = pb.add(
            "kernel",
            &[k, channels, self.filters],
            Init::GlorotUniformFans {
                fan_in: k * channels,
                fan_out: k * self.filters,
            },
        )?;
        let bias = if self.use_bias {
            Some(pb.add("bias", &[self.filters], Init::Zeros)?)
        } else {
            None
        };
        // Steps after the input: enough for the last window (and the stride's reshape).
        let right = ((out_steps - 1) * s + span).saturating_sub(left + steps) + (s - 1);
        Ok(Conv1d {
            kernel,
            bias,
            activation: self.activation,
            taps: k,
            stride: s,
            dilation: d,
            left,
            right,
            out: vec![out_steps, self.filters],
        })
    }
}

/// A built [`Conv1dConfig`].
#[derive(Clone, Debug)]
pub struct Conv1d {
    kernel: ParamId,
    bias: Option<ParamId>,
    activation: Activation,
    taps: usize,
    stride: usize,
    dilation: usize,
    /// Zero steps before and after the input.
    left: usize,
    right: usize,
    out: Vec<usize>,
}

impl Conv1d {
    /// The zero-padded input (B, left + T + right, C).
    fn padded(&self, tape: &Tape, x: &Var) -> Result<Var> {
        if self.left == 0 && self.right == 0 {
            return Ok(x.clone());
        }
        let (b, c) = (x.shape()[0], x.shape()[2]);
        let d = tape.device();
        let zeros = |n: usize| -> Result<Option<Var>> {
            Ok(if n == 0 {
                None
            } else {
                Some(tape.constant(d.zeros(&[b, n, c])?))
            })
        };
        let (before, after) = (zeros(self.left)?, zeros(self.right)?);
        let parts: Vec<&Var> = before.iter().chain([x]).chain(after.iter()).collect();
        tape.concat(&parts, 1)
    }

    /// Tap j's inputs for every output step: (B, T', C).
    fn window(&self, tape: &Tape, padded: &Var, j: usize) -> Result<Var> {
        let (b, c) = (padded.shape()[0], padded.shape()[2]);
        let t_out = self.out[0];
        let s = self.stride;
        let w = tape.narrow(padded, 1, j * self.dilation, t_out * s)?;
        if s == 1 {
            return Ok(w);
        }
        // Every s-th step: (B, T', s, C), the first of each s.
        let w = tape.reshape(&w, &[b, t_out, s, c])?;
        let w = tape.narrow(&w, 2, 0, 1)?;
        tape.reshape(&w, &[b, t_out, c])
    }
}

impl Layer for Conv1d {
    fn kind(&self) -> &'static str {
        "Conv1D"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn params(&self) -> Vec<ParamId> {
        std::iter::once(self.kernel).chain(self.bias).collect()
    }

    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let (b, c) = (x.shape()[0], x.shape()[2]);
        let (t_out, filters) = (self.out[0], self.out[1]);
        let padded = self.padded(tape, x)?;
        let windows = (0..self.taps)
            .map(|j| self.window(tape, &padded, j))
            .collect::<Result<Vec<_>>>()?;
        let cols = if windows.len() == 1 {
            windows[0].clone()
        } else {
            tape.concat(&windows.iter().collect::<Vec<_>>(), 2)?
        };
        let cols = tape.reshape(&cols, &[b * t_out, self.taps * c])?;
        let kernel = tape.param(params, self.kernel);
        let kernel = tape.reshape(&kernel, &[self.taps * c, filters])?;
        let mut y = tape.matmul(&cols, &kernel, false, false)?;
        if let Some(bias) = self.bias {
            y = tape.add(&y, &tape.param(params, bias))?;
        }
        let y = tape.reshape(&y, &[b, t_out, filters])?;
        self.activation.apply(tape, &y)
    }

    /// Drops the mask: Keras's Conv1D does not support one (its output steps are not the
    /// input's).
    fn forward_masked(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        _mask: Option<kiln_device::Tensor>,
    ) -> Result<(Var, Option<kiln_device::Tensor>)> {
        Ok((self.forward(tape, params, x)?, None))
    }
}

impl LayerSpec for Conv1dConfig {
    fn name_stem(&self) -> &'static str {
        "conv1d"
    }

    fn build(&self, pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        needs_values("Conv1D", input)?;
        let layer = self.init(pb, &input.shape)?;
        let out = Signature::values(&layer.out);
        Ok((Box::new(layer), out))
    }
}

impl LayerExample for Conv1dConfig {
    fn example() -> (Self, Signature) {
        (
            Conv1dConfig::new(3, 3)
                .padding(Padding1d::Same)
                .strides(2)
                .activation(Activation::Tanh),
            Signature::values(&[7, 2]),
        )
    }
}

/// Keras's `GlobalMaxPooling1D()`: (T, C) per sample to (C), the largest value of each channel
/// over the steps. A mask is dropped unused, as Keras's layer does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalMaxPooling1dConfig {}

/// A built [`GlobalMaxPooling1dConfig`].
#[derive(Clone, Debug)]
pub struct GlobalMaxPooling1d {
    out: Vec<usize>,
}

impl Layer for GlobalMaxPooling1d {
    fn kind(&self) -> &'static str {
        "GlobalMaxPooling1D"
    }

    fn output_shape(&self) -> &[usize] {
        &self.out
    }

    fn forward(&self, tape: &Tape, _params: &ParamStore, x: &Var) -> Result<Var> {
        tape.max_axes(x, &[1], false)
    }

    /// Drops the mask, as Keras's layer does (its output has no steps).
    fn forward_masked(
        &self,
        tape: &Tape,
        params: &ParamStore,
        x: &Var,
        _mask: Option<kiln_device::Tensor>,
    ) -> Result<(Var, Option<kiln_device::Tensor>)> {
        Ok((self.forward(tape, params, x)?, None))
    }
}

impl LayerSpec for GlobalMaxPooling1dConfig {
    fn name_stem(&self) -> &'static str {
        "global_max_pooling1d"
    }

    fn build(&self, _pb: &ParamBuilder, input: &Signature) -> Result<(Box<dyn Layer>, Signature)> {
        let what = "GlobalMaxPooling1D";
        needs_values(what, input)?;
        let &[_, c] = input.shape.as_slice() else {
            return Err(bad(
                what,
                format!("takes (T, C) per sample, got {:?}", input.shape),
            ));
        };
        Ok((
            Box::new(GlobalMaxPooling1d { out: vec![c] }),
            Signature::values(&[c]),
        ))
    }
}

impl LayerExample for GlobalMaxPooling1dConfig {
    fn example() -> (Self, Signature) {
        (
            GlobalMaxPooling1dConfig::default(),
            Signature::values(&[4, 3]),
        )
    }
}
