//! The models `kiln train` knows, with their default training settings.

use std::path::PathBuf;

use kiln_graph::layers::{
    ActivationConfig, AvgPool2dConfig, BatchNormalizationConfig, BidirectionalConfig, Conv1dConfig,
    Conv2dConfig, DenseConfig, DropoutConfig, EmbeddingConfig, FlattenConfig,
    GlobalAveragePooling1dConfig, GlobalMaxPooling1dConfig, GruConfig, LstmConfig, MaxPool2dConfig,
    PositionEmbeddingConfig, StochasticPool2dConfig, TransformerEncoderConfig,
};
use kiln_graph::{
    Activation, LayerConfig, LossKind, Model, OptimizerConfig, ParamBuilder, SequentialConfig,
};
use kiln_train::{Dataset, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::data;
use crate::data::qqp::Preprocess;
pub use crate::siamese::{Siamese, SiameseConfig};

/// Any model `kiln` builds from a model file or a saved config: a Sequential stack
/// (`{"input": [..], "layers": [..]}`) or the siamese pair model (`{"siamese": {..}}`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelConfig {
    /// Layers in order.
    Sequential(SequentialConfig),
    /// One encoder shared by both questions, and a head.
    Siamese {
        /// The siamese model's config.
        siamese: SiameseConfig,
    },
}

/// Picks the form by its keys, so an error names the layer or field at fault instead of serde's
/// "did not match any variant".
impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        let Some(obj) = v.as_object() else {
            return Err(D::Error::custom(
                "a model file is a JSON object: {\"input\": [...], \"layers\": [...]} (`kiln model xor` prints one)",
            ));
        };
        if obj.contains_key("siamese") {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Wrapped {
                siamese: SiameseConfig,
            }
            let w: Wrapped = serde_json::from_value(v).map_err(D::Error::custom)?;
            return Ok(ModelConfig::Siamese { siamese: w.siamese });
        }
        serde_json::from_value(v)
            .map(ModelConfig::Sequential)
            .map_err(D::Error::custom)
    }
}

/// What `kiln eval` computes of a saved model on a dataset: the loss, the loss's metric and the
/// metrics its run tracked (the model file's `metrics` metadata), as Keras's `evaluate` reports a
/// compiled model's metrics. Everything summed on the device, read once.
pub struct Evaluated {
    /// The mean loss.
    pub loss: f32,
    /// The loss's metric (accuracy, mae).
    pub metric: f32,
    /// The tracked metrics by name, in the run's order.
    pub tracked: Vec<(String, f32)>,
}

/// [`Evaluated`] for the saved model `checkpoint` (read from `path`) as `model` and `params`.
pub fn evaluate_saved(
    (model, params): (&dyn Model, &kiln_graph::ParamStore),
    (checkpoint, path): (&kiln_graph::checkpoint::Checkpoint, &std::path::Path),
    data: &Dataset,
    loss: LossKind,
) -> Result<Evaluated, String> {
    let metrics: Vec<kiln_graph::TrackedMetric> = match checkpoint.meta(kiln_train::METRICS_KEY) {
        Some(names) => serde_json::from_str(names).map_err(|e| {
            format!(
                "{}: its `{}` metadata: {e}",
                path.display(),
                kiln_train::METRICS_KEY
            )
        })?,
        None => vec![],
    };
    let tracked = kiln_train::Tracked::new(&metrics, &loss, Some(loss));
    let e = kiln_train::evaluate_tracked(model, params, data, 256, &loss, &tracked)
        .map_err(|e| e.to_string())?;
    Ok(Evaluated {
        loss: e.loss,
        metric: e.metric.expect("a built-in loss reports its metric"),
        tracked: tracked
            .metrics
            .iter()
            .map(|m| m.name())
            .zip(e.tracked)
            .collect(),
    })
}

/// Named values as a JSON object, in their order (`{"auc": 0.93}`): reports' tracked metrics.
pub fn in_order<S: serde::Serializer>(values: &[(String, f32)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(values.len()))?;
    for (name, v) in values {
        map.serialize_entry(name, v)?;
    }
    map.end()
}

/// A model file's optional `"training"` section: how the model is trained, beside what it is.
/// `{"input": [..], "layers": [..], "training": {"metrics": ["precision", "recall", "auc"]}}`
/// tracks those metrics beside the loss's own (as `--metrics`, which overrides it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    /// Metrics tracked beside the loss's own, by Keras's names.
    #[serde(default)]
    pub metrics: Vec<kiln_graph::TrackedMetric>,
}

impl TrainingSection {
    /// Splits a model file's text into the model's JSON and its training section (the default
    /// when it has none).
    pub fn split_off(text: &str) -> Result<(String, TrainingSection), String> {
        let Ok(serde_json::Value::Object(mut obj)) =
            serde_json::from_str::<serde_json::Value>(text)
        else {
            // Not an object: the model's parser says what is wrong.
            return Ok((text.to_string(), TrainingSection::default()));
        };
        let Some(section) = obj.remove("training") else {
            return Ok((text.to_string(), TrainingSection::default()));
        };
        let training = serde_json::from_value(section).map_err(|e| {
            format!(
                "\"training\": {e}; it takes {{\"metrics\": [names]}}, names among {}",
                kiln_graph::TrackedMetric::NAMES.join(", ")
            )
        })?;
        let model = serde_json::to_string(&serde_json::Value::Object(obj)).expect("JSON writes");
        Ok((model, training))
    }
}

pub use kiln_data::Outline;

fn last_activation(layers: &[LayerConfig]) -> Activation {
    match layers.last() {
        Some(LayerConfig::Dense(d)) => d.activation,
        Some(LayerConfig::Activation(a)) => a.activation,
        _ => Activation::Linear,
    }
}

/// The largest model file kiln reads: a config of the most layers a list may hold
/// ([`kiln_graph::layers::MAX_LAYERS`]) is a few megabytes.
pub const MAX_MODEL_FILE_BYTES: u64 = 16 << 20;

impl ModelConfig {
    /// Reads the model from JSON text (a model file), with errors that name the layer or field.
    pub fn from_json(text: &str) -> Result<ModelConfig, String> {
        serde_json::from_str(text).map_err(|e| crate::data::clip(&e.to_string()))
    }

    /// Reads a model file: refused past [`MAX_MODEL_FILE_BYTES`] before it is read whole, and
    /// errors that name the file. Also returns the fields it left out ([`Self::defaults_taken`]).
    pub fn read_file(
        path: &std::path::Path,
    ) -> Result<(ModelConfig, Vec<String>, TrainingSection), String> {
        use std::io::Read;
        let at = |e: String| format!("model file {}: {e}", path.display());
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_MODEL_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| format!("cannot read model file {}: {e}", path.display()))?;
        if text.len() as u64 > MAX_MODEL_FILE_BYTES {
            return Err(at(format!(
                "larger than {} MiB; a model file holds layer configs, a few kilobytes for most models (was the file generated by mistake?)",
                MAX_MODEL_FILE_BYTES >> 20
            )));
        }
        let (text, training) = TrainingSection::split_off(&text).map_err(at)?;
        let config = ModelConfig::from_json(&text).map_err(at)?;
        let defaults = config.defaults_taken(&text);
        Ok((config, defaults, training))
    }

    /// The fields `text` (the file this config was read from) leaves out, which took their
    /// defaults, as `layers[1] (dense): activation "linear"`: a model file may omit any field
    /// but a layer's size, and kiln says what it filled in.
    pub fn defaults_taken(&self, text: &str) -> Vec<String> {
        let (Ok(given), Ok(full)) = (
            serde_json::from_str::<serde_json::Value>(text),
            serde_json::to_value(self),
        ) else {
            return vec![];
        };
        let mut out = vec![];
        left_out(&given, &full, String::new(), &mut out);
        out
    }

    /// Builds the model, registering its parameters in `pb`.
    pub fn init(&self, pb: &ParamBuilder) -> kiln_graph::Result<Box<dyn Model>> {
        Ok(match self {
            ModelConfig::Sequential(c) => Box::new(c.init(pb)?),
            ModelConfig::Siamese { siamese } => Box::new(siamese.init(pb)?),
        })
    }

    /// Checks that the layers chain (building on a throwaway builder: nothing is allocated or
    /// drawn) and reads the input and output.
    pub fn outline(&self) -> Result<Outline, String> {
        let pb = ParamBuilder::new(0);
        Ok(match self {
            ModelConfig::Sequential(c) => {
                let m = c.init(&pb).map_err(|e| e.to_string())?;
                Outline {
                    input: c.input.clone(),
                    takes_ids: m.takes_ids(),
                    vocab: match c.layers.first() {
                        Some(LayerConfig::Embedding(e)) => Some(e.vocab),
                        _ => None,
                    },
                    outputs: m.output_shape().iter().product(),
                    activation: last_activation(&c.layers),
                }
            }
            ModelConfig::Siamese { siamese } => {
                let m = siamese.init(&pb).map_err(|e| e.to_string())?;
                Outline {
                    input: vec![2 * siamese.seq_len],
                    takes_ids: true,
                    vocab: match siamese.encoder.first() {
                        Some(LayerConfig::Embedding(e)) => Some(e.vocab),
                        _ => None,
                    },
                    outputs: m.output_width(),
                    activation: last_activation(&siamese.head),
                }
            }
        })
    }
}

/// A saved model rebuilt on a device.
pub struct Saved {
    /// The model, built from the file's `model_config`.
    pub model: Box<dyn Model>,
    /// Its weights, loaded by name.
    pub params: kiln_graph::ParamStore,
    /// What the config says of its input and output.
    pub outline: Outline,
    /// The file (metadata included).
    pub checkpoint: kiln_graph::checkpoint::Checkpoint,
}

/// Collects the keys of `full` that `given` lacks, recursing where both have a key or an index.
fn left_out(
    given: &serde_json::Value,
    full: &serde_json::Value,
    at: String,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (given, full) {
        (Value::Object(g), Value::Object(f)) => {
            let here = match f.get("type").and_then(Value::as_str) {
                Some(t) => format!("{at} ({t})"),
                None => at.clone(),
            };
            for (key, value) in f {
                match g.get(key) {
                    Some(v) => left_out(v, value, join(&at, key), out),
                    None if key != "type" => {
                        out.push(format!("{}: {key} {value}", here.trim_start()))
                    }
                    None => {}
                }
            }
        }
        (Value::Array(g), Value::Array(f)) => {
            for (i, (a, b)) in g.iter().zip(f).enumerate() {
                left_out(a, b, format!("{at}[{}]", i + 1), out);
            }
        }
        _ => {}
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// A saved model read from its file and checked, before anything is allocated.
pub struct ReadSaved {
    /// The file.
    pub path: std::path::PathBuf,
    /// Its `model_config`.
    pub config: ModelConfig,
    /// What the config says of its input and output.
    pub outline: Outline,
    /// The file (metadata included).
    pub checkpoint: kiln_graph::checkpoint::Checkpoint,
}

/// Reads a model file written by `kiln train`: the config is built and checked against the
/// stored tensors' names, shapes and values, allocating nothing (an edited config whose sizes
/// the tensors do not have is refused, not allocated). [`ReadSaved::build`] then loads it.
pub fn read_saved(path: &std::path::Path) -> Result<ReadSaved, String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let (config, checkpoint) =
        kiln_train::load_model::<ModelConfig>(path).map_err(|e| e.to_string())?;
    let outline = config.outline().map_err(at)?;
    let b = ParamBuilder::new(0);
    config.init(&b).map_err(|e| at(e.to_string()))?;
    b.check(&checkpoint.params).map_err(|e| at(e.to_string()))?;
    Ok(ReadSaved {
        path: path.into(),
        config,
        outline,
        checkpoint,
    })
}

impl ReadSaved {
    /// Allocates the model on `device` and loads its weights.
    pub fn build(self, device: &kiln_device::Device) -> Result<Saved, String> {
        let at = |e: kiln_graph::Error| format!("{}: {e}", self.path.display());
        let b = ParamBuilder::new(0);
        let model = self.config.init(&b).map_err(at)?;
        let params = b.build(device).map_err(at)?;
        params.load(&self.checkpoint.params).map_err(at)?;
        Ok(Saved {
            model,
            params,
            outline: self.outline,
            checkpoint: self.checkpoint,
        })
    }
}

/// Loads a model file written by `kiln train` ([`read_saved`], then [`ReadSaved::build`]).
pub fn load_saved(device: &kiln_device::Device, path: &std::path::Path) -> Result<Saved, String> {
    read_saved(path)?.build(device)
}

/// A model, its data and its defaults.
pub struct Job {
    /// The name of the run folder (`runs/NAME`).
    pub name: String,
    /// The model.
    pub model: ModelConfig,
    /// The training data.
    pub train: Dataset,
    /// The validation data, when there is some.
    pub val: Option<Dataset>,
    /// How to train.
    pub config: TrainConfig,
    /// Saved with the model (qqp: the vocabulary and the preprocessing).
    pub metadata: Vec<(String, String)>,
    /// What loading the data found, for the log.
    pub data_report: Option<String>,
}

fn dense(units: usize, activation: Activation) -> LayerConfig {
    DenseConfig::new(units).activation(activation).into()
}

/// The built-in jobs: a model, its data and its training settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JobName {
    /// Two interleaved spirals (generated), an MLP.
    Spirals,
    /// The four XOR points, a 2-8-1 MLP.
    Xor,
    /// MNIST digits (embedded), a LeNet-style CNN.
    Mnist,
    /// Quora Question Pairs (embedded sample), the seed tutorial's BiLSTM classifier.
    Qqp,
}

impl JobName {
    /// The name on the command line and of the default run folder.
    pub fn as_str(self) -> &'static str {
        match self {
            JobName::Spirals => "spirals",
            JobName::Xor => "xor",
            JobName::Mnist => "mnist",
            JobName::Qqp => "qqp",
        }
    }
}

/// mnist's pooling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pool {
    /// Max pooling.
    #[default]
    Max,
    /// Average pooling.
    Avg,
    /// Stochastic pooling (Zeiler and Fergus): sampled in training, probability-weighted after.
    Stochastic,
}

/// mnist's normalization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Norm {
    /// None: the seed's LeNet.
    #[default]
    None,
    /// BatchNormalization after each convolution (over the channels) and the hidden dense
    /// layer, before their relu (Keras's usual Conv2D -> BatchNormalization -> relu).
    Batch,
}

/// qqp's architecture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// The seed tutorial's model on the two questions' ids one after the other.
    #[default]
    Seed,
    /// One BiLSTM encoder shared by both questions, the seed's head on [u, v, |u - v|, u * v].
    Siamese,
    /// A small transformer on the pair's ids: a masked embedding plus learned positions, one
    /// encoder block, the masked mean over the steps, the seed's head.
    Transformer,
    /// A text CNN on the pair's ids: an embedding, a convolution over 5 ids, the largest value
    /// of each filter over the steps, the seed's head.
    Cnn,
    /// The seed's model with its two BiLSTM layers as BiGRU layers of the same widths.
    Gru,
}

/// Choices some jobs take.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// mnist: the pooling.
    pub pool: Pool,
    /// mnist: the normalization.
    pub norm: Norm,
    /// mnist: a folder with the four IDX files (default: the embedded copy).
    pub data: Option<PathBuf>,
    /// Use only the first N training samples (and N / 5 validation samples): smoke runs.
    pub limit: Option<usize>,
    /// qqp: the architecture.
    pub arch: Arch,
    /// qqp: how pairs become ids.
    pub preprocess: Preprocess,
    /// qqp: refuse files with bad rows instead of skipping them.
    pub strict: bool,
}

fn bilstm(units: usize, return_sequences: bool) -> LayerConfig {
    BidirectionalConfig::new(LstmConfig::new(units).return_sequences(return_sequences)).into()
}

/// The seed tutorial's Keras model: Embedding(vocab, 64) -> BiLSTM(64, sequences) -> BiLSTM(32)
/// -> Dense(64, relu) -> Dropout(0.2) -> Dense(1, sigmoid), on the pair's 2 * len ids.
pub fn qqp_seed(vocab: usize, len: usize) -> SequentialConfig {
    let mut layers = qqp_encoder(vocab);
    layers.extend(qqp_head());
    SequentialConfig {
        input: vec![2 * len],
        layers,
    }
}

/// Beyond the seed: its model with BiGRU layers, Embedding(vocab, 64) -> BiGRU(64, sequences) ->
/// BiGRU(32) -> the seed's head, on the pair's 2 * len ids.
pub fn qqp_gru(vocab: usize, len: usize) -> SequentialConfig {
    let bigru = |units: usize, seq: bool| -> LayerConfig {
        BidirectionalConfig::new(GruConfig::new(units).return_sequences(seq)).into()
    };
    let mut layers = vec![
        EmbeddingConfig::new(vocab, 64).into(),
        bigru(64, true),
        bigru(32, false),
    ];
    layers.extend(qqp_head());
    SequentialConfig {
        input: vec![2 * len],
        layers,
    }
}

/// Embedding(vocab, 64) -> BiLSTM(64, sequences) -> BiLSTM(32): the seed's text encoder.
fn qqp_encoder(vocab: usize) -> Vec<LayerConfig> {
    vec![
        EmbeddingConfig::new(vocab, 64).into(),
        bilstm(64, true),
        bilstm(32, false),
    ]
}

/// Dense(64, relu) -> Dropout(0.2) -> Dense(1, sigmoid): the seed's classifier.
fn qqp_head() -> Vec<LayerConfig> {
    vec![
        dense(64, Activation::Relu),
        DropoutConfig::new(0.2).into(),
        dense(1, Activation::Sigmoid),
    ]
}

/// Beyond the seed: Embedding(vocab, 64, mask_zero) + PositionEmbedding -> TransformerEncoder
/// (128 wide, 4 heads of 16, dropout 0.1) -> GlobalAveragePooling1D (over the kept ids) -> the
/// seed's head, on the pair's 2 * len ids.
pub fn qqp_transformer(vocab: usize, len: usize) -> SequentialConfig {
    let mut layers: Vec<LayerConfig> = vec![
        EmbeddingConfig::new(vocab, 64).mask_zero(true).into(),
        PositionEmbeddingConfig::new(2 * len).into(),
        TransformerEncoderConfig::new(128, 4).dropout(0.1).into(),
        GlobalAveragePooling1dConfig::default().into(),
    ];
    layers.extend(qqp_head());
    SequentialConfig {
        input: vec![2 * len],
        layers,
    }
}

/// Beyond the seed: a text CNN, Embedding(vocab, 64) -> Conv1D(128, 5, relu) ->
/// GlobalMaxPooling1D -> the seed's head, on the pair's 2 * len ids.
pub fn qqp_cnn(vocab: usize, len: usize) -> SequentialConfig {
    let mut layers: Vec<LayerConfig> = vec![
        EmbeddingConfig::new(vocab, 64).into(),
        Conv1dConfig::new(128, 5)
            .activation(Activation::Relu)
            .into(),
        GlobalMaxPooling1dConfig::default().into(),
    ];
    layers.extend(qqp_head());
    SequentialConfig {
        input: vec![2 * len],
        layers,
    }
}

/// Beyond the seed: the same encoder shared by both questions, and the seed's head on
/// [u, v, |u - v|, u * v].
pub fn qqp_siamese(vocab: usize, len: usize) -> SiameseConfig {
    SiameseConfig {
        seq_len: len,
        encoder: qqp_encoder(vocab),
        head: qqp_head(),
    }
}

/// The seed's training settings: batch 16, 10 epochs, binary cross-entropy, Adam.
pub fn qqp_train_config(seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: 10,
        batch: 16,
        seed,
        loss: Some(LossKind::BinaryCrossentropy),
        optimizer: OptimizerConfig::adam(),
        schedule: None,
        clip: None,
        report_every: 50,
        metrics: vec![],
    }
}

fn qqp_job(seed: u64, opts: &JobOptions) -> Result<Job, String> {
    let path = opts.data.clone().unwrap_or_else(data::qqp::default_path);
    let prepared =
        data::qqp::prepare(&path, &opts.preprocess, opts.strict).map_err(|e| e.to_string())?;
    let vocab = prepared.tokenizer.vocab_size();
    let len = opts.preprocess.len;
    let model = match opts.arch {
        Arch::Seed => ModelConfig::Sequential(qqp_seed(vocab, len)),
        Arch::Siamese => ModelConfig::Siamese {
            siamese: qqp_siamese(vocab, len),
        },
        Arch::Transformer => ModelConfig::Sequential(qqp_transformer(vocab, len)),
        Arch::Cnn => ModelConfig::Sequential(qqp_cnn(vocab, len)),
        Arch::Gru => ModelConfig::Sequential(qqp_gru(vocab, len)),
    };
    let metadata = vec![
        ("vocabulary".to_string(), prepared.tokenizer.to_json()),
        (
            "qqp_preprocess".to_string(),
            serde_json::to_string(&opts.preprocess).expect("serializes"),
        ),
    ];
    Ok(Job {
        name: "qqp".into(),
        model,
        train: prepared.train.first(opts.limit),
        val: Some(prepared.val.first(opts.limit.map(|n| (n / 4).max(1)))),
        config: qqp_train_config(seed),
        metadata,
        data_report: Some(format!(
            "{} ({:?}): {}; {} words in the vocabulary",
            path.display(),
            prepared.format,
            prepared.report,
            prepared.tokenizer.words.len()
        )),
    })
}

/// The LeNet-style stack `kiln train mnist` trains: conv -> relu -> pool -> conv -> relu -> pool ->
/// dense -> dense (logits); with `Norm::Batch`, BatchNormalization before each hidden relu.
pub fn lenet(pool: Pool, norm: Norm) -> SequentialConfig {
    let pool = |size| match pool {
        Pool::Max => LayerConfig::from(MaxPool2dConfig::new(size)),
        Pool::Avg => AvgPool2dConfig::new(size).into(),
        Pool::Stochastic => StochasticPool2dConfig::new(size).into(),
    };
    // A layer's relu, after BatchNormalization over `axis` when asked.
    let relu = |layers: &mut Vec<LayerConfig>, axis: isize| match norm {
        Norm::None => {}
        Norm::Batch => {
            layers.push(BatchNormalizationConfig::new().axis(axis).into());
            layers.push(ActivationConfig::new(Activation::Relu).into());
        }
    };
    let act = match norm {
        Norm::None => Activation::Relu,
        Norm::Batch => Activation::Linear,
    };
    let mut layers = vec![];
    for filters in [32, 64] {
        layers.push(Conv2dConfig::new(filters, 3).activation(act).into());
        relu(&mut layers, 1);
        layers.push(pool(2));
    }
    layers.push(FlattenConfig::new().into());
    layers.push(dense(128, act));
    relu(&mut layers, -1);
    layers.push(DropoutConfig::new(0.25).into());
    layers.push(dense(10, Activation::Linear));
    SequentialConfig {
        input: vec![1, 28, 28],
        layers,
    }
}

/// The built-in job `name`, seeded by `seed`.
pub fn job(name: JobName, seed: u64, opts: &JobOptions) -> Result<Job, String> {
    if name == JobName::Qqp {
        return qqp_job(seed, opts);
    }
    if name == JobName::Mnist {
        let dir = opts.data.clone().unwrap_or_else(data::mnist::default_dir);
        let (train, test) = data::mnist::load(&dir).map_err(|e| e.to_string())?;
        let (train, test) = (
            train.first(opts.limit),
            test.first(opts.limit.map(|n| (n / 5).max(1))),
        );
        return Ok(Job {
            name: "mnist".into(),
            model: ModelConfig::Sequential(lenet(opts.pool, opts.norm)),
            train,
            val: Some(test),
            config: TrainConfig {
                epochs: 10,
                batch: 64,
                seed,
                loss: Some(LossKind::CategoricalCrossentropyFromLogits),
                optimizer: OptimizerConfig::adam(),
                schedule: None,
                clip: None,
                report_every: 50,
                metrics: vec![],
            },
            metadata: vec![],
            data_report: None,
        });
    }
    Ok(builtin(name, seed))
}

fn builtin(name: JobName, seed: u64) -> Job {
    match name {
        JobName::Spirals => {
            let (train, val) = data::spirals(200, seed).split(0.2, seed);
            Job {
                name: "spirals".into(),
                model: ModelConfig::Sequential(SequentialConfig {
                    input: vec![2],
                    layers: vec![
                        dense(64, Activation::Relu),
                        dense(64, Activation::Relu),
                        dense(1, Activation::Sigmoid),
                    ],
                }),
                train,
                val: Some(val),
                config: TrainConfig {
                    epochs: 60,
                    batch: 16,
                    seed,
                    loss: Some(LossKind::BinaryCrossentropy),
                    optimizer: OptimizerConfig::Adam {
                        lr: 0.01,
                        beta1: 0.9,
                        beta2: 0.999,
                        eps: 1e-7,
                    },
                    schedule: None,
                    clip: None,
                    report_every: 20,
                    metrics: vec![],
                },
                metadata: vec![],
                data_report: None,
            }
        }
        _ => Job {
            name: "xor".into(),
            model: ModelConfig::Sequential(SequentialConfig {
                input: vec![2],
                layers: vec![dense(8, Activation::Tanh), dense(1, Activation::Sigmoid)],
            }),
            train: data::xor(),
            val: None,
            config: TrainConfig {
                epochs: 300,
                batch: 4,
                seed,
                loss: Some(LossKind::BinaryCrossentropy),
                optimizer: OptimizerConfig::Adam {
                    lr: 0.05,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-7,
                },
                schedule: None,
                clip: None,
                report_every: 1,
                metrics: vec![],
            },
            metadata: vec![],
            data_report: None,
        },
    }
}

/// The default output folder of job `name`: for a new run the first free one of `runs/<name>`,
/// `runs/<name>-2`, ...; to resume, the newest of those that exists.
pub fn default_out(name: &str, resume: bool) -> PathBuf {
    let candidate = |k: usize| {
        PathBuf::from("runs").join(if k == 1 {
            name.to_string()
        } else {
            format!("{name}-{k}")
        })
    };
    let mut k = 1;
    while candidate(k).exists() {
        k += 1;
    }
    if resume && k > 1 {
        candidate(k - 1)
    } else {
        candidate(k)
    }
}
