//! Data parallelism over several devices of one process (`Replicas`): N replicas train what one
//! process with the same global batch trains, random draws included.

use kiln_device::testing::random_f32;
use kiln_device::Device;
use kiln_graph::layers::*;
use kiln_graph::{
    train_step, Activation, Batch, LossKind, Optimizer, OptimizerConfig, ParamBuilder, Replicas,
    Shard, Tape,
};

const STEPS: u64 = 20;
const SEED: u64 = 5;

/// A small seed model: masked embedding, BiLSTM with sequences, BiLSTM, dense, dropout, sigmoid.
fn recurrent() -> SequentialConfig {
    SequentialConfig::new(&[6])
        .add(EmbeddingConfig::new(20, 4).mask_zero(true))
        .add(BidirectionalConfig::new(
            LstmConfig::new(5).return_sequences(true),
        ))
        .add(BidirectionalConfig::new(LstmConfig::new(3)))
        .add(DenseConfig::new(8).activation(Activation::Relu))
        .add(DropoutConfig::new(0.2))
        .add(DenseConfig::new(1).activation(Activation::Sigmoid))
}

/// A small LeNet: conv, stochastic pooling (a random draw per window), conv, max pooling,
/// dense, dropout, softmax.
fn lenet() -> SequentialConfig {
    SequentialConfig::new(&[1, 10, 10])
        .add(Conv2dConfig::new(3, 3).activation(Activation::Relu))
        .add(StochasticPool2dConfig::new(2))
        .add(Conv2dConfig::new(4, 2).activation(Activation::Relu))
        .add(MaxPool2dConfig::new(2))
        .add(FlattenConfig::new())
        .add(DenseConfig::new(12).activation(Activation::Relu))
        .add(DropoutConfig::new(0.5))
        .add(DenseConfig::new(3).activation(Activation::Softmax))
}

/// Global batch `step` of `batch` samples for the model, on `d`.
fn batch(d: &Device, config: &SequentialConfig, batch: usize, step: u64) -> Batch {
    if config.input == [6] {
        // Ids with padding (zeros) at the end of some rows.
        let ids: Vec<u32> = (0..batch * 6)
            .map(|i| {
                let (row, t) = (i / 6, i % 6);
                if t >= 6 - (row + step as usize) % 3 {
                    0
                } else {
                    ((i as u64 * 7 + step * 3) % 19 + 1) as u32
                }
            })
            .collect();
        let target: Vec<f32> = (0..batch)
            .map(|i| ((i + step as usize) % 2) as f32)
            .collect();
        Batch {
            inputs: vec![d.from_u32(&ids, &[batch, 6]).unwrap()],
            target: d.from_f32(&target, &[batch, 1]).unwrap(),
        }
    } else {
        let x = random_f32(100 + step, batch * 100, 0.0, 1.0);
        let target: Vec<f32> = (0..batch * 3)
            .map(|i| ((i % 3) == (i / 3 + step as usize) % 3) as u32 as f32)
            .collect();
        Batch {
            inputs: vec![d.from_f32(&x, &[batch, 1, 10, 10]).unwrap()],
            target: d.from_f32(&target, &[batch, 3]).unwrap(),
        }
    }
}

fn loss_for(config: &SequentialConfig) -> LossKind {
    if config.input == [6] {
        LossKind::BinaryCrossentropy
    } else {
        LossKind::CategoricalCrossentropy
    }
}

/// Every parameter after `STEPS` steps of one process.
fn single(config: &SequentialConfig, global: usize) -> Vec<(String, Vec<f32>)> {
    let d = Device::cpu();
    let b = ParamBuilder::new(3);
    let model = config.init(&b).unwrap();
    let params = b.build(&d).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adam(), &params).unwrap();
    for step in 0..STEPS {
        let data = batch(&d, config, global, step);
        train_step(&model, &params, &mut opt, &loss_for(config), &data, SEED).unwrap();
    }
    host(params.to_host().unwrap())
}

/// Every parameter after `STEPS` steps of `replicas` CPU devices on the same global batches
/// (each replica must hold the first's values).
fn parallel(config: &SequentialConfig, global: usize, replicas: usize) -> Vec<(String, Vec<f32>)> {
    let devices: Vec<Device> = (0..replicas).map(|_| Device::cpu()).collect();
    let b = ParamBuilder::new(3);
    let model = config.init(&b).unwrap();
    let params = b.build(&devices[0]).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adam(), &params).unwrap();
    let mut others = Replicas::new(&params, &opt, &devices[1..]).unwrap();
    for step in 0..STEPS {
        let data = batch(&devices[0], config, global, step);
        let out = others
            .step(&model, (&params, &mut opt), &loss_for(config), &data, SEED)
            .unwrap();
        assert!(devices[0].to_f32(&out.loss).unwrap()[0].is_finite());
        assert_eq!(out.pred.shape()[0], global, "every sample predicted once");
    }
    let first = host(params.to_host().unwrap());
    for r in others.others() {
        assert_eq!(
            host(r.params.to_host().unwrap()),
            first,
            "replicas diverged"
        );
        assert_eq!(r.optimizer.steps(), STEPS);
    }
    first
}

fn host(tensors: Vec<kiln_graph::checkpoint::NamedTensor>) -> Vec<(String, Vec<f32>)> {
    tensors.into_iter().map(|(n, _, v)| (n, v)).collect()
}

fn assert_close(what: &str, a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) {
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(b) {
        for (i, (x, y)) in x.iter().zip(y).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "{what}: {name}[{i}]: {x} against one process's {y}"
            );
        }
    }
}

#[test]
fn replicas_train_what_one_process_trains() {
    for (name, config) in [("recurrent", recurrent()), ("lenet", lenet())] {
        let one = single(&config, 7);
        // Shares of 4 and 3, and of 3, 2 and 2.
        for replicas in [2, 3] {
            let what = format!("{name} on {replicas} replicas");
            assert_close(&what, &parallel(&config, 7, replicas), &one);
        }
    }
}

#[test]
fn one_replica_is_the_plain_step_bit_for_bit() {
    for config in [recurrent(), lenet()] {
        assert_eq!(parallel(&config, 5, 1), single(&config, 5));
    }
}

#[test]
fn a_batch_smaller_than_the_replicas_leaves_some_idle() {
    let config = lenet();
    assert_close(
        "2 samples on 3 replicas",
        &parallel(&config, 2, 3),
        &single(&config, 2),
    );
}

#[test]
fn shares_are_contiguous_and_in_sample_order() {
    let d = Device::cpu();
    let b = ParamBuilder::new(1);
    let model = SequentialConfig::new(&[2])
        .add(DenseConfig::new(1))
        .init(&b)
        .unwrap();
    let params = b.build(&d).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adam(), &params).unwrap();
    let mut others = Replicas::new(&params, &opt, &[Device::cpu(), Device::cpu()]).unwrap();
    assert_eq!(others.count(), 3);
    let spans: Vec<_> = others
        .shards(8)
        .iter()
        .map(|s| (s.start, s.len, s.global))
        .collect();
    assert_eq!(spans, [(0, 3, 8), (3, 3, 8), (6, 2, 8)]);
    let ragged = Batch {
        inputs: vec![d.zeros(&[3, 2]).unwrap()],
        target: d.zeros(&[4, 1]).unwrap(),
    };
    let loss = LossKind::MeanSquaredError;
    let err = others
        .step(&model, (&params, &mut opt), &loss, &ragged, 1)
        .unwrap_err();
    assert!(err.to_string().contains("batch-first"), "{err}");
}

#[test]
fn a_random_draw_that_is_not_batch_first_is_refused_under_a_shard() {
    let d = Device::cpu();
    let shard = Shard {
        start: 3,
        len: 3,
        global: 6,
    };
    let tape = Tape::training_shard(&d, 1, 0, shard);
    let x = tape.constant(d.from_f32(&[1.0; 8], &[4, 2]).unwrap());
    let err = tape.dropout(&x, 0.5).unwrap_err();
    assert!(err.to_string().contains("batch-first"), "{err}");
    // A batch-first one draws the whole batch's values for samples 3..6.
    let whole = Tape::training(&d, 1, 0);
    let all = whole
        .dropout(&whole.constant(d.full(&[6, 4], 1.0).unwrap()), 0.5)
        .unwrap();
    let part = tape
        .dropout(&tape.constant(d.full(&[3, 4], 1.0).unwrap()), 0.5)
        .unwrap();
    let (all, part) = (
        d.to_f32(all.value()).unwrap(),
        d.to_f32(part.value()).unwrap(),
    );
    assert_eq!(part, all[12..]);
}
