//! A small MLP learns XOR to 100% training accuracy, on the chosen device, through the library
//! alone: layers, `Sequential`, `fit`, `predict`.
//!
//!     cargo run --release --example xor
//!     KILN_DEVICE=cpu cargo run --release --example xor
//!
//! Dense(8, tanh) -> Dense(1, sigmoid), binary cross-entropy, Adam (lr 0.05), 300 epochs of the four
//! points. Writes nothing: a run with no output folder keeps its history in memory.

use kiln::device::Device;
use kiln::graph::layers::DenseConfig;
use kiln::graph::{Activation, LossKind, OptimizerConfig, ParamBuilder, SequentialConfig};
use kiln::train::{evaluate, fit, predict, Column, Dataset, RunOptions, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::from_env()?;
    let x = Column::f32(vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[2]);
    let data = Dataset::single(x.clone(), Column::f32(vec![0.0, 1.0, 1.0, 0.0], &[1]));

    let pb = ParamBuilder::new(3);
    let model = SequentialConfig::new(&[2])
        .add(DenseConfig::new(8).activation(Activation::Tanh))
        .add(DenseConfig::new(1).activation(Activation::Sigmoid))
        .init(&pb)?;
    let params = pb.build(&device)?;
    println!(
        "device: {}\n{}",
        device.name(),
        model.summary_table(&params)
    );

    let loss = LossKind::BinaryCrossentropy;
    let config = TrainConfig::new(loss)
        .epochs(300)
        .batch(4)
        .seed(3)
        .optimizer(OptimizerConfig::adam().with_lr(0.05));
    // No output folder and verbose 0: nothing is written or printed.
    fit(
        &model,
        &params,
        &data,
        None,
        &config,
        &RunOptions::default(),
    )?;

    let (l, accuracy) = evaluate(&model, &params, &data, 4, &loss)?;
    let accuracy = accuracy.unwrap_or(0.0); // binary cross-entropy reports accuracy
    let (p, _) = predict(&model, &params, &[x], 4)?;
    for (i, (a, b)) in [(0, 0), (0, 1), (1, 0), (1, 1)].iter().enumerate() {
        println!("{a} xor {b} -> {:.4}", p[i]);
    }
    println!("loss {l:.5}, accuracy {accuracy:.2}");
    if accuracy == 1.0 {
        Ok(())
    } else {
        Err("XOR was not learned".into())
    }
}
