//! Tier 2: every kernel on the wgpu adapter against the CPU reference, on seeded random inputs, at
//! sizes 1, primes, non-multiples of the workgroup size, and past 65,535 workgroups in one
//! dimension. Without an adapter these tests print SKIPPED and pass, unless KILN_REQUIRE_GPU=1.

use kiln_device::testing::{
    assert_close, gpu_device, private_gpu_device, random_f32, random_u32, Tolerance,
};
use kiln_device::*;

fn devices(test: &str) -> Option<(Device, Device)> {
    gpu_device(test).map(|g| (g, Device::cpu_reference()))
}

/// Runs `f` on both devices and compares the f32 results.
fn same_on_both(
    test: &str,
    gpu: &Device,
    cpu: &Device,
    tol: Tolerance,
    f: impl Fn(&Device) -> Tensor,
) {
    let got = gpu.to_f32(&f(gpu)).unwrap();
    let want = cpu.to_f32(&f(cpu)).unwrap();
    assert_close(test, &got, &want, tol);
}

const SIZES: [(usize, usize, usize); 10] = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 1, 13),
    (17, 31, 7),
    (64, 64, 64),
    (65, 63, 67),
    (3, 129, 2),
    (97, 2, 131),
    (129, 65, 33),
    (200, 130, 17),
];

#[test]
fn matmul_matches_reference_for_every_variant_transpose_and_epilogue() {
    let Some((gpu, cpu)) = devices("matmul_matches_reference") else {
        return;
    };
    let mut seed = 0;
    let epilogues = [
        (false, Activation::Identity),
        (true, Activation::Relu),
        (true, Activation::Tanh),
        (false, Activation::Sigmoid),
        (true, Activation::Step),
    ];
    for &(m, n, k) in &SIZES {
        for (variant, tile) in [
            (MatmulVariant::Naive, MatmulTile::Auto),
            (MatmulVariant::Tiled, MatmulTile::Large),
            (MatmulVariant::Tiled, MatmulTile::Medium),
            (MatmulVariant::Tiled, MatmulTile::Small),
        ] {
            for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
                for (bias, activation) in epilogues {
                    seed += 1;
                    let a = random_f32(seed, m * k, -1.0, 1.0);
                    let b = random_f32(seed + 1000, k * n, -1.0, 1.0);
                    let c = random_f32(seed + 2000, n, -1.0, 1.0);
                    let a_shape = if trans_a { [k, m] } else { [m, k] };
                    let b_shape = if trans_b { [n, k] } else { [k, n] };
                    let spec = MatmulSpec {
                        trans_a,
                        trans_b,
                        activation,
                        variant,
                        tile,
                    };
                    let name = format!("matmul {m}x{n}x{k} {spec:?} bias={bias}");
                    same_on_both(&name, &gpu, &cpu, Tolerance::reduction(k), |d| {
                        let bias_t = bias.then(|| d.from_f32(&c, &[n]).unwrap());
                        let a_t = d.from_f32(&a, &a_shape).unwrap();
                        let b_t = d.from_f32(&b, &b_shape).unwrap();
                        d.matmul(&a_t, &b_t, bias_t.as_ref(), spec).unwrap()
                    });
                }
            }
        }
    }
}

/// Both tiles sum every output over K in the same order, so autotuning's choice changes speed,
/// not results: the same bits from either, batched or not, transposed or not.
#[test]
fn matmul_tiles_give_the_same_bits() {
    let Some(gpu) = gpu_device("matmul_tiles_give_the_same_bits") else {
        return;
    };
    for (i, &(batch, m, n, k)) in [(1, 200, 130, 67), (3, 33, 70, 129), (1, 5, 300, 40)]
        .iter()
        .enumerate()
    {
        for (trans_a, trans_b) in [(false, false), (true, true)] {
            let a = random_f32(i as u64, batch * m * k, -1.0, 1.0);
            let b = random_f32(i as u64 + 50, batch * k * n, -1.0, 1.0);
            let a_shape = if trans_a {
                [batch, k, m]
            } else {
                [batch, m, k]
            };
            let b_shape = if trans_b {
                [batch, n, k]
            } else {
                [batch, k, n]
            };
            let run = |tile| {
                let spec = MatmulSpec {
                    trans_a,
                    trans_b,
                    activation: Activation::Tanh,
                    tile,
                    ..Default::default()
                };
                let a_t = gpu.from_f32(&a, &a_shape).unwrap();
                let b_t = gpu.from_f32(&b, &b_shape).unwrap();
                let c = gpu.matmul(&a_t, &b_t, None, spec).unwrap();
                gpu.to_f32(&c).unwrap()
            };
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            let large = bits(run(MatmulTile::Large));
            for tile in [MatmulTile::Medium, MatmulTile::Small] {
                assert_eq!(
                    large,
                    bits(run(tile)),
                    "{batch}x{m}x{n}x{k} trans ({trans_a}, {trans_b}), {tile:?}"
                );
            }
        }
    }
}

/// A batch summed in one GEMM ([`Device::matmul_sum_batch`]) against the reference's sum, for
/// each kernel and transpose and a broadcast operand, at shapes the chunk rule splits into one
/// slice, equal slices and an uneven last one; every tile gives the same bits.
#[test]
fn matmul_sum_batch_matches_the_reference() {
    let Some((gpu, cpu)) = devices("matmul_sum_batch") else {
        return;
    };
    // (batch, M, N, K, A broadcast)
    for (i, &(batch, m, n, k, shared_a)) in [
        (64, 20, 40, 30, false),
        (7, 5, 3, 300, false),
        (13, 33, 70, 9, true),
        (1, 17, 31, 7, false),
        (300, 3, 2, 1, false),
    ]
    .iter()
    .enumerate()
    {
        let a_batch = if shared_a { 1 } else { batch };
        let a = random_f32(i as u64 + 70, a_batch * m * k, -1.0, 1.0);
        let b = random_f32(i as u64 + 90, batch * k * n, -1.0, 1.0);
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let a_shape = match (shared_a, trans_a) {
                (true, false) => vec![m, k],
                (true, true) => vec![k, m],
                (false, false) => vec![batch, m, k],
                (false, true) => vec![batch, k, m],
            };
            let b_shape = if trans_b {
                [batch, n, k]
            } else {
                [batch, k, n]
            };
            let run = |d: &Device, variant, tile| {
                let spec = MatmulSpec {
                    trans_a,
                    trans_b,
                    variant,
                    tile,
                    ..Default::default()
                };
                let a_t = d.from_f32(&a, &a_shape).unwrap();
                let b_t = d.from_f32(&b, &b_shape).unwrap();
                let c = d.matmul_sum_batch(&a_t, &b_t, spec).unwrap();
                assert_eq!(c.shape(), &[m, n]);
                c
            };
            let name = format!("sum of {batch} x ({m}x{n}x{k}), trans ({trans_a}, {trans_b})");
            for (variant, tile) in [
                (MatmulVariant::Naive, MatmulTile::Auto),
                (MatmulVariant::Tiled, MatmulTile::Large),
                (MatmulVariant::Tiled, MatmulTile::Medium),
                (MatmulVariant::Tiled, MatmulTile::Small),
            ] {
                let tol = Tolerance::reduction(batch * k);
                same_on_both(&name, &gpu, &cpu, tol, |d| run(d, variant, tile));
            }
            let bits = |tile| {
                let c = run(&gpu, MatmulVariant::Tiled, tile);
                let v = gpu.to_f32(&c).unwrap();
                v.into_iter().map(f32::to_bits).collect::<Vec<_>>()
            };
            let large = bits(MatmulTile::Large);
            for tile in [MatmulTile::Medium, MatmulTile::Small] {
                assert_eq!(large, bits(tile), "{name}, {tile:?}");
            }
        }
    }
}

#[test]
fn batched_matmul_broadcasts_a_shared_operand() {
    let Some((gpu, cpu)) = devices("batched_matmul") else {
        return;
    };
    let (batch, m, n, k) = (5, 33, 19, 70);
    let a = random_f32(1, batch * m * k, -1.0, 1.0);
    let w = random_f32(2, k * n, -1.0, 1.0);
    for variant in [MatmulVariant::Naive, MatmulVariant::Tiled] {
        same_on_both("batched matmul", &gpu, &cpu, Tolerance::reduction(k), |d| {
            let spec = MatmulSpec {
                variant,
                ..Default::default()
            };
            let a_t = d.from_f32(&a, &[batch, m, k]).unwrap();
            let c = d
                .matmul(&a_t, &d.from_f32(&w, &[k, n]).unwrap(), None, spec)
                .unwrap();
            assert_eq!(c.shape(), &[batch, m, n]);
            c
        });
    }
}

#[test]
fn matmul_past_65535_workgroups_in_one_dimension() {
    let Some((gpu, cpu)) = devices("matmul_past_65535_workgroups") else {
        return;
    };
    // Tiled: ceil(M / tile rows) tiles > 65,535; naive: M * N / 64 workgroups > 65,535. The
    // tile is named: this test is about dispatch sizes, not tuning. Every tile's kernel comes
    // from the one generator with the same indexing, so the small one stands for all three: past
    // 65,535 tiles the large one computes 8 billion padded products on a software adapter (15 s).
    let (n, k) = (1, 2);
    for (variant, tile, rows) in [
        (MatmulVariant::Naive, MatmulTile::Auto, 64),
        (MatmulVariant::Tiled, MatmulTile::Small, 32),
    ] {
        let m = 65_536 * rows + 37;
        let a = random_f32(3, m * k, -1.0, 1.0);
        let b = random_f32(4, k * n, -1.0, 1.0);
        same_on_both("tall matmul", &gpu, &cpu, Tolerance::reduction(k), |d| {
            let spec = MatmulSpec {
                variant,
                tile,
                ..Default::default()
            };
            d.matmul(
                &d.from_f32(&a, &[m, k]).unwrap(),
                &d.from_f32(&b, &[k, n]).unwrap(),
                None,
                spec,
            )
            .unwrap()
        });
    }
}

const LENGTHS: [usize; 6] = [1, 2, 255, 257, 1000, 4099];

#[test]
fn binary_ops_with_same_shape_row_and_scalar_broadcast() {
    let Some((gpu, cpu)) = devices("binary_ops") else {
        return;
    };
    for op in BinaryOp::ALL {
        for (rows, cols) in [(1, 1), (3, 257), (129, 7)] {
            let a = random_f32(5, rows * cols, -2.0, 2.0);
            let b = random_f32(6, rows * cols, 0.5, 2.0);
            for b_shape in [vec![rows, cols], vec![cols], vec![1]] {
                let b_len: usize = b_shape.iter().product();
                let name = format!("{op:?} {rows}x{cols} by {b_shape:?}");
                same_on_both(&name, &gpu, &cpu, Tolerance::ELEMENTWISE, |d| {
                    let a_t = d.from_f32(&a, &[rows, cols]).unwrap();
                    d.binary(op, &a_t, &d.from_f32(&b[..b_len], &b_shape).unwrap())
                        .unwrap()
                });
            }
        }
    }
}

#[test]
fn unary_ops_and_their_derivatives() {
    let Some((gpu, cpu)) = devices("unary_ops") else {
        return;
    };
    for op in UnaryOp::ALL {
        for &n in &LENGTHS {
            // log needs positive inputs; the rest see both signs and large magnitudes.
            let (lo, hi) = if op.positive_only() {
                (0.01, 5.0)
            } else {
                (-20.0, 20.0)
            };
            let x = random_f32(7 + n as u64, n, lo, hi);
            let dy = random_f32(8 + n as u64, n, -1.0, 1.0);
            same_on_both(
                &format!("{op:?} n={n}"),
                &gpu,
                &cpu,
                Tolerance::TRANSCENDENTAL,
                |d| d.unary(op, &d.from_f32(&x, &[n]).unwrap()).unwrap(),
            );
            same_on_both(
                &format!("{op:?}' n={n}"),
                &gpu,
                &cpu,
                Tolerance::TRANSCENDENTAL,
                |d| {
                    let x_t = d.from_f32(&x, &[n]).unwrap();
                    d.unary_backward(op, &x_t, &d.from_f32(&dy, &[n]).unwrap())
                        .unwrap()
                },
            );
        }
    }
}

#[test]
fn elementwise_past_65535_workgroups() {
    let Some((gpu, cpu)) = devices("elementwise_past_65535_workgroups") else {
        return;
    };
    let n = 65_535 * 256 + 300;
    let x = random_f32(9, n, -3.0, 3.0);
    same_on_both(
        "relu over 16.8M elements",
        &gpu,
        &cpu,
        Tolerance::EXACT,
        |d| {
            d.unary(UnaryOp::Relu, &d.from_f32(&x, &[n]).unwrap())
                .unwrap()
        },
    );
    same_on_both(
        "fill over 16.8M elements",
        &gpu,
        &cpu,
        Tolerance::EXACT,
        |d| d.full(&[n], 0.25).unwrap(),
    );
}

#[test]
fn reductions_along_every_axis() {
    let Some((gpu, cpu)) = devices("reductions") else {
        return;
    };
    for shape in [
        vec![1],
        vec![300],
        vec![3, 5, 7],
        vec![2, 1000],
        vec![1000, 3],
        vec![4, 1, 65],
        // Many outputs: a thread per output (a moderate axis), a workgroup per output (long).
        vec![40, 1100],
        vec![1100, 50],
        vec![1030, 1100],
    ] {
        let len: usize = shape.iter().product();
        let x = random_f32(10 + len as u64, len, -1.0, 1.0);
        for axis in 0..shape.len() {
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                let name = format!("{op:?} {shape:?} axis {axis}");
                same_on_both(&name, &gpu, &cpu, Tolerance::reduction(shape[axis]), |d| {
                    d.reduce(op, &d.from_f32(&x, &shape).unwrap(), axis)
                        .unwrap()
                });
            }
            let got = gpu
                .to_u32(
                    &gpu.argmax(&gpu.from_f32(&x, &shape).unwrap(), axis)
                        .unwrap(),
                )
                .unwrap();
            let want = cpu
                .to_u32(
                    &cpu.argmax(&cpu.from_f32(&x, &shape).unwrap(), axis)
                        .unwrap(),
                )
                .unwrap();
            assert_eq!(got, want, "argmax {shape:?} axis {axis}");
        }
    }
}

#[test]
fn argmax_takes_the_first_of_tied_maxima() {
    let Some(gpu) = gpu_device("argmax_ties") else {
        return;
    };
    let mut x = vec![0.0f32; 200];
    x[70] = 5.0;
    x[3] = 5.0;
    x[199] = 5.0;
    let idx = gpu
        .to_u32(
            &gpu.argmax(&gpu.from_f32(&x, &[1, 200]).unwrap(), 1)
                .unwrap(),
        )
        .unwrap();
    assert_eq!(idx, vec![3]);
}

#[test]
fn softmax_and_log_softmax_rows_including_huge_logits() {
    let Some((gpu, cpu)) = devices("softmax") else {
        return;
    };
    for (rows, cols) in [(1, 1), (7, 13), (2, 1000), (300, 10)] {
        let mut x = random_f32(11, rows * cols, -30.0, 30.0);
        x[0] = 1010.0; // overflow bait: exp(1010) is inf without the max subtraction
        for log in [false, true] {
            let name = format!("softmax log={log} {rows}x{cols}");
            same_on_both(&name, &gpu, &cpu, Tolerance::TRANSCENDENTAL, |d| {
                let t = d.from_f32(&x, &[rows, cols]).unwrap();
                if log {
                    d.log_softmax(&t).unwrap()
                } else {
                    d.softmax(&t).unwrap()
                }
            });
        }
    }
    let t = gpu.from_f32(&[1010.0, 1000.0, 990.0], &[1, 3]).unwrap();
    let s = gpu.to_f32(&gpu.softmax(&t).unwrap()).unwrap();
    assert!(s.iter().all(|v| v.is_finite()));
    assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
}

#[test]
fn embedding_forward_and_deterministic_backward() {
    let Some((gpu, cpu)) = devices("embedding") else {
        return;
    };
    for (vocab, dim, n) in [(1, 1, 1), (10, 3, 37), (50, 64, 992), (7, 5, 300)] {
        let table = random_f32(12, vocab * dim, -0.05, 0.05);
        let ids = random_u32(13, n, vocab as u32); // many repeats when n > vocab
        let dout = random_f32(14, n * dim, -1.0, 1.0);
        let name = format!("embedding V={vocab} E={dim} N={n}");
        same_on_both(&name, &gpu, &cpu, Tolerance::EXACT, |d| {
            let table_t = d.from_f32(&table, &[vocab, dim]).unwrap();
            d.embedding(&table_t, &d.from_u32(&ids, &[n]).unwrap())
                .unwrap()
        });
        same_on_both(
            &format!("one_hot V={vocab} N={n}"),
            &gpu,
            &cpu,
            Tolerance::EXACT,
            |d| d.one_hot(&d.from_u32(&ids, &[n]).unwrap(), vocab).unwrap(),
        );
        let backward = |d: &Device| {
            let dtable = d.from_f32(&vec![1.0; vocab * dim], &[vocab, dim]).unwrap();
            let dout_t = d.from_f32(&dout, &[n, dim]).unwrap();
            d.embedding_backward(&dtable, &dout_t, &d.from_u32(&ids, &[n]).unwrap())
                .unwrap();
            dtable
        };
        // Same summation order as the reference: equal to the last bit, and so from run to run.
        same_on_both(
            &format!("{name} backward"),
            &gpu,
            &cpu,
            Tolerance::EXACT,
            backward,
        );
        assert_eq!(
            gpu.to_f32(&backward(&gpu)).unwrap(),
            gpu.to_f32(&backward(&gpu)).unwrap()
        );
    }
}

#[test]
fn dropout_masks_match_the_reference_bit_for_bit() {
    let Some((gpu, cpu)) = devices("dropout") else {
        return;
    };
    let n = 100_003;
    let x = random_f32(15, n, -1.0, 1.0);
    for (rate, seed, offset) in [(0.2, 42, 0), (0.5, 7, 12345), (0.0, 1, 0)] {
        let run = |d: &Device| {
            d.dropout(&d.from_f32(&x, &[n]).unwrap(), rate, seed, offset)
                .unwrap()
        };
        let (g_out, g_mask) = run(&gpu);
        let (c_out, c_mask) = run(&cpu);
        let g_mask = gpu.to_f32(&g_mask).unwrap();
        assert_eq!(g_mask, cpu.to_f32(&c_mask).unwrap(), "mask rate={rate}");
        let (g_out, c_out) = (gpu.to_f32(&g_out).unwrap(), cpu.to_f32(&c_out).unwrap());
        assert_close("dropout out", &g_out, &c_out, Tolerance::ELEMENTWISE);
        let dropped = g_mask.iter().filter(|&&m| m == 0.0).count() as f32 / n as f32;
        assert!(
            (dropped - rate).abs() < 0.01,
            "rate {rate}: dropped {dropped}"
        );
    }
    let mask_at = |offset| {
        let x_t = gpu.from_f32(&x, &[n]).unwrap();
        gpu.to_f32(&gpu.dropout(&x_t, 0.5, 9, offset).unwrap().1)
            .unwrap()
    };
    assert_eq!(
        mask_at(0),
        mask_at(0),
        "the same seed and offset give the same mask"
    );
    assert_ne!(
        mask_at(0),
        mask_at(n as u32),
        "a new offset gives a new mask"
    );
}

#[test]
fn fused_optimizers_update_packed_parameters_like_the_reference() {
    // A device of its own: the test counts dispatches, which other tests on a shared device
    // would add to while it runs.
    let Some(gpu) = private_gpu_device("optimizers") else {
        return;
    };
    let cpu = Device::cpu_reference();
    let shapes = vec![vec![3, 5], vec![1], vec![257], vec![64, 3]];
    let run = |d: &Device, which: &str| -> Vec<f32> {
        let (w, views) = d.packed_zeros(&shapes).unwrap();
        for (i, v) in views.iter().enumerate() {
            d.write_f32(v, &random_f32(16 + i as u64, v.len(), -1.0, 1.0))
                .unwrap();
        }
        let (m, _) = d.packed_zeros(&shapes).unwrap();
        let (v, _) = d.packed_zeros(&shapes).unwrap();
        for step in 1..=3 {
            let (g, gviews) = d.packed_zeros(&shapes).unwrap();
            for (i, gv) in gviews.iter().enumerate() {
                d.write_f32(gv, &random_f32(100 * step + i as u64, gv.len(), -1.0, 1.0))
                    .unwrap();
            }
            let before = d.counters().dispatches;
            match which {
                "adam" => d.adam_update(&AdamConfig::default(), step, &w, &g, &m, &v),
                "adamw" => {
                    let cfg = AdamConfig {
                        weight_decay: 0.1,
                        ..AdamConfig::adamw()
                    };
                    d.adam_update(&cfg, step, &w, &g, &m, &v)
                }
                "rmsprop" => {
                    let cfg = RmspropConfig {
                        momentum: if step == 2 { 0.0 } else { 0.7 },
                        weight_decay: 0.05,
                        ..RmspropConfig::default()
                    };
                    d.rmsprop_update(&cfg, &w, &g, &m, &v)
                }
                _ => {
                    let cfg = SgdConfig {
                        lr: 0.1,
                        momentum: 0.9,
                        nesterov: step == 2,
                    };
                    d.sgd_update(&cfg, &w, &g, &m)
                }
            }
            .unwrap();
            assert_eq!(
                d.counters().dispatches - before,
                1,
                "one dispatch for every parameter"
            );
        }
        d.to_f32(&w).unwrap()
    };
    for which in ["adam", "adamw", "rmsprop", "sgd"] {
        let tol = Tolerance::new(1e-6, 1e-5);
        assert_close(which, &run(&gpu, which), &run(&cpu, which), tol);
    }
}

/// At p = 0 or 1 the clamp leaves log(~2e-7), where `1 - q + EPS` cancels catastrophically and a
/// shader compiler that reassociates it (lavapipe does) moves the result by ~0.5%. The value stays
/// finite and close; the gradient is zero outside the clamp on both devices.
#[test]
fn binary_cross_entropy_at_the_clamp_edges() {
    let Some((gpu, cpu)) = devices("bce_clamp_edges") else {
        return;
    };
    let (p, y) = ([0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]);
    let run = |d: &Device| {
        let (pt, yt) = (d.from_f32(&p, &[4]).unwrap(), d.from_f32(&y, &[4]).unwrap());
        let loss = d
            .to_f32(&d.loss_forward(Loss::Bce, &pt, &yt).unwrap())
            .unwrap();
        let grad = d
            .to_f32(&d.loss_backward(Loss::Bce, &pt, &yt, 1.0).unwrap())
            .unwrap();
        (loss, grad)
    };
    let ((gl, gg), (cl, cg)) = (run(&gpu), run(&cpu));
    assert!(gl.iter().all(|v| v.is_finite()), "{gl:?}");
    assert_close("bce at the edges", &gl, &cl, Tolerance::new(1e-5, 1e-2));
    assert!(
        cl[1] > 15.0 && cl[2] > 15.0,
        "confident and wrong costs about -ln(1e-7): {cl:?}"
    );
    assert_eq!(gg, vec![0.0; 4]);
    assert_eq!(cg, vec![0.0; 4]);
}

#[test]
fn losses_forward_and_backward() {
    let Some((gpu, cpu)) = devices("losses") else {
        return;
    };
    for (rows, cols) in [(1, 1), (16, 1), (257, 1), (3, 10), (64, 10)] {
        let n = rows * cols;
        let probs = random_f32(20, n, 0.001, 0.999);
        let labels: Vec<f32> = random_u32(21, n, 2).into_iter().map(|v| v as f32).collect();
        let logits = random_f32(22, n, -30.0, 30.0);
        let row_probs = random_f32(23, n, 0.01, 1.0);
        let one_hot: Vec<f32> = (0..n)
            .map(|i| {
                if i % cols == (i / cols) % cols {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let cases = [
            (Loss::Bce, &probs, &labels),
            (Loss::BceLogits, &logits, &labels),
            (Loss::CceLogits, &logits, &one_hot),
            (Loss::Cce, &row_probs, &one_hot),
            (Loss::Mse, &logits, &probs),
            (Loss::Mae, &logits, &probs),
            (Loss::Huber { delta: 1.0 }, &probs, &row_probs),
            (Loss::Huber { delta: 7.5 }, &logits, &labels),
        ];
        for (loss, pred, target) in cases {
            let tol = Tolerance::TRANSCENDENTAL;
            let inputs = |d: &Device| {
                (
                    d.from_f32(pred, &[rows, cols]).unwrap(),
                    d.from_f32(target, &[rows, cols]).unwrap(),
                )
            };
            same_on_both(
                &format!("{loss:?} forward {rows}x{cols}"),
                &gpu,
                &cpu,
                tol,
                |d| {
                    let (p, t) = inputs(d);
                    d.loss_forward(loss, &p, &t).unwrap()
                },
            );
            same_on_both(
                &format!("{loss:?} backward {rows}x{cols}"),
                &gpu,
                &cpu,
                tol,
                |d| {
                    let (p, t) = inputs(d);
                    d.loss_backward(loss, &p, &t, 1.0 / rows as f32).unwrap()
                },
            );
        }
    }
}

#[test]
fn axpy_accumulates_in_place_into_views() {
    let Some((gpu, cpu)) = devices("axpy") else {
        return;
    };
    for &n in &LENGTHS {
        let x = random_f32(30, n, -1.0, 1.0);
        let start = random_f32(31, n, -1.0, 1.0);
        same_on_both(
            &format!("axpy n={n}"),
            &gpu,
            &cpu,
            Tolerance::ELEMENTWISE,
            |d| {
                let (_, views) = d.packed_zeros(&[vec![3], vec![n]]).unwrap();
                d.write_f32(&views[1], &start).unwrap();
                let xt = d.from_f32(&x, &[n]).unwrap();
                d.axpy(&views[1], &xt, 0.5).unwrap();
                d.axpy(&views[1], &xt, -2.0).unwrap();
                views[1].clone()
            },
        );
    }
    let t = gpu.from_f32(&[1.0, 2.0], &[2]).unwrap();
    gpu.zero_(&t).unwrap();
    assert_eq!(gpu.to_f32(&t).unwrap(), vec![0.0, 0.0]);
}

#[test]
fn softmax_backward_matches_reference() {
    let Some((gpu, cpu)) = devices("softmax_backward") else {
        return;
    };
    for (rows, cols) in [(1, 1), (7, 13), (3, 1000)] {
        let x = random_f32(32, rows * cols, -5.0, 5.0);
        let dy = random_f32(33, rows * cols, -1.0, 1.0);
        for log in [false, true] {
            let name = format!("softmax_backward log={log} {rows}x{cols}");
            same_on_both(&name, &gpu, &cpu, Tolerance::reduction(cols), |d| {
                let xt = d.from_f32(&x, &[rows, cols]).unwrap();
                let y = if log {
                    d.log_softmax(&xt).unwrap()
                } else {
                    d.softmax(&xt).unwrap()
                };
                d.softmax_backward(&y, &d.from_f32(&dy, &[rows, cols]).unwrap(), log)
                    .unwrap()
            });
        }
    }
}

#[test]
fn accuracy_metrics_match_reference() {
    let Some((gpu, cpu)) = devices("metrics") else {
        return;
    };
    let n = 1001;
    let p = random_f32(34, n, 0.0, 1.0);
    let y: Vec<f32> = random_u32(35, n, 2).into_iter().map(|v| v as f32).collect();
    same_on_both("binary accuracy", &gpu, &cpu, Tolerance::EXACT, |d| {
        let m = Metric::BinaryAccuracy { threshold: 0.5 };
        d.metric(
            m,
            &d.from_f32(&p, &[n]).unwrap(),
            &d.from_f32(&y, &[n]).unwrap(),
        )
        .unwrap()
    });
    let (rows, cols) = (129, 10);
    let logits = random_f32(36, rows * cols, -3.0, 3.0);
    let one_hot: Vec<f32> = (0..rows * cols)
        .map(|i| (i % cols == (i / cols) % cols) as u32 as f32)
        .collect();
    same_on_both("categorical accuracy", &gpu, &cpu, Tolerance::EXACT, |d| {
        let l = d.from_f32(&logits, &[rows, cols]).unwrap();
        d.metric(
            Metric::CategoricalAccuracy,
            &l,
            &d.from_f32(&one_hot, &[rows, cols]).unwrap(),
        )
        .unwrap()
    });
}

#[test]
fn narrow_and_slice_assign_match_reference_on_every_axis() {
    let Some((gpu, cpu)) = devices("narrow_and_slice_assign") else {
        return;
    };
    let shape = [3, 5, 7];
    let data = random_f32(71, 105, -1.0, 1.0);
    for axis in 0..3 {
        for (start, len) in [(0, 1), (1, 2), (0, shape[axis])] {
            same_on_both("narrow", &gpu, &cpu, Tolerance::EXACT, |d| {
                d.narrow(&d.from_f32(&data, &shape).unwrap(), axis, start, len)
                    .unwrap()
            });
            for accumulate in [false, true] {
                same_on_both("slice_assign", &gpu, &cpu, Tolerance::ELEMENTWISE, |d| {
                    let mut block = shape;
                    block[axis] = len;
                    let n: usize = block.iter().product();
                    let src = d.from_f32(&random_f32(72, n, -1.0, 1.0), &block).unwrap();
                    let dst = d.from_f32(&data, &shape).unwrap();
                    d.slice_assign(&dst, axis, start, &src, accumulate).unwrap();
                    dst
                });
            }
        }
    }
    // Host check of the layout itself: the middle axis, entries 1..3.
    let got = cpu
        .to_f32(
            &cpu.narrow(&cpu.from_f32(&data, &shape).unwrap(), 1, 1, 2)
                .unwrap(),
        )
        .unwrap();
    let want: Vec<f32> = (0..3)
        .flat_map(|o| (1..3).flat_map(move |a| (0..7).map(move |i| (o, a, i))))
        .map(|(o, a, i)| data[(o * 5 + a) * 7 + i])
        .collect();
    assert_eq!(got, want);
    let e = cpu
        .narrow(&cpu.from_f32(&data, &shape).unwrap(), 1, 4, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
}

/// Shape pairs for broadcasting: per-channel NCHW both ways round, outer products, a scalar
/// against a matrix, dimensions of 1 in both, and a large one.
const BROADCAST_PAIRS: [(&[usize], &[usize]); 7] = [
    (&[2, 4, 3, 3], &[4, 1, 1]),
    (&[4, 1, 1], &[2, 4, 3, 3]),
    (&[3, 1, 5], &[1, 4, 1]),
    (&[7], &[3, 1]),
    (&[1], &[5, 6]),
    (&[2, 1, 3, 1, 2], &[1, 5, 1, 4, 2]),
    (&[300, 1, 257], &[1, 70, 1]),
];

#[test]
fn broadcast_binary_ops_copies_and_sums() {
    let Some((gpu, cpu)) = devices("broadcast") else {
        return;
    };
    for (i, (sa, sb)) in BROADCAST_PAIRS.iter().enumerate() {
        let a = random_f32(100 + i as u64, sa.iter().product(), -2.0, 2.0);
        let b = random_f32(200 + i as u64, sb.iter().product(), 0.5, 2.0);
        let out = broadcast_shape(sa, sb).unwrap();
        for op in BinaryOp::ALL {
            same_on_both(
                &format!("{op:?} {sa:?} {sb:?}"),
                &gpu,
                &cpu,
                Tolerance::ELEMENTWISE,
                |d| {
                    let y = d
                        .binary(
                            op,
                            &d.from_f32(&a, sa).unwrap(),
                            &d.from_f32(&b, sb).unwrap(),
                        )
                        .unwrap();
                    assert_eq!(y.shape(), out.as_slice());
                    y
                },
            );
        }
        for (x, s) in [(&a, sa), (&b, sb)] {
            same_on_both(
                &format!("broadcast_to {s:?} {out:?}"),
                &gpu,
                &cpu,
                Tolerance::EXACT,
                |d| d.broadcast_to(&d.from_f32(x, s).unwrap(), &out).unwrap(),
            );
            let full = random_f32(300 + i as u64, out.iter().product(), -1.0, 1.0);
            let terms = out.iter().product::<usize>() / s.iter().product::<usize>();
            let tol = Tolerance::reduction(terms);
            same_on_both(&format!("sum_to {out:?} {s:?}"), &gpu, &cpu, tol, |d| {
                d.sum_to(&d.from_f32(&full, &out).unwrap(), s).unwrap()
            });
        }
    }
}

/// Gradient clipping on the device against the reference: by value (one dispatch) and by global
/// norm (three, nothing read back), over a packed buffer past one workgroup's share; a norm
/// under the limit leaves the gradients as they were, to the rounding of alpha * (1 / alpha).
#[test]
fn gradient_clipping_matches_the_reference() {
    let Some(gpu) = private_gpu_device("clipping") else {
        return;
    };
    let cpu = Device::cpu_reference();
    let n = 3 * 256 * 256 + 77;
    let g0 = random_f32(5, n, -1.0, 1.0);
    let run = |d: &Device, how: &str, limit: f32| -> (Vec<f32>, u64) {
        let g = d.from_f32(&g0, &[n]).unwrap();
        let before = d.counters().dispatches;
        match how {
            "norm" => d.clip_by_global_norm_(&g, limit).unwrap(),
            _ => d.clip_by_value_(&g, limit).unwrap(),
        }
        let dispatches = d.counters().dispatches - before;
        (d.to_f32(&g).unwrap(), dispatches)
    };
    let norm = g0.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    for (how, limit, dispatches) in [("norm", 10.0, 3), ("norm", 1e4, 3), ("value", 0.3, 1)] {
        let (got, count) = run(&gpu, how, limit);
        let (want, _) = run(&cpu, how, limit);
        assert_eq!(count, dispatches, "{how}");
        assert_close(
            &format!("{how} {limit}"),
            &got,
            &want,
            Tolerance::new(1e-6, 1e-5),
        );
        if how == "norm" {
            let after = got.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            let expect = norm.min(limit as f64);
            assert!(
                (after - expect).abs() < 1e-4 * expect,
                "{how} {limit}: norm {after}"
            );
        }
    }
    // Keras's worked case: [3, 4] has norm 5; clipped to 1 it is [0.6, 0.8].
    for d in [&gpu, &cpu] {
        let g = d.from_f32(&[3.0, 4.0], &[2]).unwrap();
        d.clip_by_global_norm_(&g, 1.0).unwrap();
        assert_close(
            "[3, 4]",
            &d.to_f32(&g).unwrap(),
            &[0.6, 0.8],
            Tolerance::new(1e-7, 0.0),
        );
        // A non-finite norm makes every gradient NaN, as Keras's clip_by_global_norm does.
        let g = d.from_f32(&[f32::INFINITY, 1.0], &[2]).unwrap();
        d.clip_by_global_norm_(&g, 1.0).unwrap();
        assert!(d.to_f32(&g).unwrap().iter().all(|x| x.is_nan()));
        assert!(d.clip_by_value_(&g, 0.0).is_err());
    }
}
