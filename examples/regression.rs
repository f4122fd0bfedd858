//! Regression with mean squared error: an MLP learns y = sin(2 x0) + x1^2 / 2 on [-1, 1]^2.
//!
//!     cargo run --release --example regression
//!
//! Dense(32, tanh) -> Dense(32, tanh) -> Dense(1), MSE, Adam(0.01), 40 epochs of 1,024 points.
//! The validation mean absolute error falls below 0.05 (the targets span about 2); the example
//! fails otherwise.

use kiln::device::Device;
use kiln::graph::layers::DenseConfig;
use kiln::graph::{Activation, LossKind, OptimizerConfig, ParamBuilder, SequentialConfig};
use kiln::train::{evaluate, fit, Column, Dataset, RunOptions, TrainConfig};

fn points(n: usize, seed: u64) -> Dataset {
    let x = kiln::device::testing::random_f32(seed, n * 2, -1.0, 1.0);
    let y = x
        .chunks(2)
        .map(|p| (2.0 * p[0]).sin() + 0.5 * p[1] * p[1])
        .collect();
    Dataset::single(Column::f32(x, &[2]), Column::f32(y, &[1]))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::from_env()?;
    let (train, val) = (points(1024, 1), points(256, 2));
    let pb = ParamBuilder::new(0);
    let model = SequentialConfig::new(&[2])
        .add(DenseConfig::new(32).activation(Activation::Tanh))
        .add(DenseConfig::new(32).activation(Activation::Tanh))
        .add(DenseConfig::new(1))
        .init(&pb)?;
    let params = pb.build(&device)?;
    let loss = LossKind::MeanSquaredError;
    let config = TrainConfig::new(loss)
        .epochs(40)
        .batch(32)
        .optimizer(OptimizerConfig::adam().with_lr(0.01));
    let opts = RunOptions {
        verbose: 2,
        ..Default::default()
    };
    let trained = fit(&model, &params, &train, Some(&val), &config, &opts)?;
    let (mse, mae) = evaluate(&model, &params, &val, 256, &loss)?;
    let mae = mae.unwrap_or(f32::INFINITY); // mean squared error reports the mae
    println!(
        "validation mse {mse:.5}, mae {mae:.4} on {} (history metric: {})",
        device.name(),
        trained.history.metric.as_deref().unwrap_or("none")
    );
    if mae < 0.05 {
        Ok(())
    } else {
        Err(format!("validation MAE {mae:.4} is not below 0.05").into())
    }
}
