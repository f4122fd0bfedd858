//! Layers with Keras's semantics and initializers, built `Config -> init(&mut ParamBuilder)`, and
//! the [`Sequential`] container. Configs serialize (they travel inside checkpoints and saved models
//! so that a model can be rebuilt from its file).
//!
//! Shapes: B batch; layers see per-sample shapes, with the batch in front at run time.

use kiln_device::params::{ConvParams, PoolParams};
use kiln_device::{Conv2dSpec, PoolMode, Tensor, UnaryOp};
use serde::{Deserialize, Serialize};

use crate::params::{Init, ParamBuilder, ParamId, ParamStore};
use crate::recurrent::LstmPath;
use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// Activation functions a layer can apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Step,
    Softmax,
}

impl Activation {
    pub fn apply(self, tape: &Tape, x: &Var) -> Result<Var> {
        let op = match self {
            Activation::Linear => return Ok(x.clone()),
            Activation::Softmax => return tape.softmax(x),
            Activation::Relu => UnaryOp::Relu,
            Activation::Sigmoid => UnaryOp::Sigmoid,
            Activation::Tanh => UnaryOp::Tanh,
            Activation::Step => UnaryOp::Step,
        };
        tape.unary(op, x)
    }
}

/// One layer's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerConfig {
    /// y = act(x · kernel + bias) on the last axis. kernel (in, units): glorot_uniform; bias zeros.
    Dense {
        units: usize,
        #[serde(default)]
        activation: Activation,
        #[serde(default = "yes")]
        use_bias: bool,
    },
    /// Token ids (u32) to vectors; table (vocab, dim) uniform in [-0.05, 0.05].
    Embedding {
        vocab: usize,
        dim: usize,
        /// Keras's `mask_zero`: id 0 is padding, and the recurrent layers that follow carry their
        /// state through padded steps.
        #[serde(default)]
        mask_zero: bool,
    },
    /// LSTM over (B, T, E), Keras's semantics: gates i, f, g, o; kernel (1, E, 4H) glorot_uniform,
    /// recurrent kernel (1, H, 4H) orthogonal, bias (1, 4H) zeros with the forget block at 1
    /// (unit_forget_bias). Output (B, T, H) with `return_sequences`, else the last state (B, H).
    Lstm {
        units: usize,
        #[serde(default)]
        return_sequences: bool,
    },
    /// Keras's SimpleRNN: h = tanh(x kernel + h recurrent + bias); kernel (E, H) glorot_uniform,
    /// recurrent (H, H) orthogonal, bias (H) zeros.
    SimpleRnn {
        units: usize,
        #[serde(default)]
        return_sequences: bool,
    },
    /// Runs the wrapped LSTM forward and backward in time and concatenates the two (last axis).
    /// Weights as the LSTM's with a leading direction axis of 2 (0 forward, 1 backward). Without
    /// `return_sequences`: [forward state at T-1, backward state at t = 0], as Keras.
    Bidirectional {
        layer: Box<LayerConfig>,
    },
    /// Drops a fraction `rate` of activations while training (scaling the rest), identity otherwise.
    Dropout {
        rate: f32,
    },
    Activation {
        activation: Activation,
    },
    /// (B, d1, d2, ...) to (B, d1 * d2 * ...).
    Flatten,
    /// 2-D convolution over (B, C, H, W): kernel (filters, C, k, k) glorot_uniform with Keras's fans,
    /// bias zeros; output (B, filters, OH, OW).
    Conv2d {
        filters: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default)]
        activation: Activation,
    },
    /// Window `size` at `stride` (default: the size), no padding, sizes rounded down.
    MaxPool2d {
        size: usize,
        stride: Option<usize>,
    },
    AvgPool2d {
        size: usize,
        stride: Option<usize>,
    },
    /// Zeiler & Fergus: samples by value while training, probability-weighted average otherwise.
    StochasticPool2d {
        size: usize,
        stride: Option<usize>,
    },
    /// (B, C, H, W) to (B, C), the mean of each channel.
    GlobalAvgPool,
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// What [`Sequential`] is built from: the per-sample input shape and the layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SequentialConfig {
    /// Per-sample input shape, without the batch (e.g. [31] ids, or [2] features).
    pub input: Vec<usize>,
    pub layers: Vec<LayerConfig>,
}

#[derive(Clone, Debug)]
enum Layer {
    Dense {
        kernel: ParamId,
        bias: Option<ParamId>,
        activation: Activation,
    },
    Embedding {
        table: ParamId,
    },
    Lstm {
        kernel: ParamId,
        recurrent: ParamId,
        bias: ParamId,
        return_sequences: bool,
        bidirectional: bool,
    },
    SimpleRnn {
        kernel: ParamId,
        recurrent: ParamId,
        bias: ParamId,
        return_sequences: bool,
    },
    Dropout {
        rate: f32,
    },
    Activation {
        activation: Activation,
    },
    Flatten,
    Conv2d {
        kernel: ParamId,
        bias: ParamId,
        spec: Conv2dSpec,
        activation: Activation,
    },
    Pool {
        mode: PoolMode,
        size: (usize, usize),
        stride: usize,
    },
    GlobalAvgPool,
}

/// What the training loop needs of a model: a forward pass over a batch, and a description that
/// rebuilds it (stored in checkpoints and saved models; resuming checks it).
pub trait Module {
    /// Runs the model on a batch `x` (batch first): f32 features or u32 ids.
    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Tensor) -> Result<Var>;
    /// The configuration as JSON.
    fn config_json(&self) -> String;
    /// Layer, output shape, parameter count, as Keras's `summary()`.
    fn summary_table(&self, params: &ParamStore) -> String;
    /// Runs the model's LSTM layers fused (the default) or unfused.
    fn set_lstm_path(&mut self, _path: LstmPath) {}
}

impl Module for Sequential {
    fn forward(&self, tape: &Tape, params: &ParamStore, x: &Tensor) -> Result<Var> {
        Sequential::forward(self, tape, params, x)
    }

    fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("configs serialize")
    }

    fn summary_table(&self, params: &ParamStore) -> String {
        Sequential::summary_table(self, params)
    }

    fn set_lstm_path(&mut self, path: LstmPath) {
        Sequential::set_lstm_path(self, path)
    }
}

/// A stack of layers applied in order.
#[derive(Clone, Debug)]
pub struct Sequential {
    config: SequentialConfig,
    names: Vec<String>,
    layers: Vec<Layer>,
    /// Per-sample output shape of each layer.
    shapes: Vec<Vec<usize>>,
    /// The embedding masks padding (id 0) for the recurrent layers.
    mask_zero: bool,
    lstm_path: LstmPath,
}

/// One row of [`Sequential::summary`].
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    pub name: String,
    pub kind: &'static str,
    pub output: Vec<usize>,
    pub params: usize,
}

impl SequentialConfig {
    /// Registers every parameter (Keras names: dense_1.kernel, embedding_1.embeddings, ...) and
    /// checks that the shapes chain.
    pub fn init(&self, b: &mut ParamBuilder) -> Result<Sequential> {
        self.init_named(b, "")
    }

    /// As [`init`](Self::init), with every parameter name prefixed (models made of several stacks).
    pub fn init_named(&self, b: &mut ParamBuilder, prefix: &str) -> Result<Sequential> {
        let mut counts = std::collections::HashMap::<&str, usize>::new();
        let mut shape = self.input.clone();
        let (mut names, mut layers, mut shapes) = (vec![], vec![], vec![]);
        // Whether a mask from the embedding still flows (Keras drops it after a recurrent layer
        // that returns only its last state).
        let mut masked = false;
        for (i, cfg) in self.layers.iter().enumerate() {
            let kind = kind_of(cfg);
            let n = counts.entry(kind).or_default();
            *n += 1;
            let name = format!("{prefix}{kind}_{n}");
            let bad = |msg: String| Error::model(format!("layer {} ({name})", i + 1), msg);
            let layer = match *cfg {
                LayerConfig::Dense {
                    units,
                    activation,
                    use_bias,
                } => {
                    let &input = shape
                        .last()
                        .ok_or_else(|| bad("needs an input with a last axis".into()))?;
                    let kernel = b.add(
                        format!("{name}.kernel"),
                        &[input, units],
                        Init::GlorotUniform,
                    )?;
                    let bias = if use_bias {
                        Some(b.add(format!("{name}.bias"), &[units], Init::Zeros)?)
                    } else {
                        None
                    };
                    *shape.last_mut().expect("checked") = units;
                    Layer::Dense {
                        kernel,
                        bias,
                        activation,
                    }
                }
                LayerConfig::Embedding {
                    vocab,
                    dim,
                    mask_zero,
                } => {
                    masked = mask_zero;
                    if i != 0 {
                        return Err(bad(
                            "an embedding must be the first layer (it reads token ids)".into(),
                        ));
                    }
                    let table = b.add(
                        format!("{name}.embeddings"),
                        &[vocab, dim],
                        Init::Uniform(-0.05, 0.05),
                    )?;
                    shape.push(dim);
                    Layer::Embedding { table }
                }
                LayerConfig::Lstm { .. } | LayerConfig::Bidirectional { .. } => {
                    let (inner, bidirectional) = match cfg {
                        LayerConfig::Bidirectional { layer } => (&**layer, true),
                        other => (other, false),
                    };
                    let LayerConfig::Lstm {
                        units,
                        return_sequences,
                    } = *inner
                    else {
                        return Err(bad(
                            "Bidirectional wraps an Lstm layer (SimpleRnn runs one way only)"
                                .into(),
                        ));
                    };
                    let &[_, e] = &shape[..] else {
                        return Err(bad(format!(
                            "an LSTM needs (T, E) inputs per sample, got {shape:?}"
                        )));
                    };
                    if units == 0 {
                        return Err(bad("an LSTM needs at least one unit".into()));
                    }
                    let d = if bidirectional { 2 } else { 1 };
                    let h4 = 4 * units;
                    let kernel = b.add(
                        format!("{name}.kernel"),
                        &[d, e, h4],
                        Init::GlorotUniformFans {
                            fan_in: e,
                            fan_out: h4,
                        },
                    )?;
                    let recurrent = b.add(
                        format!("{name}.recurrent_kernel"),
                        &[d, units, h4],
                        Init::Orthogonal,
                    )?;
                    let forget_one: Vec<f32> = (0..d * h4)
                        .map(|i| if (i % h4) / units == 1 { 1.0 } else { 0.0 })
                        .collect();
                    let bias = b.add(format!("{name}.bias"), &[d, h4], Init::Values(forget_one))?;
                    shape = if return_sequences {
                        vec![shape[0], d * units]
                    } else {
                        masked = false;
                        vec![d * units]
                    };
                    Layer::Lstm {
                        kernel,
                        recurrent,
                        bias,
                        return_sequences,
                        bidirectional,
                    }
                }
                LayerConfig::SimpleRnn {
                    units,
                    return_sequences,
                } => {
                    let &[_, e] = &shape[..] else {
                        return Err(bad(format!(
                            "an RNN needs (T, E) inputs per sample, got {shape:?}"
                        )));
                    };
                    if masked {
                        return Err(bad(
                            "SimpleRnn does not take a padding mask; use an Lstm or drop mask_zero"
                                .into(),
                        ));
                    }
                    let kernel =
                        b.add(format!("{name}.kernel"), &[e, units], Init::GlorotUniform)?;
                    let recurrent = b.add(
                        format!("{name}.recurrent_kernel"),
                        &[units, units],
                        Init::Orthogonal,
                    )?;
                    let bias = b.add(format!("{name}.bias"), &[units], Init::Zeros)?;
                    shape = if return_sequences {
                        vec![shape[0], units]
                    } else {
                        vec![units]
                    };
                    Layer::SimpleRnn {
                        kernel,
                        recurrent,
                        bias,
                        return_sequences,
                    }
                }
                LayerConfig::Dropout { rate } => {
                    if !(0.0..1.0).contains(&rate) {
                        return Err(bad(format!("dropout rate {rate} must be in [0, 1)")));
                    }
                    Layer::Dropout { rate }
                }
                LayerConfig::Activation { activation } => Layer::Activation { activation },
                LayerConfig::Flatten => {
                    shape = vec![shape.iter().product()];
                    Layer::Flatten
                }
                LayerConfig::Conv2d {
                    filters,
                    kernel,
                    stride,
                    padding,
                    activation,
                } => {
                    let &[c, h, w] = &shape[..] else {
                        return Err(bad(format!(
                            "a convolution needs (C, H, W) inputs, got {shape:?}"
                        )));
                    };
                    let spec = Conv2dSpec {
                        stride,
                        padding,
                        dilation: 1,
                    };
                    let p = ConvParams::new(&[1, c, h, w], &[filters, c, kernel, kernel], &spec)
                        .map_err(bad)?;
                    let fans = Init::GlorotUniformFans {
                        fan_in: c * kernel * kernel,
                        fan_out: filters * kernel * kernel,
                    };
                    let kernel_id = b.add(
                        format!("{name}.kernel"),
                        &[filters, c, kernel, kernel],
                        fans,
                    )?;
                    let bias = b.add(format!("{name}.bias"), &[filters], Init::Zeros)?;
                    shape = vec![filters, p.out_h(), p.out_w()];
                    Layer::Conv2d {
                        kernel: kernel_id,
                        bias,
                        spec,
                        activation,
                    }
                }
                LayerConfig::MaxPool2d { size, stride }
                | LayerConfig::AvgPool2d { size, stride }
                | LayerConfig::StochasticPool2d { size, stride } => {
                    let &[c, h, w] = &shape[..] else {
                        return Err(bad(format!(
                            "pooling needs (C, H, W) inputs, got {shape:?}"
                        )));
                    };
                    let stride = stride.unwrap_or(size);
                    let p = PoolParams::new(&[1, c, h, w], size, size, stride).map_err(bad)?;
                    shape = vec![c, p.oh as usize, p.ow as usize];
                    let mode = match cfg {
                        LayerConfig::MaxPool2d { .. } => PoolMode::Max,
                        LayerConfig::AvgPool2d { .. } => PoolMode::Avg,
                        _ => PoolMode::Stochastic,
                    };
                    Layer::Pool {
                        mode,
                        size: (size, size),
                        stride,
                    }
                }
                LayerConfig::GlobalAvgPool => {
                    let &[c, _, _] = &shape[..] else {
                        return Err(bad(format!(
                            "global pooling needs (C, H, W) inputs, got {shape:?}"
                        )));
                    };
                    shape = vec![c];
                    Layer::GlobalAvgPool
                }
            };
            names.push(name);
            layers.push(layer);
            shapes.push(shape.clone());
        }
        Ok(Sequential {
            config: self.clone(),
            names,
            layers,
            shapes,
            mask_zero: matches!(
                self.layers.first(),
                Some(LayerConfig::Embedding {
                    mask_zero: true,
                    ..
                })
            ),
            lstm_path: LstmPath::default(),
        })
    }
}

fn kind_of(cfg: &LayerConfig) -> &'static str {
    match cfg {
        LayerConfig::Dense { .. } => "dense",
        LayerConfig::Embedding { .. } => "embedding",
        LayerConfig::Lstm { .. } => "lstm",
        LayerConfig::SimpleRnn { .. } => "simple_rnn",
        LayerConfig::Bidirectional { .. } => "bidirectional",
        LayerConfig::Dropout { .. } => "dropout",
        LayerConfig::Activation { .. } => "activation",
        LayerConfig::Flatten => "flatten",
        LayerConfig::Conv2d { .. } => "conv2d",
        LayerConfig::MaxPool2d { .. } => "max_pooling2d",
        LayerConfig::AvgPool2d { .. } => "average_pooling2d",
        LayerConfig::StochasticPool2d { .. } => "stochastic_pooling2d",
        LayerConfig::GlobalAvgPool => "global_average_pooling2d",
    }
}

impl Sequential {
    pub fn config(&self) -> &SequentialConfig {
        &self.config
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        self.shapes.last().map_or(&self.config.input, |s| s)
    }

    /// Runs the LSTM layers fused (the default) or unfused (the per-timestep composition).
    pub fn set_lstm_path(&mut self, path: LstmPath) {
        self.lstm_path = path;
    }

    pub fn lstm_path(&self) -> LstmPath {
        self.lstm_path
    }

    /// Whether the model reads token ids (its first layer is an embedding).
    pub fn takes_ids(&self) -> bool {
        matches!(self.layers.first(), Some(Layer::Embedding { .. }))
    }

    /// Runs the layers on a batch `x` of shape (B, input...): u32 ids for an embedding model, f32
    /// otherwise.
    pub fn forward(&self, tape: &Tape, params: &ParamStore, x: &Tensor) -> Result<Var> {
        let batch = *x
            .shape()
            .first()
            .ok_or_else(|| Error::model("input", "a batch dimension is needed"))?;
        if x.shape()[1..] != self.config.input[..] {
            return Err(Error::model(
                "input",
                format!(
                    "per-sample shape {:?}, the model expects {:?}",
                    &x.shape()[1..],
                    self.config.input
                ),
            ));
        }
        let mut h: Option<Var> = None;
        let mut mask = self.mask_zero.then(|| x.clone());
        for layer in &self.layers {
            let next = match (layer, &h) {
                (Layer::Embedding { table }, None) => {
                    tape.embedding(&tape.param(params, *table), x)?
                }
                (_, None) => {
                    let input = tape.constant(x.clone());
                    h = Some(input);
                    self.apply(
                        tape,
                        params,
                        layer,
                        h.as_ref().expect("set"),
                        batch,
                        &mut mask,
                    )?
                }
                (_, Some(v)) => self.apply(tape, params, layer, v, batch, &mut mask)?,
            };
            h = Some(next);
        }
        h.ok_or_else(|| Error::model("model", "no layers"))
    }

    /// Runs the layers on a value already on the tape (a stack inside a larger model); the first
    /// layer must not be an embedding.
    pub fn forward_var(&self, tape: &Tape, params: &ParamStore, x: &Var) -> Result<Var> {
        let batch = *x.shape().first().unwrap_or(&0);
        if x.shape().get(1..) != Some(&self.config.input[..]) {
            return Err(Error::model(
                "input",
                format!(
                    "shape {:?}, the stack expects (B, {:?})",
                    x.shape(),
                    self.config.input
                ),
            ));
        }
        let mut mask = None;
        let mut h = x.clone();
        for layer in &self.layers {
            h = self.apply(tape, params, layer, &h, batch, &mut mask)?;
        }
        Ok(h)
    }

    fn apply(
        &self,
        tape: &Tape,
        params: &ParamStore,
        layer: &Layer,
        x: &Var,
        batch: usize,
        mask: &mut Option<Tensor>,
    ) -> Result<Var> {
        match layer {
            Layer::Lstm {
                kernel,
                recurrent,
                bias,
                return_sequences,
                ..
            } => {
                let p = |id: &ParamId| tape.param(params, *id);
                let out = tape.lstm_with(
                    self.lstm_path,
                    x,
                    &p(kernel),
                    &p(recurrent),
                    &p(bias),
                    None,
                    mask.as_ref(),
                    *return_sequences,
                )?;
                match out.y {
                    Some(y) => Ok(y),
                    None => {
                        *mask = None;
                        Ok(out.h)
                    }
                }
            }
            Layer::SimpleRnn {
                kernel,
                recurrent,
                bias,
                return_sequences,
            } => {
                let p = |id: &ParamId| tape.param(params, *id);
                let (y, h) =
                    tape.simple_rnn(x, &p(kernel), &p(recurrent), &p(bias), *return_sequences)?;
                Ok(y.unwrap_or(h))
            }
            Layer::Dense {
                kernel,
                bias,
                activation,
            } => {
                let shape = x.shape().to_vec();
                let input = *shape.last().expect("rank >= 1");
                let rows = x.value().len() / input;
                let x2 = if shape.len() == 2 {
                    x.clone()
                } else {
                    tape.reshape(x, &[rows, input])?
                };
                let mut y = tape.matmul(&x2, &tape.param(params, *kernel), false, false)?;
                if let Some(bias) = bias {
                    y = tape.add(&y, &tape.param(params, *bias))?;
                }
                if shape.len() != 2 {
                    let mut out = shape.clone();
                    *out.last_mut().expect("rank >= 1") = y.shape()[1];
                    y = tape.reshape(&y, &out)?;
                }
                activation.apply(tape, &y)
            }
            Layer::Embedding { .. } => Err(Error::model(
                "embedding",
                "an embedding must be the first layer",
            )),
            Layer::Dropout { rate } => tape.dropout(x, *rate),
            Layer::Activation { activation } => activation.apply(tape, x),
            Layer::Flatten => {
                let n = x.value().len() / batch;
                tape.reshape(x, &[batch, n])
            }
            Layer::Conv2d {
                kernel,
                bias,
                spec,
                activation,
            } => {
                let y = tape.conv2d(
                    x,
                    &tape.param(params, *kernel),
                    Some(&tape.param(params, *bias)),
                    *spec,
                )?;
                activation.apply(tape, &y)
            }
            Layer::Pool { mode, size, stride } => tape.pool2d(x, *mode, *size, *stride),
            Layer::GlobalAvgPool => {
                let &[_, c, h, w] = x.shape() else {
                    return Err(Error::model(
                        "global pooling",
                        format!("(B, C, H, W) input expected, got {:?}", x.shape()),
                    ));
                };
                let y = tape.pool2d(x, PoolMode::Avg, (h, w), 1)?;
                tape.reshape(&y, &[batch, c])
            }
        }
    }

    /// Layer, output shape and parameter count, as Keras's `summary()`.
    pub fn summary(&self, params: &ParamStore) -> Vec<SummaryRow> {
        self.layers
            .iter()
            .zip(&self.names)
            .zip(&self.shapes)
            .map(|((layer, name), shape)| {
                let ids: Vec<ParamId> = match layer {
                    Layer::Dense { kernel, bias, .. } => {
                        std::iter::once(*kernel).chain(*bias).collect()
                    }
                    Layer::Embedding { table } => vec![*table],
                    Layer::Lstm {
                        kernel,
                        recurrent,
                        bias,
                        ..
                    }
                    | Layer::SimpleRnn {
                        kernel,
                        recurrent,
                        bias,
                        ..
                    } => vec![*kernel, *recurrent, *bias],
                    _ => vec![],
                };
                SummaryRow {
                    name: name.clone(),
                    kind: match layer {
                        Layer::Dense { .. } => "Dense",
                        Layer::Embedding { .. } => "Embedding",
                        Layer::Lstm {
                            bidirectional: true,
                            ..
                        } => "Bidirectional",
                        Layer::Lstm { .. } => "LSTM",
                        Layer::SimpleRnn { .. } => "SimpleRNN",
                        Layer::Dropout { .. } => "Dropout",
                        Layer::Activation { .. } => "Activation",
                        Layer::Flatten => "Flatten",
                        Layer::Conv2d { .. } => "Conv2D",
                        Layer::Pool {
                            mode: PoolMode::Max,
                            ..
                        } => "MaxPooling2D",
                        Layer::Pool {
                            mode: PoolMode::Avg,
                            ..
                        } => "AveragePooling2D",
                        Layer::Pool {
                            mode: PoolMode::Stochastic,
                            ..
                        } => "StochasticPooling2D",
                        Layer::GlobalAvgPool => "GlobalAveragePooling2D",
                    },
                    output: shape.clone(),
                    params: ids
                        .iter()
                        .map(|&id| params.shape(id).iter().product::<usize>())
                        .sum(),
                }
            })
            .collect()
    }

    /// The summary as a table.
    pub fn summary_table(&self, params: &ParamStore) -> String {
        let rows = self.summary(params);
        let mut out = format!(
            "{:<28} {:<22} {:>10}\n",
            "Layer (type)", "Output Shape", "Param #"
        );
        out += &"=".repeat(62);
        out += "\n";
        for r in &rows {
            let shape = format!(
                "(None, {})",
                r.output
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out += &format!(
                "{:<28} {:<22} {:>10}\n",
                format!("{} ({})", r.name, r.kind),
                shape,
                r.params
            );
        }
        out += &"=".repeat(62);
        out += &format!(
            "\nTotal params: {}\n",
            rows.iter().map(|r| r.params).sum::<usize>()
        );
        out
    }
}
