//! Burn's training step on kiln's two built-in models, for a one-run comparison on the same
//! adapter (`benches/results/burn-vs-kiln/run.sh`). Not part of kiln's workspace; CI never
//! builds it.
//!
//!     cargo run --release -- [--steps N] [--json FILE]
//!
//! The models match `kiln::models`:
//! - LeNet (`kiln train mnist`): conv 3x3 (32) + relu, max pool 2, conv 3x3 (64) + relu, max
//!   pool 2, dense 128 + relu, dropout 0.25, dense 10; softmax cross-entropy, Adam, batch 64.
//! - The seed model (`kiln train qqp`): embedding (13,326 words, 64), BiLSTM(64, sequences),
//!   BiLSTM(32), dense 64 + relu, dropout 0.2, dense 1; binary cross-entropy on the logit,
//!   Adam, batch 16, T = 62.
//!
//! Inputs are random (the step's time does not depend on the values). Each step is a forward
//! pass, backward, the Adam update and a device sync; the median of `--steps` steps after two
//! warm-up steps is reported.

use std::time::Instant;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::{BinaryCrossEntropyLossConfig, CrossEntropyLossConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BiLstm, BiLstmConfig, Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear,
    LinearConfig, Relu,
};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;

#[derive(Module, Debug)]
struct LeNet {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
    relu: Relu,
}

impl LeNet {
    fn new(device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([1, 32], [3, 3]).init(device),
            conv2: Conv2dConfig::new([32, 64], [3, 3]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc1: LinearConfig::new(64 * 5 * 5, 128).init(device),
            dropout: DropoutConfig::new(0.25).init(),
            fc2: LinearConfig::new(128, 10).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(self.relu.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.relu.forward(self.conv2.forward(x)));
        let x: Tensor<2> = x.flatten(1, 3);
        let x = self.dropout.forward(self.relu.forward(self.fc1.forward(x)));
        self.fc2.forward(x)
    }
}

#[derive(Module, Debug)]
struct Seed {
    embedding: Embedding,
    lstm1: BiLstm,
    lstm2: BiLstm,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
    relu: Relu,
}

impl Seed {
    fn new(device: &Device, vocab: usize) -> Self {
        Self {
            embedding: EmbeddingConfig::new(vocab, 64).init(device),
            lstm1: BiLstmConfig::new(64, 64, true).init(device),
            lstm2: BiLstmConfig::new(128, 32, true).init(device),
            fc1: LinearConfig::new(64, 64).init(device),
            dropout: DropoutConfig::new(0.2).init(),
            fc2: LinearConfig::new(64, 1).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let [batch, _] = ids.dims();
        let x = self.embedding.forward(ids);
        let (y, _) = self.lstm1.forward(x, None);
        // The second layer returns its last states only, as Keras's Bidirectional does:
        // (2, B, 32) -> (B, 64).
        let (_, state) = self.lstm2.forward(y, None);
        let h: Tensor<2> = state.hidden.swap_dims(0, 1).reshape([batch, 64]);
        let x = self.dropout.forward(self.relu.forward(self.fc1.forward(h)));
        self.fc2.forward(x)
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs `step` twice to warm up, then `steps` times; returns each timed step's milliseconds.
fn time_steps(steps: usize, device: &Device, mut step: impl FnMut()) -> Vec<f64> {
    for _ in 0..2 {
        step();
        device.sync().expect("device sync");
    }
    (0..steps)
        .map(|_| {
            let t = Instant::now();
            step();
            device.sync().expect("device sync");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    let mut steps = 5usize;
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--steps" => steps = args.next().and_then(|s| s.parse().ok()).expect("--steps N"),
            "--json" => json = Some(args.next().expect("--json FILE")),
            other => panic!("unknown argument {other}; usage: [--steps N] [--json FILE]"),
        }
    }
    let device = Device::wgpu(DeviceKind::DefaultDevice).autodiff();

    // LeNet, batch 64.
    let mut lenet = LeNet::new(&device);
    let mut adam = AdamConfig::new().init();
    let images = Tensor::<4>::random([64, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    let labels = Tensor::<1, Int>::from_ints(
        TensorData::new((0..64).map(|i| (i % 10) as i64).collect::<Vec<_>>(), [64]),
        &device,
    );
    let ce = CrossEntropyLossConfig::new().init(&device);
    let lenet_ms = time_steps(steps, &device, || {
        let model = lenet.clone();
        let loss = ce.forward(model.forward(images.clone()), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        lenet = adam.step(1e-3, model, grads);
    });

    // The seed model, batch 16, T = 62.
    let (batch, len, vocab) = (16, 62, 13_326);
    let mut seed = Seed::new(&device, vocab);
    let mut adam = AdamConfig::new().init();
    let ids = Tensor::<2, Int>::from_ints(
        TensorData::new(
            (0..batch * len)
                .map(|i| ((i * 7919) % (vocab - 1) + 1) as i64)
                .collect::<Vec<_>>(),
            [batch, len],
        ),
        &device,
    );
    let targets = Tensor::<2, Int>::from_ints(
        TensorData::new((0..batch).map(|i| (i % 2) as i64).collect::<Vec<_>>(), [batch, 1]),
        &device,
    );
    let bce = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(&device);
    let seed_ms = time_steps(steps, &device, || {
        let model = seed.clone();
        let loss = bce.forward(model.forward(ids.clone()), targets.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        seed = adam.step(1e-3, model, grads);
    });

    let lenet_step = median(lenet_ms.clone());
    let seed_step = median(seed_ms.clone());
    let out = serde_json::json!({
        "framework": "burn 0.22.1 (wgpu backend, autodiff)",
        "device": format!("{device:?}"),
        "steps": steps,
        "lenet": {
            "batch": 64,
            "step_ms_median": lenet_step,
            "images_per_s": 64.0 * 1e3 / lenet_step,
            "step_ms": lenet_ms,
        },
        "seed": {
            "batch": batch,
            "steps_t": len,
            "step_ms_median": seed_step,
            "step_ms": seed_ms,
        },
    });
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Some(path) = json {
        std::fs::write(&path, text + "\n").expect("write --json file");
    }
}
