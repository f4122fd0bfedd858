//! A model of your own: two inputs, a shared encoder, trained, saved, reloaded, predicted.
//!
//!     cargo run --release --example custom_model
//!
//! Task: two 4-vectors a and b; the label is 1 when they point the same way (a · b > 0). The model
//! encodes both with one Dense(16, tanh) and classifies [|ea - eb|, ea * eb] with a small head.
//! It reaches at least 90% validation accuracy, is saved to runs/example-custom/model.safetensors,
//! reloaded into a freshly built model, and predicts the same values.

use kiln::device::Device;
use kiln::graph::layers::{Dense, DenseConfig};
use kiln::graph::{Activation::*, Layer, LossKind, Model, ParamBuilder, ParamStore, Result};
use kiln::graph::{Tape, Var};
use kiln::train::{evaluate, fit, predict, save_model, Column, Dataset, RunOptions, TrainConfig};

struct PairModel {
    encoder: Dense,
    hidden: Dense,
    out: Dense,
}

impl PairModel {
    fn new(pb: &ParamBuilder) -> Result<Self> {
        Ok(PairModel {
            encoder: DenseConfig::new(16)
                .activation(Tanh)
                .init(&pb.pp("encoder"), &[4])?,
            hidden: DenseConfig::new(16)
                .activation(Relu)
                .init(&pb.pp("hidden"), &[32])?,
            out: DenseConfig::new(1)
                .activation(Sigmoid)
                .init(&pb.pp("out"), &[16])?,
        })
    }
}

impl Model for PairModel {
    fn forward(&self, tape: &Tape, params: &ParamStore, inputs: &[Var]) -> Result<Var> {
        let ea = self.encoder.forward(tape, params, &inputs[0])?;
        let eb = self.encoder.forward(tape, params, &inputs[1])?;
        let diff = tape.unary(kiln::device::UnaryOp::Abs, &tape.sub(&ea, &eb)?)?;
        let features = tape.concat(&[&diff, &tape.mul(&ea, &eb)?], 1)?;
        self.out
            .forward(tape, params, &self.hidden.forward(tape, params, &features)?)
    }
}

/// `n` seeded pairs: (a, b, label a · b > 0).
fn pairs(n: usize, seed: u64) -> Dataset {
    let v = kiln::device::testing::random_f32(seed, n * 8, -1.0, 1.0);
    let (a, b): (Vec<_>, Vec<_>) = v
        .chunks(8)
        .map(|c| (c[..4].to_vec(), c[4..].to_vec()))
        .unzip();
    let y: Vec<f32> = a
        .iter()
        .zip(&b)
        .map(|(a, b)| (a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() > 0.0) as u8 as f32)
        .collect();
    let col = |v: Vec<Vec<f32>>| Column::f32(v.concat(), &[4]);
    Dataset::new(vec![col(a), col(b)], Column::f32(y, &[1]))
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let device = Device::from_env()?;
    let (train, val) = (pairs(2048, 1), pairs(512, 2));
    let pb = ParamBuilder::new(0);
    let model = PairModel::new(&pb)?;
    let params = pb.build(&device)?;
    let config = TrainConfig::new(LossKind::BinaryCrossentropy)
        .epochs(15)
        .batch(32);
    let opts = RunOptions {
        verbose: 2,
        ..Default::default()
    };
    fit(&model, &params, &train, Some(&val), &config, &opts)?;
    let (_, accuracy) = evaluate(&model, &params, &val, 256, &LossKind::BinaryCrossentropy)?;
    let accuracy = accuracy.unwrap_or(0.0); // binary cross-entropy reports accuracy
    println!("validation accuracy {accuracy:.4} on {}", device.name());

    let path = std::path::Path::new("runs/example-custom/model.safetensors");
    save_model(path, &model, &params, &[])?;
    let pb2 = ParamBuilder::new(99); // other initial values, replaced by the file's
    let reloaded = PairModel::new(&pb2)?;
    let params2 = pb2.build(&device)?;
    params2.load_weights(path)?; // by name and shape, strictly
    let (p1, _) = predict(&model, &params, &val.inputs, 256)?;
    let (p2, _) = predict(&reloaded, &params2, &val.inputs, 256)?;
    println!("first predictions {:?}, reloaded {:?}", &p1[..3], &p2[..3]);
    if accuracy < 0.9 || p1 != p2 {
        return Err("the model did not learn, or the reloaded model predicts differently".into());
    }
    Ok(())
}
