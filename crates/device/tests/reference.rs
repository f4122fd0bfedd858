//! Tier 1, no GPU: the CPU reference (and so the CPU device) against known answers: published test
//! vectors, values worked by hand or in f64, and the seed documents' examples.

use kiln_device::params::*;
use kiln_device::reference;
use kiln_device::testing::{assert_close, Tolerance};
use kiln_device::{Device, Loss};

/// Random123's known-answer vectors for threefry2x32 with 20 rounds (kat_vectors).
#[test]
fn threefry_matches_random123_known_answers() {
    let cases = [
        (
            [0x0000_0000, 0x0000_0000],
            [0x0000_0000, 0x0000_0000],
            [0x6b20_0159, 0x99ba_4efe],
        ),
        (
            [0xffff_ffff, 0xffff_ffff],
            [0xffff_ffff, 0xffff_ffff],
            [0x1cb9_96fc, 0xbb00_2be7],
        ),
        (
            [0x243f_6a88, 0x85a3_08d3],
            [0x1319_8a2e, 0x0370_7344],
            [0xc492_3a9c, 0x483d_f7a0],
        ),
    ];
    for (ctr, key, want) in cases {
        assert_eq!(
            reference::threefry2x32(ctr, key),
            want,
            "ctr {ctr:x?} key {key:x?}"
        );
    }
}

/// The seed's point: softmax of [1010, 1000, 990] overflows naively and is exact when the max is
/// subtracted. Checked against f64.
#[test]
fn softmax_of_large_logits_is_finite_and_right() {
    let x = [1010.0f32, 1000.0, 990.0];
    let naive: Vec<f32> = x.iter().map(|v| v.exp()).collect();
    assert!(
        naive.iter().any(|v| v.is_infinite()),
        "the naive form must overflow for this test to mean anything"
    );
    let p = ReduceParams::for_axis(&[1, 3], 1);
    let mut got = [0.0f32; 3];
    reference::softmax(&p, false, &x, &mut got);
    let e: Vec<f64> = [0.0f64, -10.0, -20.0].iter().map(|v| v.exp()).collect();
    let total: f64 = e.iter().sum();
    let want: Vec<f32> = e.iter().map(|v| (v / total) as f32).collect();
    assert_close("softmax", &got, &want, Tolerance::new(1e-9, 1e-6));
    let mut log = [0.0f32; 3];
    reference::softmax(&p, true, &x, &mut log);
    let want_log: Vec<f32> = e.iter().map(|v| (v / total).ln() as f32).collect();
    assert_close("log_softmax", &log, &want_log, Tolerance::new(1e-6, 1e-6));
}

/// The seed's three-layer network, worked by hand in f64: x = [1, 2], W1 (2x3), W2 (3x2), W3 (2x2),
/// sigmoid hidden layers, identity output, no biases.
#[test]
fn seed_network_forward_on_the_cpu_device() {
    let d = Device::cpu();
    let x = d.from_f32(&[1.0, 2.0], &[1, 2]).unwrap();
    let w1 = d
        .from_f32(&[1.0, 3.0, 5.0, 2.0, 4.0, 6.0], &[2, 3])
        .unwrap();
    let w2 = d
        .from_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])
        .unwrap();
    let w3 = d.from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let sig = MatmulSpec {
        activation: Activation::Sigmoid,
        ..Default::default()
    };
    let h1 = d.matmul(&x, &w1, None, sig).unwrap();
    let h2 = d.matmul(&h1, &w2, None, sig).unwrap();
    let y = d
        .to_f32(&d.matmul(&h2, &w3, None, MatmulSpec::default()).unwrap())
        .unwrap();

    let s = |v: f64| 1.0 / (1.0 + (-v).exp());
    let a1 = [s(5.0), s(11.0), s(17.0)];
    let a2 = [
        s(a1[0] + 3.0 * a1[1] + 5.0 * a1[2]),
        s(2.0 * a1[0] + 4.0 * a1[1] + 6.0 * a1[2]),
    ];
    let want = [
        (a2[0] + 3.0 * a2[1]) as f32,
        (2.0 * a2[0] + 4.0 * a2[1]) as f32,
    ];
    assert_close("seed network", &y, &want, Tolerance::new(1e-6, 1e-6));
}

#[test]
fn matmul_transposes_agree_with_each_other() {
    // A (2x3) · B (3x2), then the same through stored transposes.
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let at = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
    let b = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
    let bt = [7.0, 9.0, 11.0, 8.0, 10.0, 12.0];
    let p = MatmulParams {
        batch: 1,
        m: 2,
        n: 2,
        k: 3,
        a_batch_stride: 6,
        b_batch_stride: 6,
        chunk: 1,
        _pad: 0,
    };
    let want = [58.0, 64.0, 139.0, 154.0];
    for (ta, tb, a, b) in [
        (false, false, &a, &b),
        (true, false, &at, &b),
        (false, true, &a, &bt),
        (true, true, &at, &bt),
    ] {
        let mut c = [0.0; 4];
        let spec = MatmulSpec {
            trans_a: ta,
            trans_b: tb,
            ..Default::default()
        };
        reference::matmul(&p, &spec, a, b, None, &mut c);
        assert_eq!(c, want, "trans_a {ta} trans_b {tb}");
    }
}

/// Keras's Adam on one weight: g = 0.5 from w = 1. m = 0.05, v = 0.00025, alpha = 1e-3 *
/// sqrt(0.001) / 0.1, and the step is alpha * m / (sqrt(v) + 1e-7), just under lr.
#[test]
fn adam_first_step_matches_keras_arithmetic() {
    let cfg = AdamConfig::default();
    let p = cfg.params(1, 1);
    let (mut w, mut m, mut v) = ([1.0f32], [0.0f32], [0.0f32]);
    reference::adam_update(&p, &mut w, &[0.5], &mut m, &mut v);
    let alpha = 1e-3 * (1.0f64 - 0.999).sqrt() / (1.0 - 0.9);
    let want = 1.0 - alpha * 0.05 / ((0.00025f64).sqrt() + 1e-7);
    assert_close("w", &w, &[want as f32], Tolerance::new(1e-7, 0.0));
    // 1 - beta2 is 0.00099998713 in f32, as in Keras: v carries that rounding.
    assert_close(
        "m, v",
        &[m[0], v[0]],
        &[0.05, 0.00025],
        Tolerance::new(1e-9, 1e-4),
    );
}

#[test]
fn sgd_momentum_matches_keras_arithmetic() {
    let p = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: false,
    }
    .params(1);
    let (mut w, mut u) = ([1.0f32], [0.0f32]);
    reference::sgd_update(&p, &mut w, &[2.0], &mut u); // u = -0.2, w = 0.8
    reference::sgd_update(&p, &mut w, &[2.0], &mut u); // u = -0.18 - 0.2 = -0.38, w = 0.42
    assert_close(
        "sgd",
        &[w[0], u[0]],
        &[0.42, -0.38],
        Tolerance::new(1e-6, 0.0),
    );
}

/// Keras's SGD(nesterov=True): m = momentum m - lr g, w += momentum m - lr g. From w = 1 at lr
/// 0.1, momentum 0.9, g = 2 twice: m = -0.2, w = 1 - 0.18 - 0.2 = 0.62; then m = -0.38,
/// w = 0.62 - 0.342 - 0.2 = 0.078.
#[test]
fn sgd_nesterov_matches_keras_arithmetic() {
    let p = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
    }
    .params(1);
    let (mut w, mut u) = ([1.0f32], [0.0f32]);
    reference::sgd_update(&p, &mut w, &[2.0], &mut u);
    assert_close(
        "nesterov 1",
        &[w[0], u[0]],
        &[0.62, -0.2],
        Tolerance::new(1e-6, 0.0),
    );
    reference::sgd_update(&p, &mut w, &[2.0], &mut u);
    assert_close(
        "nesterov 2",
        &[w[0], u[0]],
        &[0.078, -0.38],
        Tolerance::new(1e-6, 0.0),
    );
}

#[test]
fn cross_entropies_match_closed_forms() {
    let d = Device::cpu();
    let t = |v: &[f32]| d.from_f32(v, &[v.len()]).unwrap();
    // BCE on probabilities: -ln(0.8) for (p = 0.8, y = 1), -ln(0.75) for (p = 0.25, y = 0).
    let l = d
        .to_f32(
            &d.loss_forward(Loss::Bce, &t(&[0.8, 0.25]), &t(&[1.0, 0.0]))
                .unwrap(),
        )
        .unwrap();
    assert_close(
        "bce",
        &l,
        &[-(0.8f32.ln()), -(0.75f32.ln())],
        Tolerance::new(1e-6, 1e-6),
    );
    // From logits: x = 0 gives ln 2 whatever the label; the gradient is sigmoid(x) - y.
    let l = d
        .to_f32(
            &d.loss_forward(Loss::BceLogits, &t(&[0.0, 100.0]), &t(&[1.0, 1.0]))
                .unwrap(),
        )
        .unwrap();
    assert_close(
        "bce logits",
        &l,
        &[std::f32::consts::LN_2, 0.0],
        Tolerance::new(1e-6, 1e-6),
    );
    let g = d
        .to_f32(
            &d.loss_backward(Loss::BceLogits, &t(&[0.0]), &t(&[1.0]), 0.5)
                .unwrap(),
        )
        .unwrap();
    assert_close("bce logits grad", &g, &[-0.25], Tolerance::new(1e-7, 0.0));
    // Categorical from logits [1010, 1000, 990], class 0: -log softmax = ln(1 + e^-10 + e^-20).
    let x = d.from_f32(&[1010.0, 1000.0, 990.0], &[1, 3]).unwrap();
    let y = d.from_f32(&[1.0, 0.0, 0.0], &[1, 3]).unwrap();
    let l = d
        .to_f32(&d.loss_forward(Loss::CceLogits, &x, &y).unwrap())
        .unwrap();
    let want = (1.0f64 + (-10.0f64).exp() + (-20.0f64).exp()).ln() as f32;
    assert_close("cce", &l, &[want], Tolerance::new(1e-9, 1e-3));
    // On probabilities: rows are normalised first, so [2, 1, 1] with class 0 costs -ln(0.5).
    let p = d.from_f32(&[2.0, 1.0, 1.0], &[1, 3]).unwrap();
    let l = d
        .to_f32(&d.loss_forward(Loss::Cce, &p, &y).unwrap())
        .unwrap();
    assert_close(
        "cce probabilities",
        &l,
        &[std::f32::consts::LN_2],
        Tolerance::new(1e-6, 1e-6),
    );
}

#[test]
fn regression_losses_match_hand_worked_values() {
    // e = p - y = [0.5, 3, 0]: squared [0.25, 9, 0], absolute [0.5, 3, 0], Huber (delta 1)
    // [0.125, 1 * (3 - 0.5), 0]; gradients 2e, sign(e), clamp(e, -1, 1).
    let d = Device::cpu();
    let p = d.from_f32(&[1.0, 3.0, -2.0], &[3]).unwrap();
    let y = d.from_f32(&[0.5, 0.0, -2.0], &[3]).unwrap();
    let huber = Loss::Huber { delta: 1.0 };
    for (loss, value, grad) in [
        (Loss::Mse, [0.25, 9.0, 0.0], [1.0, 6.0, 0.0]),
        (Loss::Mae, [0.5, 3.0, 0.0], [1.0, 1.0, 0.0]),
        (huber, [0.125, 2.5, 0.0], [0.5, 1.0, 0.0]),
    ] {
        let got = d.to_f32(&d.loss_forward(loss, &p, &y).unwrap()).unwrap();
        assert_close(
            &format!("{loss:?}"),
            &got,
            &value,
            Tolerance::new(1e-6, 1e-6),
        );
        let got = d
            .to_f32(&d.loss_backward(loss, &p, &y, 1.0).unwrap())
            .unwrap();
        assert_close(
            &format!("d {loss:?}"),
            &got,
            &grad,
            Tolerance::new(1e-6, 1e-6),
        );
    }
    assert!(d.loss_forward(Loss::Huber { delta: 0.0 }, &p, &y).is_err());
}

#[test]
fn one_hot_rows_and_out_of_range_ids() {
    let d = Device::cpu();
    let ids = d.from_u32(&[2, 0, 2], &[3, 1]).unwrap();
    let y = d.one_hot(&ids, 3).unwrap();
    assert_eq!(y.shape(), &[3, 1, 3]);
    assert_eq!(
        d.to_f32(&y).unwrap(),
        [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    );
    // An id past the classes is refused by name, as the embedding refuses one past its table.
    let err = d.one_hot(&ids, 2).unwrap_err().to_string();
    assert!(err.contains("one_hot"), "{err}");
}

#[test]
fn embedding_backward_sums_repeated_ids_into_one_row() {
    let p = EmbeddingParams {
        n: 3,
        dim: 2,
        vocab: 4,
        _pad: 0,
    };
    let mut dtable = [0.5f32; 8];
    reference::embedding_backward(&p, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 0, 2], &mut dtable);
    // Row 2 collects positions 0 and 2; row 0 position 1; accumulated onto 0.5.
    assert_eq!(dtable, [3.5, 4.5, 0.5, 0.5, 6.5, 8.5, 0.5, 0.5]);
}

#[test]
fn reductions_and_argmax_on_a_small_tensor() {
    let d = Device::cpu();
    let x = d
        .from_f32(&[1.0, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3])
        .unwrap();
    let get = |op, axis| d.to_f32(&d.reduce(op, &x, axis).unwrap()).unwrap();
    assert_eq!(get(ReduceOp::Sum, 1), vec![9.0, 12.0]);
    assert_eq!(get(ReduceOp::Mean, 0), vec![2.5, 3.5, 4.5]);
    assert_eq!(get(ReduceOp::Max, 1), vec![5.0, 6.0]);
    assert_eq!(d.to_u32(&d.argmax(&x, 1).unwrap()).unwrap(), vec![1, 2]);
    assert_eq!(d.to_u32(&d.argmax(&x, 0).unwrap()).unwrap(), vec![1, 0, 1]);
}

#[test]
fn dropout_keeps_the_expected_fraction_and_scales() {
    let n = 50_000;
    let p = DropoutParams::new(n, 0.2, 2019, 0);
    let x = vec![1.0f32; n as usize];
    let (mut out, mut mask) = (vec![0.0; n as usize], vec![0.0; n as usize]);
    reference::dropout_forward(&p, &x, &mut out, &mut mask);
    let kept = mask.iter().filter(|&&m| m > 0.0).count() as f32 / n as f32;
    assert!((kept - 0.8).abs() < 0.01, "kept {kept}");
    assert!(out.iter().all(|&v| v == 0.0 || v == 1.25));
}

/// NumPy's broadcasting, on results worked by hand (as `numpy` gives them): operands of either
/// size, a per-channel NCHW scale, copies and their adjoint, and the errors.
#[test]
fn broadcasting_follows_numpy() {
    let d = Device::cpu_reference();
    let t = |v: &[f32], s: &[usize]| d.from_f32(v, s).unwrap();
    let read = |x: &kiln_device::Tensor| (d.to_f32(x).unwrap(), x.shape().to_vec());
    let col = t(&[10.0, 20.0], &[2, 1]);
    let row = t(&[1.0, 2.0, 3.0], &[3]);
    assert_eq!(
        read(&d.add(&col, &row).unwrap()),
        (vec![11.0, 12.0, 13.0, 21.0, 22.0, 23.0], vec![2, 3])
    );
    assert_eq!(
        read(&d.binary(BinaryOp::Sub, &row, &col).unwrap()),
        (vec![-9.0, -8.0, -7.0, -19.0, -18.0, -17.0], vec![2, 3])
    );
    // x (2, 2, 1, 2) * s (2, 1, 1): channel 0 times 10, channel 1 times 100.
    let x = t(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], &[2, 2, 1, 2]);
    let s = t(&[10.0, 100.0], &[2, 1, 1]);
    let want = vec![0.0, 10.0, 200.0, 300.0, 40.0, 50.0, 600.0, 700.0];
    assert_eq!(
        read(&d.mul(&x, &s).unwrap()),
        (want.clone(), vec![2, 2, 1, 2])
    );
    assert_eq!(read(&d.mul(&s, &x).unwrap()), (want, vec![2, 2, 1, 2]));
    // Copies and their adjoint.
    let pair = t(&[1.0, 2.0], &[2]);
    let tiled = d.broadcast_to(&pair, &[3, 2]).unwrap();
    assert_eq!(
        read(&tiled),
        (vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0], vec![3, 2])
    );
    assert_eq!(
        read(&d.sum_to(&tiled, &[2]).unwrap()),
        (vec![3.0, 6.0], vec![2])
    );
    assert_eq!(
        read(&d.sum_to(&tiled, &[1, 2]).unwrap()),
        (vec![3.0, 6.0], vec![1, 2])
    );
    assert_eq!(
        read(&d.sum_to(&tiled, &[3, 1]).unwrap()),
        (vec![3.0; 3], vec![3, 1])
    );
    assert_eq!(read(&d.sum_to(&tiled, &[1]).unwrap()), (vec![9.0], vec![1]));
    let cube = t(&(0..24).map(|v| v as f32).collect::<Vec<_>>(), &[2, 3, 4]);
    // Over axes 0 and 2 at once: (2, 3, 4) -> (3, 1).
    let want: Vec<f32> = (0..3)
        .map(|j| {
            (0..2)
                .flat_map(|i| (0..4).map(move |k| (i * 12 + j * 4 + k) as f32))
                .sum()
        })
        .collect();
    assert_eq!(read(&d.sum_to(&cube, &[3, 1]).unwrap()), (want, vec![3, 1]));
    // Neighbouring dimensions that broadcast alike are merged.
    let (shape, p) = BroadcastParams::plan(&[4, 5, 6], &[5, 6]).unwrap();
    assert_eq!((shape, p.rank), (vec![4, 5, 6], 2));
    // Shapes that do not broadcast are refused, naming both.
    let err = d
        .add(&t(&[0.0; 6], &[2, 3]), &pair)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[2, 3] and [2]") && err.contains("broadcast"),
        "{err}"
    );
    let err = d.broadcast_to(&row, &[3, 2]).unwrap_err().to_string();
    assert!(err.contains("broadcast"), "{err}");
    let err = d.sum_to(&tiled, &[3]).unwrap_err().to_string();
    assert!(err.contains("broadcasts to [3, 2]"), "{err}");
}

#[test]
fn gelu_matches_values_from_an_independent_erf() {
    // (x, exact, tanh-approximated), from Python's math.erf and math.tanh in f64.
    let known = [
        (-3.0, -0.00404969409489031, -0.0036373920817729943),
        (-1.5, -0.10021080190328713, -0.10042842301976707),
        (-0.5, -0.15426876936299344, -0.15428599017485606),
        (0.0, 0.0, 0.0),
        (0.25, 0.14967658142073093, 0.149675350701685),
        (1.0, 0.8413447460685429, 0.8411919906082768),
        (2.0, 1.9544997361036416, 1.954597694087775),
        (4.0, 3.9998733150326675, 3.9999297540518075),
    ];
    for (x, exact, approx) in known {
        let got = reference::unary_value(UnaryOp::Gelu, x as f32) as f64;
        assert!(
            (got - exact).abs() < 3e-7,
            "gelu({x}) = {got}, want {exact}"
        );
        let got = reference::unary_value(UnaryOp::GeluTanh, x as f32) as f64;
        assert!(
            (got - approx).abs() < 3e-7,
            "gelu_tanh({x}) = {got}, want {approx}"
        );
    }
    // erf itself, against f64 values: odd, saturating, 1.2e-7 from the truth.
    for (x, want) in [
        (0.5f32, 0.5204998778130465f64),
        (-1.0, -0.8427007929497149),
        (3.0, 0.9999779095030014),
    ] {
        let got = reference::erf(x) as f64;
        assert!((got - want).abs() < 2e-7, "erf({x}) = {got}, want {want}");
    }
}

/// Keras's RMSprop (lr 0.01, rho 0.9, eps 1e-7) on one weight from w = 1, gradients 0.5 then
/// -1, without and with momentum 0.5. The expected values are Keras's update_step in numpy
/// float32, op for op (1 - rho rounded from the Python float).
#[test]
fn rmsprop_matches_keras_arithmetic() {
    for (momentum, want) in [
        (0.0, [[0.968_377_3, 0.025, 0.0], [0.996_948_7, 0.1225, 0.0]]),
        (
            0.5,
            [
                [0.968_377_3, 0.025, 0.031_622_715],
                [0.981_137_34, 0.1225, -0.012_760_058],
            ],
        ),
    ] {
        let p = RmspropConfig {
            lr: 0.01,
            momentum,
            ..RmspropConfig::default()
        }
        .params(1);
        let (mut w, mut m, mut v) = ([1.0f32], [0.0f32], [0.0f32]);
        for (g, want) in [0.5f32, -1.0].into_iter().zip(want) {
            reference::rmsprop_update(&p, &mut w, &[g], &mut m, &mut v);
            assert_close(
                &format!("momentum {momentum}, g {g}"),
                &[w[0], v[0], m[0]],
                &want,
                Tolerance::new(1e-7, 1e-6),
            );
        }
    }
}

/// Keras's AdamW (weight decay 0.004) at lr 0.01 on one weight, w = 2, g = 0.5: first
/// w -= w * 0.004 * 0.01, then Adam's step (numpy float32, op for op: 1.98992).
#[test]
fn adamw_decays_before_the_adam_step_as_keras() {
    let cfg = AdamConfig {
        lr: 0.01,
        ..AdamConfig::adamw()
    };
    let p = cfg.params(1, 1);
    let (mut w, mut m, mut v) = ([2.0f32], [0.0f32], [0.0f32]);
    reference::adam_update(&p, &mut w, &[0.5], &mut m, &mut v);
    assert_close("adamw", &w, &[1.989_92], Tolerance::new(2e-7, 0.0));
    // Without decay the same step lands 2 * 0.004 * 0.01 higher.
    let p = AdamConfig {
        lr: 0.01,
        ..AdamConfig::default()
    }
    .params(1, 1);
    let (mut w, mut m, mut v) = ([2.0f32], [0.0f32], [0.0f32]);
    reference::adam_update(&p, &mut w, &[0.5], &mut m, &mut v);
    assert_close("adam", &w, &[1.989_92 + 8e-5], Tolerance::new(2e-7, 0.0));
}
