//! The models `kiln train` knows, with their default training settings.

use std::path::PathBuf;

use kiln_graph::layers::{
    AvgPool2dConfig, BidirectionalConfig, Conv2dConfig, DenseConfig, DropoutConfig,
    EmbeddingConfig, FlattenConfig, LstmConfig, MaxPool2dConfig, StochasticPool2dConfig,
};
use kiln_graph::{
    Activation, LayerConfig, LossKind, LstmPath, Model, OptimizerConfig, ParamBuilder,
    SequentialConfig,
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

/// What the data side needs to know of a model, read from its config without allocating.
#[derive(Clone, Debug, PartialEq)]
pub struct Outline {
    /// Per-sample input shape.
    pub input: Vec<usize>,
    /// Whether the input is token ids (the model starts with an embedding).
    pub takes_ids: bool,
    /// The embedding's rows, when it starts with one.
    pub vocab: Option<usize>,
    /// Output values per sample.
    pub outputs: usize,
    /// The last layer's activation (linear when it has none).
    pub activation: Activation,
}

fn last_activation(layers: &[LayerConfig]) -> Activation {
    match layers.last() {
        Some(LayerConfig::Dense(d)) => d.activation,
        Some(LayerConfig::Activation(a)) => a.activation,
        _ => Activation::Linear,
    }
}

impl ModelConfig {
    /// Reads the model from JSON text (a model file), with errors that name the layer or field.
    pub fn from_json(text: &str) -> Result<ModelConfig, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
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

/// Loads a model file written by `kiln train`: the config is built and checked against the
/// stored tensors' names, shapes and values before anything is allocated (an edited config
/// whose sizes the tensors do not have is refused, not allocated), then the weights are loaded.
pub fn load_saved(device: &kiln_device::Device, path: &std::path::Path) -> Result<Saved, String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let (config, checkpoint) =
        kiln_train::load_model::<ModelConfig>(path).map_err(|e| e.to_string())?;
    let outline = config.outline().map_err(at)?;
    let b = ParamBuilder::new(0);
    let model = config.init(&b).map_err(|e| at(e.to_string()))?;
    b.check(&checkpoint.params).map_err(|e| at(e.to_string()))?;
    let params = b.build(device).map_err(|e| at(e.to_string()))?;
    params
        .load(&checkpoint.params)
        .map_err(|e| at(e.to_string()))?;
    Ok(Saved {
        model,
        params,
        outline,
        checkpoint,
    })
}

/// A model, its data and its defaults.
pub struct Job {
    pub name: String,
    pub model: ModelConfig,
    pub train: Dataset,
    pub val: Option<Dataset>,
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

/// qqp's architecture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// The seed tutorial's model on the two questions' ids one after the other.
    #[default]
    Seed,
    /// One BiLSTM encoder shared by both questions, the seed's head on [u, v, |u - v|, u * v].
    Siamese,
}

/// Choices some jobs take.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// mnist: the pooling.
    pub pool: Pool,
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
    /// Run LSTM layers fused (default) or unfused.
    pub lstm_path: LstmPath,
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
        loss: LossKind::BinaryCrossentropy,
        optimizer: OptimizerConfig::adam(),
        report_every: 50,
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
/// dense -> dense (logits).
pub fn lenet(pool: Pool) -> SequentialConfig {
    let pool = |size| match pool {
        Pool::Max => LayerConfig::from(MaxPool2dConfig::new(size)),
        Pool::Avg => AvgPool2dConfig::new(size).into(),
        Pool::Stochastic => StochasticPool2dConfig::new(size).into(),
    };
    let conv = |filters| -> LayerConfig {
        Conv2dConfig::new(filters, 3)
            .activation(Activation::Relu)
            .into()
    };
    SequentialConfig {
        input: vec![1, 28, 28],
        layers: vec![
            conv(32),
            pool(2),
            conv(64),
            pool(2),
            FlattenConfig::new().into(),
            dense(128, Activation::Relu),
            DropoutConfig::new(0.25).into(),
            dense(10, Activation::Linear),
        ],
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
            model: ModelConfig::Sequential(lenet(opts.pool)),
            train,
            val: Some(test),
            config: TrainConfig {
                epochs: 10,
                batch: 64,
                seed,
                loss: LossKind::CategoricalCrossentropyFromLogits,
                optimizer: OptimizerConfig::adam(),
                report_every: 50,
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
                    loss: LossKind::BinaryCrossentropy,
                    optimizer: OptimizerConfig::Adam {
                        lr: 0.01,
                        beta1: 0.9,
                        beta2: 0.999,
                        eps: 1e-7,
                    },
                    report_every: 20,
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
                loss: LossKind::BinaryCrossentropy,
                optimizer: OptimizerConfig::Adam {
                    lr: 0.05,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-7,
                },
                report_every: 1,
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
