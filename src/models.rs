//! The models `kiln train` knows, with their default training settings.

use std::path::PathBuf;

use kiln_graph::{
    Activation, Dataset, LayerConfig, LossKind, OptimizerConfig, SequentialConfig, TrainConfig,
};

use crate::data;

/// A model, its data and its defaults.
pub struct Job {
    pub name: &'static str,
    pub model: SequentialConfig,
    pub train: Dataset,
    pub val: Option<Dataset>,
    pub config: TrainConfig,
}

fn dense(units: usize, activation: Activation) -> LayerConfig {
    LayerConfig::Dense {
        units,
        activation,
        use_bias: true,
    }
}

pub const NAMES: [&str; 2] = ["spirals", "xor"];

/// The job called `name` (seeded by `seed`), or None.
pub fn job(name: &str, seed: u64) -> Option<Job> {
    match name {
        "spirals" => {
            let (train, val) = data::spirals(200, seed).split(0.2, seed);
            Some(Job {
                name: "spirals",
                model: SequentialConfig {
                    input: vec![2],
                    layers: vec![
                        dense(64, Activation::Relu),
                        dense(64, Activation::Relu),
                        dense(1, Activation::Sigmoid),
                    ],
                },
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
            })
        }
        "xor" => Some(Job {
            name: "xor",
            model: SequentialConfig {
                input: vec![2],
                layers: vec![dense(8, Activation::Tanh), dense(1, Activation::Sigmoid)],
            },
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
        }),
        _ => None,
    }
}

/// `runs/<name>` unless given.
pub fn default_out(name: &str) -> PathBuf {
    PathBuf::from("runs").join(name)
}
