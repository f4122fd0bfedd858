//! The layer and the op from outside kiln: gradients by finite differences, the layer in a
//! `SequentialConfig`, a run that learns, a saved model reloaded from its file by the layer's
//! registered name, with the same predictions.

use kiln::device::testing::{random_f32, Tolerance};
use kiln::graph::testing::{check_input_gradients, check_param_gradients};
use kiln::prelude::*;
use kiln_ext_layers::{ChannelSwishConfig, Swish};

/// Two interleaved half moons, labels 0 and 1.
fn moons(n: usize, seed: u64) -> Dataset {
    let noise = random_f32(seed, 2 * n, -0.1, 0.1);
    let mut x = vec![];
    let mut y = vec![];
    for i in 0..n {
        let t = std::f32::consts::PI * (i / 2) as f32 / (n / 2) as f32;
        let (px, py, label) = if i % 2 == 0 {
            (t.cos(), t.sin(), 0.0)
        } else {
            (1.0 - t.cos(), 0.5 - t.sin(), 1.0)
        };
        x.push(px + noise[2 * i]);
        x.push(py + noise[2 * i + 1]);
        y.push(label);
    }
    Dataset::single(Column::f32(x, &[2]), Column::f32(y, &[1]))
}

fn model() -> SequentialConfig {
    SequentialConfig::new(&[2])
        .add(DenseConfig::new(16))
        .add(ChannelSwishConfig {})
        .add(DenseConfig::new(1).activation(Activation::Sigmoid))
}

#[test]
fn the_op_and_the_layer_have_the_gradients_finite_differences_give() {
    let d = Device::cpu();
    let x = d.from_f32(&random_f32(1, 12, -2.0, 2.0), &[3, 4]).unwrap();
    let tol = Tolerance::new(2e-3, 2e-2);
    check_input_gradients("swish", &d, &[x], 3e-3, tol, |t, v| {
        let y = t.custom1(Swish, &[&v[0]]).unwrap();
        t.mean(&t.square(&y).unwrap()).unwrap()
    });
    let pb = ParamBuilder::new(2);
    let net = model().init(&pb).unwrap();
    let params = pb.build(&d).unwrap();
    let xs = random_f32(3, 8, -1.0, 1.0);
    check_param_gradients("model", &params, 3e-3, tol, |t| {
        let x = t.constant(d.from_f32(&xs, &[4, 2]).unwrap());
        let y = net.forward(t, &params, &x).unwrap();
        t.mean(&t.square(&y).unwrap()).unwrap()
    });
}

#[test]
fn a_model_with_the_layer_learns_saves_and_reloads_by_its_registered_name() {
    let d = Device::cpu();
    let (train, val) = (moons(200, 4), moons(80, 5));
    let pb = ParamBuilder::new(6);
    let net = model().init(&pb).unwrap();
    let params = pb.build(&d).unwrap();
    let config = TrainConfig::new(LossKind::BinaryCrossentropy)
        .epochs(60)
        .batch(16)
        .optimizer(OptimizerConfig::adam().with_lr(0.02));
    let trained = fit(&net, &params, &train, Some(&val), &config, &RunOptions::default()).unwrap();
    let accuracy = trained.history.epochs.last().unwrap().val_metric.unwrap();
    assert!(accuracy > 0.9, "validation accuracy {accuracy}");

    let dir = std::env::temp_dir().join(format!("kiln-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    save_model(&path, &net, &params, &[]).unwrap();
    // Reading the file's config needs the layer's name registered.
    let err = load_model::<SequentialConfig>(&path).unwrap_err().to_string();
    assert!(err.contains("unknown layer type `channel_swish`"), "{err}");
    kiln_ext_layers::register().unwrap();
    let (config, checkpoint) = load_model::<SequentialConfig>(&path).unwrap();
    assert_eq!(config, model());
    let pb2 = ParamBuilder::new(99);
    let reloaded = config.init(&pb2).unwrap();
    let params2 = pb2.build(&d).unwrap();
    params2.load(&checkpoint.params).unwrap();
    let (want, _) = predict(&net, &params, &val.inputs, 64).unwrap();
    let (got, _) = predict(&reloaded, &params2, &val.inputs, 64).unwrap();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).ok();
}
