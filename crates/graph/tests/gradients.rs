//! Gradients three ways: every op and layer against central finite differences (CPU device), and
//! every layer's GPU gradients against the CPU's.

use kiln_device::testing::{assert_close, gpu_device, random_f32, Tolerance};
use kiln_device::{Device, Loss, Tensor, UnaryOp};
use kiln_graph::layers::*;
use kiln_graph::Activation as Act;
use kiln_graph::*;

const EPS: f32 = 3e-3;
const TOL: Tolerance = Tolerance {
    abs: 2e-3,
    rel: 2e-2,
};

/// Scalar objective mean(f(params) * r) for a fixed random r, so every output element matters.
fn objective(tape: &Tape, out: &Var) -> Var {
    let r = random_f32(999, out.value().len(), -1.0, 1.0);
    let r = tape.constant(tape.device().from_f32(&r, out.shape()).unwrap());
    tape.mean(&tape.mul(out, &r).unwrap()).unwrap()
}

/// Checks d objective / d parameter for every element of every parameter of `store`, analytic
/// against central differences ([`kiln_graph::testing::check_param_gradients`]).
fn gradcheck_store(name: &str, store: &ParamStore, f: impl Fn(&Tape, &ParamStore) -> Result<Var>) {
    kiln_graph::testing::check_param_gradients(name, store, EPS, TOL, |tape| {
        objective(tape, &f(tape, store).unwrap())
    });
}

/// Gradcheck of an op: its inputs become parameters p0, p1, ... with the given values.
fn gradcheck(
    name: &str,
    inputs: &[(Vec<usize>, Vec<f32>)],
    f: impl Fn(&Tape, &[Var]) -> Result<Var>,
) {
    let b = ParamBuilder::new(0);
    for (i, (shape, v)) in inputs.iter().enumerate() {
        b.add(format!("p{i}"), shape, Init::Values(v.clone()))
            .unwrap();
    }
    let store = b.build(&Device::cpu()).unwrap();
    gradcheck_store(name, &store, |t, s| {
        let vars: Vec<Var> = s.ids().map(|id| t.param(s, id)).collect();
        f(t, &vars)
    });
}

fn rand(seed: u64, shape: &[usize], lo: f32, hi: f32) -> (Vec<usize>, Vec<f32>) {
    (
        shape.to_vec(),
        random_f32(seed, shape.iter().product(), lo, hi),
    )
}

/// Values in [0.1, 1] with random signs: away from the kinks of relu and step.
fn away_from_zero(seed: u64, shape: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let (s, v) = rand(seed, shape, 0.1, 1.0);
    let signs = random_f32(seed + 1, v.len(), -1.0, 1.0);
    (
        s,
        v.iter()
            .zip(signs)
            .map(|(x, s)| if s < 0.0 { -x } else { *x })
            .collect(),
    )
}

#[test]
fn binary_ops_with_broadcast() {
    let a = rand(1, &[3, 4], -1.0, 1.0);
    for b in [
        rand(2, &[3, 4], 0.5, 2.0),
        rand(3, &[4], 0.5, 2.0),
        rand(4, &[1], 0.5, 2.0),
    ] {
        let label = format!("{:?}", b.0);
        gradcheck(&format!("add {label}"), &[a.clone(), b.clone()], |t, v| {
            t.add(&v[0], &v[1])
        });
        gradcheck(&format!("sub {label}"), &[a.clone(), b.clone()], |t, v| {
            t.sub(&v[0], &v[1])
        });
        gradcheck(&format!("mul {label}"), &[a.clone(), b.clone()], |t, v| {
            t.mul(&v[0], &v[1])
        });
        gradcheck(&format!("div {label}"), &[a.clone(), b.clone()], |t, v| {
            t.div(&v[0], &v[1])
        });
    }
}

#[test]
fn unary_ops() {
    for op in UnaryOp::ALL {
        let (shape, mut x) = if op.positive_only() {
            rand(5, &[2, 5], 0.2, 3.0)
        } else {
            away_from_zero(6, &[2, 5])
        };
        if let UnaryOp::Clamp { min, max } = op {
            // Away from the bounds' kinks, on both sides of each.
            x = x
                .iter()
                .map(|v| v * 0.25 + if *v < 0.0 { min } else { max })
                .collect();
        }
        let x = (shape, x);
        gradcheck(&format!("{op:?}"), &[x], move |t, v| t.unary(op, &v[0]));
    }
}

#[test]
fn matmul_with_every_transpose() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = rand(7, if ta { &[5, 3] } else { &[3, 5] }, -1.0, 1.0);
        let b = rand(8, if tb { &[4, 5] } else { &[5, 4] }, -1.0, 1.0);
        gradcheck(&format!("matmul ta={ta} tb={tb}"), &[a, b], move |t, v| {
            t.matmul(&v[0], &v[1], ta, tb)
        });
    }
}

#[test]
fn softmax_log_softmax_mean_reshape() {
    let x = rand(9, &[3, 6], -2.0, 2.0);
    gradcheck("softmax", std::slice::from_ref(&x), |t, v| t.softmax(&v[0]));
    gradcheck("log_softmax", std::slice::from_ref(&x), |t, v| {
        t.log_softmax(&v[0])
    });
    gradcheck("mean", std::slice::from_ref(&x), |t, v| t.mean(&v[0]));
    let w = rand(10, &[9, 2], -1.0, 1.0);
    gradcheck("reshape then matmul", &[x, w], |t, v| {
        t.matmul(&t.reshape(&v[0], &[2, 9])?, &v[1], false, false)
    });
}

#[test]
fn embedding_table_gradient_with_repeated_ids() {
    let table = rand(11, &[6, 3], -0.5, 0.5);
    gradcheck("embedding", &[table], |t, v| {
        let ids = t.device().from_u32(&[2, 0, 2, 5, 2], &[5]).unwrap();
        t.embedding(&v[0], &ids)
    });
}

#[test]
fn losses() {
    let d = Device::cpu();
    let labels: Tensor = d
        .from_f32(&[1.0, 0.0, 1.0, 1.0, 0.0, 0.0], &[6, 1])
        .unwrap();
    let probs = rand(12, &[6, 1], 0.05, 0.95);
    let logits = rand(13, &[6, 1], -3.0, 3.0);
    let l1 = labels.clone();
    gradcheck("bce", &[probs], move |t, v| t.loss(Loss::Bce, &v[0], &l1));
    let l2 = labels.clone();
    gradcheck("bce logits", &[logits], move |t, v| {
        t.loss(Loss::BceLogits, &v[0], &l2)
    });
    let one_hot = d
        .from_f32(&[0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[3, 3])
        .unwrap();
    let oh = one_hot.clone();
    gradcheck(
        "cce logits",
        &[rand(14, &[3, 3], -2.0, 2.0)],
        move |t, v| t.loss(Loss::CceLogits, &v[0], &oh),
    );
    // On probabilities (unnormalised rows: Keras divides by the row sum first).
    gradcheck(
        "cce probabilities",
        &[rand(15, &[3, 3], 0.1, 1.0)],
        move |t, v| t.loss(Loss::Cce, &v[0], &one_hot),
    );
}

#[test]
fn regression_and_sparse_losses() {
    let d = Device::cpu();
    // Predictions kept away from the targets by more than the step, where |e| has no kink, and
    // across Huber's delta on both sides.
    let target = d
        .from_f32(&[0.5, -1.0, 2.0, 0.0, 1.0, -2.0], &[3, 2])
        .unwrap();
    let pred = (vec![3, 2], vec![1.3, -0.2, -0.5, 0.6, 1.4, 1.0]);
    for kind in [
        LossKind::MeanSquaredError,
        LossKind::MeanAbsoluteError,
        LossKind::Huber { delta: 1.0 },
        LossKind::Huber { delta: 0.5 },
    ] {
        let y = target.clone();
        gradcheck(
            &format!("{kind:?}"),
            std::slice::from_ref(&pred),
            move |t, v| kind.loss(t, &v[0], &y),
        );
    }
    // Sparse categorical: class ids against the one-hot losses they stand for.
    let ids = d.from_u32(&[1, 0, 2], &[3, 1]).unwrap();
    let one_hot = d
        .from_f32(&[0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[3, 3])
        .unwrap();
    let logits = d
        .from_f32(&[0.3, -1.0, 2.0, 0.5, 0.1, -0.4, 1.5, 0.0, 0.2], &[3, 3])
        .unwrap();
    for (sparse, dense) in [
        (
            LossKind::SparseCategoricalCrossentropyFromLogits,
            LossKind::CategoricalCrossentropyFromLogits,
        ),
        (
            LossKind::SparseCategoricalCrossentropy,
            LossKind::CategoricalCrossentropy,
        ),
    ] {
        let t = Tape::inference(&d);
        let p = t.constant(
            d.from_f32(
                &d.to_f32(&logits)
                    .unwrap()
                    .iter()
                    .map(|v| v.abs() + 0.1)
                    .collect::<Vec<_>>(),
                &[3, 3],
            )
            .unwrap(),
        );
        let a = d
            .to_f32(sparse.loss(&t, &p, &ids).unwrap().value())
            .unwrap();
        let b = d
            .to_f32(dense.loss(&t, &p, &one_hot).unwrap().value())
            .unwrap();
        assert_eq!(a, b, "{sparse:?}");
        let acc = |k: LossKind, y: &Tensor| {
            d.to_f32(&k.metric_sum(&d, p.value(), y).unwrap().unwrap())
                .unwrap()
        };
        assert_eq!(
            acc(sparse, &ids),
            acc(dense, &one_hot),
            "{sparse:?} accuracy"
        );
    }
    // Targets that do not fit are refused with what to change.
    let t = Tape::inference(&d);
    let p = t.constant(logits.clone());
    let err = LossKind::SparseCategoricalCrossentropyFromLogits
        .loss(&t, &p, &one_hot)
        .unwrap_err()
        .to_string();
    assert!(err.contains("one class id"), "{err}");
    let err = LossKind::MeanSquaredError
        .loss(&t, &p, &ids)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the targets are u32 ids"), "{err}");
}

#[test]
fn input_gradients_against_finite_differences() {
    // d(loss)/dx through a dense layer and a tanh, from tape.input and tape.grad.
    let d = Device::cpu();
    let b = ParamBuilder::new(4);
    let dense = DenseConfig::new(3)
        .activation(Act::Tanh)
        .init(&b.pp("fc"), &[4])
        .unwrap();
    let store = b.build(&d).unwrap();
    let x0 = random_f32(31, 8, -1.0, 1.0);
    let f = |t: &Tape, x: &Var| objective(t, &dense.forward(t, &store, x).unwrap());
    let tape = Tape::recording(&d);
    let x = tape.input(d.from_f32(&x0, &[2, 4]).unwrap());
    tape.backward(&f(&tape, &x)).unwrap();
    let analytic = d.to_f32(&tape.grad(&x).expect("x has a gradient")).unwrap();
    let eval = |v: &[f32]| {
        let t = Tape::inference(&d);
        let x = t.constant(d.from_f32(v, &[2, 4]).unwrap());
        d.to_f32(f(&t, &x).value()).unwrap()[0]
    };
    let numeric: Vec<f32> = (0..x0.len())
        .map(|i| {
            let (mut up, mut down) = (x0.clone(), x0.clone());
            up[i] += EPS;
            down[i] -= EPS;
            (eval(&up) - eval(&down)) / (2.0 * EPS)
        })
        .collect();
    assert_close("d loss / d x", &analytic, &numeric, TOL);
    // A constant gets none, and neither does an input the loss does not depend on.
    let tape = Tape::recording(&d);
    let unused = tape.input(d.from_f32(&x0, &[2, 4]).unwrap());
    let c = tape.constant(d.from_f32(&x0, &[2, 4]).unwrap());
    tape.backward(&f(&tape, &c)).unwrap();
    assert!(tape.grad(&c).is_none() && tape.grad(&unused).is_none());
}

#[test]
fn dropout_backward_is_its_mask() {
    let d = Device::cpu();
    let b = ParamBuilder::new(0);
    let id = b.add("x", &[1000], Init::Values(vec![1.0; 1000])).unwrap();
    let store = b.build(&d).unwrap();
    let tape = Tape::training(&d, 7, 0);
    let y = tape.dropout(&tape.param(&store, id), 0.25).unwrap();
    let out = d.to_f32(y.value()).unwrap();
    let loss = tape.mean(&y).unwrap();
    tape.backward(&loss).unwrap();
    let grad = d.to_f32(store.grad(id)).unwrap();
    let want: Vec<f32> = out.iter().map(|v| v / 1000.0).collect();
    assert_close("dropout grad", &grad, &want, Tolerance::ELEMENTWISE);
    assert!(out.contains(&0.0) && out.iter().any(|&v| v > 1.0));
    // Inference: identity.
    let t2 = Tape::inference(&d);
    let x = t2.param(&store, id);
    assert_eq!(
        d.to_f32(t2.dropout(&x, 0.25).unwrap().value()).unwrap(),
        vec![1.0; 1000]
    );
}

fn layer_models() -> Vec<(&'static str, SequentialConfig, Vec<usize>)> {
    let dense = |units, activation| DenseConfig::new(units).activation(activation);
    let seq = |input: &[usize]| SequentialConfig::new(input);
    vec![
        ("dense relu", seq(&[4]).add(dense(5, Act::Relu)), vec![3, 4]),
        (
            "dense sigmoid",
            seq(&[4]).add(dense(3, Act::Sigmoid)),
            vec![3, 4],
        ),
        (
            "dense tanh no bias",
            seq(&[4]).add(dense(3, Act::Tanh).use_bias(false)),
            vec![2, 4],
        ),
        (
            "dense softmax",
            seq(&[4]).add(dense(3, Act::Softmax)),
            vec![2, 4],
        ),
        (
            "dense on a sequence, flatten, activation",
            seq(&[3, 4])
                .add(dense(2, Act::Linear))
                .add(FlattenConfig::new())
                .add(ActivationConfig::new(Act::Tanh)),
            vec![2, 3, 4],
        ),
        (
            "embedding, flatten, dense",
            seq(&[3])
                .add(EmbeddingConfig::new(7, 2))
                .add(FlattenConfig::new())
                .add(DropoutConfig::new(0.5))
                .add(dense(2, Act::Sigmoid)),
            vec![4, 3],
        ),
        (
            "masked embedding, bidirectional LSTM sequence, LSTM, dense",
            seq(&[4])
                .add(EmbeddingConfig::new(7, 3).mask_zero(true))
                .add(BidirectionalConfig::new(
                    LstmConfig::new(2).return_sequences(true),
                ))
                .add(LstmConfig::new(3))
                .add(dense(1, Act::Sigmoid)),
            vec![3, 4],
        ),
        (
            // gradients reach dense_1 through the normalization's input gradient
            "dense on a sequence, layer normalization, dense",
            seq(&[3, 4])
                .add(dense(5, Act::Tanh))
                .add(LayerNormalizationConfig::new())
                .add(dense(2, Act::Linear)),
            vec![2, 3, 4],
        ),
        (
            "layer normalization without scale or offset, dense",
            seq(&[6])
                .add(
                    LayerNormalizationConfig::new()
                        .center(false)
                        .scale(false)
                        .epsilon(1e-2),
                )
                .add(dense(2, Act::Sigmoid)),
            vec![3, 6],
        ),
        (
            "simple RNN sequence, flatten, dense",
            seq(&[3, 2])
                .add(SimpleRnnConfig::new(3).return_sequences(true))
                .add(FlattenConfig::new())
                .add(dense(2, Act::Linear)),
            vec![2, 3, 2],
        ),
    ]
}

fn conv_models() -> Vec<(&'static str, SequentialConfig, Vec<usize>)> {
    let conv = |filters, kernel, stride, padding, activation| {
        Conv2dConfig::new(filters, kernel)
            .stride(stride)
            .padding(padding)
            .activation(activation)
    };
    vec![
        (
            "conv relu, max pool, flatten, dense",
            SequentialConfig::new(&[2, 6, 6])
                .add(conv(3, 3, 1, 1, Act::Sigmoid))
                .add(MaxPool2dConfig::new(2))
                .add(FlattenConfig::new())
                .add(DenseConfig::new(2)),
            vec![2, 2, 6, 6],
        ),
        (
            "conv stride 2, avg pool, global avg pool, dense",
            SequentialConfig::new(&[1, 7, 7])
                .add(conv(2, 3, 2, 0, Act::Tanh))
                .add(AvgPool2dConfig::new(2).stride(1))
                .add(GlobalAvgPoolConfig::new())
                .add(DenseConfig::new(1).activation(Act::Sigmoid)),
            vec![3, 1, 7, 7],
        ),
    ]
}

fn model_input(d: &Device, model: &Sequential, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    if model.takes_ids() {
        d.from_u32(
            &(0..n as u32).map(|i| (i * 5 + 1) % 7).collect::<Vec<_>>(),
            shape,
        )
        .unwrap()
    } else {
        d.from_f32(&random_f32(20, n, -1.0, 1.0), shape).unwrap()
    }
}

#[test]
fn every_layer_against_finite_differences() {
    for (name, config, x_shape) in layer_models().into_iter().chain(conv_models()) {
        let d = Device::cpu();
        let b = ParamBuilder::new(3);
        let model = config.init(&b).unwrap();
        let store = b.build(&d).unwrap();
        let x = model_input(&d, &model, &x_shape);
        gradcheck_store(name, &store, |t, s| {
            model.forward(t, s, &t.constant(x.clone()))
        });
    }
}

/// Parameter gradients of one training-mode step (dropout active, same seed) on a device.
fn layer_grads(d: &Device, config: &SequentialConfig, x_shape: &[usize]) -> Vec<Vec<f32>> {
    let b = ParamBuilder::new(3);
    let model = config.init(&b).unwrap();
    let store = b.build(d).unwrap();
    let x = model_input(d, &model, x_shape);
    let tape = Tape::training(d, 11, 0);
    let x = tape.constant(x);
    let loss = objective(&tape, &model.forward(&tape, &store, &x).unwrap());
    tape.backward(&loss).unwrap();
    store
        .ids()
        .map(|id| d.to_f32(store.grad(id)).unwrap())
        .collect()
}

#[test]
fn every_layer_gives_the_same_gradients_on_gpu_and_cpu() {
    let Some(gpu) = gpu_device("layer_gradients_gpu_vs_cpu") else {
        return;
    };
    let stochastic = SequentialConfig::new(&[2, 6, 6])
        .add(Conv2dConfig::new(3, 3).padding(1).activation(Act::Relu))
        .add(StochasticPool2dConfig::new(2))
        .add(FlattenConfig::new())
        .add(DenseConfig::new(2));
    let extra = vec![(
        "conv, stochastic pool (training), dense",
        stochastic,
        vec![2, 2, 6, 6],
    )];
    for (name, config, x_shape) in layer_models().into_iter().chain(conv_models()).chain(extra) {
        let g = layer_grads(&gpu, &config, &x_shape);
        let c = layer_grads(&Device::cpu(), &config, &x_shape);
        for (i, (g, c)) in g.iter().zip(&c).enumerate() {
            assert_close(
                &format!("{name} param {i}"),
                g,
                c,
                Tolerance::new(1e-6, 1e-4),
            );
        }
    }
}

/// An op's input: its shape and values.
type Input = (Vec<usize>, Vec<f32>);

/// Shape pairs under NumPy broadcasting: per-channel NCHW both ways round, an outer product, a
/// scalar on the left.
fn broadcast_pairs() -> Vec<(Input, Input)> {
    vec![
        (
            rand(20, &[2, 3, 2, 2], -1.0, 1.0),
            rand(21, &[3, 1, 1], 0.5, 2.0),
        ),
        (
            rand(22, &[3, 1, 1], -1.0, 1.0),
            rand(23, &[2, 3, 2, 2], 0.5, 2.0),
        ),
        (rand(24, &[3, 1], -1.0, 1.0), rand(25, &[1, 4], 0.5, 2.0)),
        (rand(26, &[1], -1.0, 1.0), rand(27, &[2, 3], 0.5, 2.0)),
    ]
}

#[test]
fn binary_ops_under_numpy_broadcasting() {
    for (a, b) in broadcast_pairs() {
        for op in kiln_device::BinaryOp::ALL {
            let label = format!("{op:?} {:?} {:?}", a.0, b.0);
            gradcheck(&label, &[a.clone(), b.clone()], move |t, v| {
                t.binary(op, &v[0], &v[1])
            });
        }
    }
}

/// A per-channel scale of NCHW activations, the example: (2, 4, 3, 3) * (4, 1, 1).
#[test]
fn a_per_channel_scale_of_nchw_activations() {
    let d = Device::cpu();
    let x = random_f32(30, 2 * 4 * 9, -1.0, 1.0);
    let s = [1.0, 2.0, 3.0, 4.0];
    let tape = Tape::recording(&d);
    let xv = tape.input(d.from_f32(&x, &[2, 4, 3, 3]).unwrap());
    let sv = tape.input(d.from_f32(&s, &[4, 1, 1]).unwrap());
    let y = tape.mul(&xv, &sv).unwrap();
    assert_eq!(y.shape(), &[2, 4, 3, 3]);
    let got = d.to_f32(y.value()).unwrap();
    for (i, (g, x)) in got.iter().zip(&x).enumerate() {
        assert_eq!(*g, x * s[(i / 9) % 4], "element {i}");
    }
    tape.backward(&tape.sum(&y).unwrap()).unwrap();
    // d sum / d s[c] = the sum of channel c over batch and pixels.
    let ds = d.to_f32(&tape.grad(&sv).unwrap()).unwrap();
    for (c, g) in ds.iter().enumerate() {
        let want: f32 = (0..2)
            .flat_map(|n| (0..9).map(move |p| n * 36 + c * 9 + p))
            .map(|i| x[i])
            .sum();
        assert!((g - want).abs() < 1e-5, "channel {c}: {g} vs {want}");
    }
}

#[test]
fn axis_reductions_with_and_without_keepdims() {
    let x = away_from_zero(31, &[2, 3, 4]);
    let cases: [&[isize]; 6] = [&[0], &[1], &[-1], &[0, 2], &[1, 2], &[]];
    for axes in cases {
        for keepdims in [false, true] {
            let label = format!("axes {axes:?} keepdims {keepdims}");
            gradcheck(&format!("sum {label}"), std::slice::from_ref(&x), |t, v| {
                t.sum_axes(&v[0], axes, keepdims)
            });
            gradcheck(
                &format!("mean {label}"),
                std::slice::from_ref(&x),
                |t, v| t.mean_axes(&v[0], axes, keepdims),
            );
            gradcheck(&format!("max {label}"), std::slice::from_ref(&x), |t, v| {
                t.max_axes(&v[0], axes, keepdims)
            });
        }
    }
    let d = Device::cpu();
    let tape = Tape::recording(&d);
    let v = tape.constant(d.from_f32(&x.1, &x.0).unwrap());
    assert_eq!(
        tape.sum_axes(&v, &[0, 2], true).unwrap().shape(),
        &[1, 3, 1]
    );
    assert_eq!(tape.mean_axes(&v, &[-1], false).unwrap().shape(), &[2, 3]);
    assert_eq!(tape.max_axes(&v, &[], false).unwrap().shape(), &[1]);
    let err = tape.sum_axes(&v, &[3], false).unwrap_err().to_string();
    assert!(
        err.contains("axis 3 is out of range for 3 dimensions"),
        "{err}"
    );
}

#[test]
fn max_shares_the_gradient_between_tied_maxima() {
    let d = Device::cpu();
    let tape = Tape::recording(&d);
    let x = tape.input(
        d.from_f32(&[1.0, 3.0, 3.0, 2.0, 0.0, -1.0], &[2, 3])
            .unwrap(),
    );
    let y = tape.max_axes(&x, &[1], false).unwrap();
    assert_eq!(d.to_f32(y.value()).unwrap(), vec![3.0, 2.0]);
    tape.backward(&tape.sum(&y).unwrap()).unwrap();
    let dx = d.to_f32(&tape.grad(&x).unwrap()).unwrap();
    assert_eq!(dx, vec![0.0, 0.5, 0.5, 1.0, 0.0, 0.0]);
}

#[test]
fn scalar_helpers_and_broadcast_to() {
    let x = away_from_zero(32, &[2, 3]);
    let pos = rand(33, &[2, 3], 0.2, 2.0);
    gradcheck("add_scalar", std::slice::from_ref(&x), |t, v| {
        t.add_scalar(&v[0], 0.7)
    });
    gradcheck("mul_scalar", std::slice::from_ref(&x), |t, v| {
        t.mul_scalar(&v[0], -1.3)
    });
    gradcheck("rsub", std::slice::from_ref(&x), |t, v| t.rsub(1.0, &v[0]));
    gradcheck("neg", std::slice::from_ref(&x), |t, v| t.neg(&v[0]));
    gradcheck("square", std::slice::from_ref(&x), |t, v| t.square(&v[0]));
    gradcheck("pow 3", std::slice::from_ref(&x), |t, v| t.pow(&v[0], 3.0));
    gradcheck("pow 0.5", std::slice::from_ref(&pos), |t, v| {
        t.pow(&v[0], 0.5)
    });
    gradcheck("sqrt", std::slice::from_ref(&pos), |t, v| t.sqrt(&v[0]));
    gradcheck("rsqrt", std::slice::from_ref(&pos), |t, v| t.rsqrt(&v[0]));
    gradcheck("clamp", std::slice::from_ref(&x), |t, v| {
        t.clamp(&v[0], -0.5, 0.55)
    });
    let row = rand(34, &[3], -1.0, 1.0);
    gradcheck("broadcast_to", &[row], |t, v| {
        t.broadcast_to(&v[0], &[4, 3])
    });
    let d = Device::cpu();
    let tape = Tape::inference(&d);
    let v = tape.constant(d.from_f32(&x.1, &x.0).unwrap());
    let one_minus = tape.rsub(1.0, &v).unwrap();
    let want: Vec<f32> = x.1.iter().map(|v| 1.0 - v).collect();
    assert_eq!(d.to_f32(one_minus.value()).unwrap(), want);
    let err = tape.clamp(&v, 1.0, -1.0).unwrap_err().to_string();
    assert!(err.contains("min must not exceed max"), "{err}");
}

/// x * sigmoid(x) as one op with its own backward, checked by finite differences.
struct Silu;

impl CustomOp for Silu {
    fn name(&self) -> &str {
        "silu"
    }

    fn forward(&self, d: &Device, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let s = d.unary(UnaryOp::Sigmoid, &inputs[0])?;
        Ok(vec![d.mul(&inputs[0], &s)?])
    }

    fn backward(
        &self,
        d: &Device,
        inputs: &[Tensor],
        _outputs: &[Tensor],
        grads: &[Tensor],
    ) -> Result<Vec<Option<Tensor>>> {
        let x = &inputs[0];
        let s = d.unary(UnaryOp::Sigmoid, x)?;
        let one_minus_s = d.unary(
            UnaryOp::Affine {
                scale: -1.0,
                shift: 1.0,
            },
            &s,
        )?;
        let inner = d.unary(
            UnaryOp::Affine {
                scale: 1.0,
                shift: 1.0,
            },
            &d.mul(x, &one_minus_s)?,
        )?;
        Ok(vec![Some(d.mul(&grads[0], &d.mul(&s, &inner)?)?)])
    }
}

/// An op that splits x into its positive and negative parts (two outputs), to check that an
/// output nothing used reaches backward as zeros; and a wrong backward, refused by name.
struct Split {
    wrong: bool,
}

impl CustomOp for Split {
    fn name(&self) -> &str {
        "split"
    }

    fn forward(&self, d: &Device, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let pos = d.unary(UnaryOp::Relu, &inputs[0])?;
        Ok(vec![
            pos.clone(),
            d.binary(kiln_device::BinaryOp::Sub, &inputs[0], &pos)?,
        ])
    }

    fn backward(
        &self,
        d: &Device,
        inputs: &[Tensor],
        _outputs: &[Tensor],
        grads: &[Tensor],
    ) -> Result<Vec<Option<Tensor>>> {
        if self.wrong {
            return Ok(vec![Some(d.zeros(&[1])?)]);
        }
        let step = d.unary(UnaryOp::Step, &inputs[0])?;
        let from_pos = d.mul(&grads[0], &step)?;
        let rest = d.unary(
            UnaryOp::Affine {
                scale: -1.0,
                shift: 1.0,
            },
            &step,
        )?;
        Ok(vec![Some(d.add(&from_pos, &d.mul(&grads[1], &rest)?)?)])
    }
}

#[test]
fn ops_of_ones_own_against_finite_differences() {
    let d = Device::cpu();
    let (shape, x) = away_from_zero(40, &[3, 4]);
    let xs = [d.from_f32(&x, &shape).unwrap()];
    kiln_graph::testing::check_input_gradients("silu", &d, &xs, EPS, TOL, |t, v| {
        objective(t, &t.custom1(Silu, &[&v[0]]).unwrap())
    });
    // Both outputs used, then only the second (the first's gradient arrives as zeros).
    kiln_graph::testing::check_input_gradients("split", &d, &xs, EPS, TOL, |t, v| {
        let parts = t.custom(Split { wrong: false }, &[&v[0]]).unwrap();
        let both = t
            .add(&parts[0], &t.mul_scalar(&parts[1], 3.0).unwrap())
            .unwrap();
        objective(t, &both)
    });
    kiln_graph::testing::check_input_gradients("split, second only", &d, &xs, EPS, TOL, |t, v| {
        let parts = t.custom(Split { wrong: false }, &[&v[0]]).unwrap();
        objective(t, &parts[1])
    });
    let tape = Tape::recording(&d);
    let v = tape.input(xs[0].clone());
    let parts = tape.custom(Split { wrong: true }, &[&v]).unwrap();
    let err = tape
        .backward(&tape.sum(&parts[0]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("custom op split") && err.contains("shape [1]"),
        "{err}"
    );
    let err = tape
        .custom1(Split { wrong: false }, &[&v])
        .unwrap_err()
        .to_string();
    assert!(err.contains("custom1 takes one"), "{err}");
}

/// The new ops' values and input gradients on the adapter against the CPU device.
#[test]
fn broadcasting_and_axis_ops_give_the_same_values_and_gradients_on_gpu_and_cpu() {
    let Some(gpu) = gpu_device("broadcast_axis_ops_gpu_vs_cpu") else {
        return;
    };
    let x = random_f32(50, 2 * 4 * 3 * 3, -1.0, 1.0);
    let s = random_f32(51, 4, 0.5, 2.0);
    let run = |d: &Device| {
        let tape = Tape::recording(d);
        let xv = tape.input(d.from_f32(&x, &[2, 4, 3, 3]).unwrap());
        let sv = tape.input(d.from_f32(&s, &[4, 1, 1]).unwrap());
        let scaled = tape.mul(&xv, &sv).unwrap();
        let centred = tape
            .sub(&scaled, &tape.mean_axes(&scaled, &[2, 3], true).unwrap())
            .unwrap();
        let var = tape
            .mean_axes(&tape.square(&centred).unwrap(), &[2, 3], true)
            .unwrap();
        let normed = tape
            .mul(
                &centred,
                &tape.rsqrt(&tape.add_scalar(&var, 1e-3).unwrap()).unwrap(),
            )
            .unwrap();
        let peak = tape
            .max_axes(&tape.clamp(&normed, -1.5, 1.5).unwrap(), &[1], false)
            .unwrap();
        let custom = tape.custom1(Silu, &[&peak]).unwrap();
        let loss = tape
            .sum(&tape.pow(&tape.rsub(2.0, &custom).unwrap(), 3.0).unwrap())
            .unwrap();
        tape.backward(&loss).unwrap();
        [
            d.to_f32(loss.value()).unwrap(),
            d.to_f32(&tape.grad(&xv).unwrap()).unwrap(),
            d.to_f32(&tape.grad(&sv).unwrap()).unwrap(),
        ]
    };
    let (g, c) = (run(&gpu), run(&Device::cpu()));
    for (i, (g, c)) in g.iter().zip(&c).enumerate() {
        assert_close(&format!("output {i}"), g, c, Tolerance::new(1e-4, 1e-3));
    }
}
