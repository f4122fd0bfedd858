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

/// Any model `kiln` builds from a saved config: a Sequential stack or the siamese pair model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

impl ModelConfig {
    /// Builds the model, registering its parameters in `pb`.
    pub fn init(&self, pb: &ParamBuilder) -> kiln_graph::Result<Box<dyn Model>> {
        Ok(match self {
            ModelConfig::Sequential(c) => Box::new(c.init(pb)?),
            ModelConfig::Siamese { siamese } => Box::new(siamese.init(pb)?),
        })
    }
}

/// A model, its data and its defaults.
pub struct Job {
    pub name: &'static str,
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

pub const NAMES: [&str; 4] = ["mnist", "qqp", "spirals", "xor"];

/// Choices some jobs take.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// mnist: max, avg or stochastic.
    pub pool: Option<String>,
    /// mnist: a folder with the four IDX files (default: the embedded copy).
    pub data: Option<PathBuf>,
    /// Use only the first N training samples (and N / 5 validation samples): smoke runs.
    pub limit: Option<usize>,
    /// qqp: seed (the tutorial's stack) or siamese (a shared encoder).
    pub arch: Option<String>,
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
    let model = match opts.arch.as_deref().unwrap_or("seed") {
        "seed" => ModelConfig::Sequential(qqp_seed(vocab, len)),
        "siamese" => ModelConfig::Siamese {
            siamese: qqp_siamese(vocab, len),
        },
        other => return Err(format!("unknown --arch `{other}`; choose seed or siamese")),
    };
    let metadata = vec![
        ("vocabulary".to_string(), prepared.tokenizer.to_json()),
        (
            "qqp_preprocess".to_string(),
            serde_json::to_string(&opts.preprocess).expect("serializes"),
        ),
    ];
    Ok(Job {
        name: "qqp",
        model,
        train: first(prepared.train, opts.limit),
        val: Some(first(prepared.val, opts.limit.map(|n| (n / 4).max(1)))),
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

/// The first `n` samples of `d` (all when `n` is None or larger).
pub fn first(d: Dataset, n: Option<usize>) -> Dataset {
    d.first(n)
}

/// The LeNet-style stack `kiln train mnist` trains: conv -> relu -> pool -> conv -> relu -> pool ->
/// dense -> dense (logits).
pub fn lenet(pool: &str) -> Result<SequentialConfig, String> {
    let pool = |size| match pool {
        "max" => Ok(LayerConfig::from(MaxPool2dConfig::new(size))),
        "avg" => Ok(AvgPool2dConfig::new(size).into()),
        "stochastic" => Ok(StochasticPool2dConfig::new(size).into()),
        other => Err(format!(
            "unknown pooling `{other}`; choose max, avg or stochastic"
        )),
    };
    let conv = |filters| -> LayerConfig {
        Conv2dConfig::new(filters, 3)
            .activation(Activation::Relu)
            .into()
    };
    Ok(SequentialConfig {
        input: vec![1, 28, 28],
        layers: vec![
            conv(32),
            pool(2)?,
            conv(64),
            pool(2)?,
            FlattenConfig::new().into(),
            dense(128, Activation::Relu),
            DropoutConfig::new(0.25).into(),
            dense(10, Activation::Linear),
        ],
    })
}

/// The job called `name` (seeded by `seed`); Ok(None) for an unknown name.
pub fn job(name: &str, seed: u64, opts: &JobOptions) -> Result<Option<Job>, String> {
    if name == "qqp" {
        return qqp_job(seed, opts).map(Some);
    }
    if name == "mnist" {
        let dir = opts.data.clone().unwrap_or_else(data::mnist::default_dir);
        let (train, test) = data::mnist::load(&dir).map_err(|e| e.to_string())?;
        let (train, test) = (
            first(train, opts.limit),
            first(test, opts.limit.map(|n| (n / 5).max(1))),
        );
        return Ok(Some(Job {
            name: "mnist",
            model: ModelConfig::Sequential(lenet(opts.pool.as_deref().unwrap_or("max"))?),
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
        }));
    }
    Ok(builtin(name, seed))
}

fn builtin(name: &str, seed: u64) -> Option<Job> {
    match name {
        "spirals" => {
            let (train, val) = data::spirals(200, seed).split(0.2, seed);
            Some(Job {
                name: "spirals",
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
            })
        }
        "xor" => Some(Job {
            name: "xor",
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
        }),
        _ => None,
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
