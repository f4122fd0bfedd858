//! The CPU device's fast kernels (`kiln_device::cpu`) against the plain references they replace:
//! every transpose, batch broadcast, bias and activation, odd sizes and sizes past the
//! micro-kernel's blocks; and the same bits on every run.

use kiln_device::params::{Activation, MatmulSpec};
use kiln_device::testing::{assert_close, random_f32, random_u32, Tolerance};
use kiln_device::{cpu, matmul_params, reference};

fn case(
    a_shape: &[usize],
    b_shape: &[usize],
    spec: MatmulSpec,
    bias: bool,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let p = matmul_params(a_shape, b_shape, None, &spec).unwrap();
    let n = p.n as usize;
    let a = random_f32(seed, a_shape.iter().product(), -1.0, 1.0);
    let b = random_f32(seed + 1, b_shape.iter().product(), -1.0, 1.0);
    let bias_v = bias.then(|| random_f32(seed + 2, n, -1.0, 1.0));
    // C starts as NaN: the device hands the fast matmul an unzeroed buffer, which it must
    // overwrite (sgemm with beta 0 never reads C).
    let (mut fast, mut slow) = (vec![f32::NAN; p.out_len()], vec![0.0; p.out_len()]);
    cpu::matmul(&p, &spec, &a, &b, bias_v.as_deref(), &mut fast);
    reference::matmul(&p, &spec, &a, &b, bias_v.as_deref(), &mut slow);
    (fast, slow)
}

#[test]
fn fast_matmul_matches_the_reference() {
    let shapes: &[(&[usize], &[usize])] = &[
        (&[1, 1], &[1, 1]),
        (&[3, 5], &[5, 7]),
        (&[17, 33], &[33, 9]),
        (&[130, 70], &[70, 150]),
        (&[300, 129], &[129, 65]),
        (&[4, 6, 5], &[4, 5, 3]),
        (&[4, 6, 5], &[5, 3]),
        (&[6, 5], &[4, 5, 3]),
    ];
    let mut seed = 0;
    for &(a, b) in shapes {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for (bias, act) in [
                    (false, Activation::Identity),
                    (true, Activation::Relu),
                    (true, Activation::Tanh),
                    (false, Activation::Sigmoid),
                ] {
                    // Stored shapes for the transposes: swap the last two dimensions.
                    let stored = |s: &[usize], t: bool| {
                        let mut v = s.to_vec();
                        if t {
                            let r = v.len();
                            v.swap(r - 2, r - 1);
                        }
                        v
                    };
                    let spec = MatmulSpec {
                        trans_a,
                        trans_b,
                        activation: act,
                        ..MatmulSpec::default()
                    };
                    seed += 3;
                    let (fast, slow) =
                        case(&stored(a, trans_a), &stored(b, trans_b), spec, bias, seed);
                    let k = a[a.len() - 1] as f32;
                    assert_close(
                        &format!(
                            "A {a:?} B {b:?} trans ({trans_a}, {trans_b}) bias {bias} {act:?}"
                        ),
                        &fast,
                        &slow,
                        Tolerance::new(1e-6 * k.sqrt() * 4.0, 1e-5),
                    );
                }
            }
        }
    }
}

/// Batch sums ([`kiln_device::params::MatmulParams::chunk`] > 1): slices of several products,
/// an uneven last one, transposes and a broadcast operand.
#[test]
fn fast_matmul_sums_chunks_of_the_batch_like_the_reference() {
    let shapes: &[(&[usize], &[usize], u32)] = &[
        (&[10, 6, 5], &[10, 5, 3], 3),
        (&[10, 6, 5], &[10, 5, 3], 10),
        (&[6, 5], &[9, 5, 4], 4),
        (&[64, 20, 30], &[64, 30, 40], 16),
    ];
    for (seed, &(a_shape, b_shape, chunk)) in shapes.iter().enumerate() {
        let spec = MatmulSpec::default();
        let mut p = matmul_params(a_shape, b_shape, None, &spec).unwrap();
        p.chunk = chunk;
        let a = random_f32(seed as u64, a_shape.iter().product(), -1.0, 1.0);
        let b = random_f32(seed as u64 + 7, b_shape.iter().product(), -1.0, 1.0);
        let (mut fast, mut slow) = (vec![0.0; p.out_len()], vec![0.0; p.out_len()]);
        cpu::matmul(&p, &spec, &a, &b, None, &mut fast);
        reference::matmul(&p, &spec, &a, &b, None, &mut slow);
        assert_eq!(fast.len(), p.slices() as usize * (p.m * p.n) as usize);
        let tol = Tolerance::reduction(chunk as usize * p.k as usize);
        assert_close(
            &format!("{a_shape:?} {b_shape:?} chunk {chunk}"),
            &fast,
            &slow,
            tol,
        );
    }
}

#[test]
fn fast_matmul_gives_the_same_bits_every_run() {
    let spec = MatmulSpec::default();
    let (first, _) = case(&[256, 300], &[300, 200], spec, true, 9);
    for _ in 0..3 {
        assert_eq!(case(&[256, 300], &[300, 200], spec, true, 9).0, first);
    }
}

#[test]
fn fast_optimizers_give_the_reference_bits() {
    use kiln_device::params::{AdamConfig, RmspropConfig, SgdConfig};
    // Past several chunks, and an odd tail.
    let n = 3 * (1 << 14) + 77;
    let g = random_f32(1, n, -1.0, 1.0);
    let (w0, m0) = (random_f32(2, n, -1.0, 1.0), random_f32(3, n, -0.1, 0.1));
    let v0 = random_f32(4, n, 0.0, 0.1);
    let p = AdamConfig::default().params(n as u32, 3);
    let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
    cpu::adam_update(&p, &mut w, &g, &mut m, &mut v);
    let (mut rw, mut rm, mut rv) = (w0.clone(), m0.clone(), v0.clone());
    reference::adam_update(&p, &mut rw, &g, &mut rm, &mut rv);
    assert_ne!(rm, m0, "the update moved the moments");
    assert_eq!((w, m, v), (rw, rm, rv));

    let p = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
    }
    .params(n as u32);
    let (mut w, mut u) = (w0.clone(), m0.clone());
    cpu::sgd_update(&p, &mut w, &g, &mut u);
    let (mut rw, mut ru) = (w0.clone(), m0.clone());
    reference::sgd_update(&p, &mut rw, &g, &mut ru);
    assert_eq!((w, u), (rw, ru));

    let p = RmspropConfig {
        momentum: 0.5,
        weight_decay: 0.01,
        ..RmspropConfig::default()
    }
    .params(n as u32);
    let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), v0.clone());
    cpu::rmsprop_update(&p, &mut w, &g, &mut m, &mut v);
    let (mut rw, mut rm, mut rv) = (w0.clone(), m0.clone(), v0.clone());
    reference::rmsprop_update(&p, &mut rw, &g, &mut rm, &mut rv);
    assert_ne!(rv, v0, "the update moved the mean square");
    assert_eq!((w, m, v), (rw, rm, rv));
}

#[test]
fn fast_embedding_backward_gives_the_reference_bits() {
    use kiln_device::params::EmbeddingParams;
    let (vocab, dim, n) = (40, 7, 500);
    // Many repeats per id, and ids past the vocabulary (skipped).
    let ids = random_u32(5, n, vocab + 3);
    let dout = random_f32(6, n * dim, -1.0, 1.0);
    let table = random_f32(7, vocab as usize * dim, -1.0, 1.0);
    let p = EmbeddingParams {
        n: n as u32,
        dim: dim as u32,
        vocab,
        _pad: 0,
    };
    let (mut fast, mut slow) = (table.clone(), table.clone());
    cpu::embedding_backward(&p, &dout, &ids, &mut fast);
    reference::embedding_backward(&p, &dout, &ids, &mut slow);
    assert_eq!(fast, slow);
    assert_ne!(slow, table);
}

#[test]
fn fast_reduce_gives_the_reference_bits() {
    use kiln_device::params::{ReduceOp, ReduceParams};
    let shapes: &[&[usize]] = &[
        &[1],
        &[5, 1],
        &[3, 992, 256],
        &[2, 7, 3],
        &[70_000],
        &[4, 9000],
    ];
    for shape in shapes {
        let len: usize = shape.iter().product();
        let mut x = random_f32(8, len, -1.0, 1.0);
        // A run of negative zeros: a sum of them is -0.0 in the reference.
        for v in x.iter_mut().step_by(shape[shape.len() - 1]) {
            *v = -0.0;
        }
        for axis in 0..shape.len() {
            let p = ReduceParams::for_axis(shape, axis);
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                let (mut fast, mut slow) = (vec![1.0; p.out_len()], vec![2.0; p.out_len()]);
                cpu::reduce(&p, op, &x, &mut fast);
                reference::reduce(&p, op, &x, &mut slow);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&slow), "{shape:?} axis {axis} {op:?}");
            }
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn fast_conv_kernels_give_the_reference_bits() {
    use kiln_device::params::{Conv2dSpec, ConvParams};
    // (x shape, weight shape, stride, pad, dilation): padding, strides, dilation, channels.
    type Case = ([usize; 4], [usize; 4], usize, usize, usize);
    let cases: &[Case] = &[
        ([2, 1, 7, 7], [3, 1, 3, 3], 1, 0, 1),
        ([3, 4, 9, 9], [5, 4, 3, 3], 2, 1, 1),
        ([1, 2, 10, 11], [2, 2, 3, 2], 1, 2, 2),
        ([2, 3, 7, 7], [4, 3, 5, 5], 3, 2, 1),
        // 1x1 filters at stride 2: pixels no window reads (their gradient is an empty sum).
        ([1, 2, 5, 5], [2, 2, 1, 1], 2, 0, 1),
        // Padding wider than the filter: whole output rows and columns of a tap in the padding.
        ([1, 2, 4, 5], [2, 2, 3, 3], 1, 3, 1),
        ([2, 1, 5, 8], [1, 1, 2, 2], 3, 2, 2),
    ];
    for (i, &(xs, ws, stride, pad, dil)) in cases.iter().enumerate() {
        let spec = Conv2dSpec {
            stride,
            padding: pad,
            dilation: dil,
        };
        let p = ConvParams::new(&xs, &ws, &spec).unwrap();
        let x = random_f32(20 + i as u64, xs.iter().product(), -1.0, 1.0);
        let cols_len = p.cols_shape().iter().product();
        let (mut fast, mut slow) = (vec![1.0; cols_len], vec![2.0; cols_len]);
        cpu::im2col(&p, &x, &mut fast);
        reference::im2col(&p, &x, &mut slow);
        assert_eq!(bits(&fast), bits(&slow), "im2col case {i}");

        let dcols = random_f32(30 + i as u64, cols_len, -1.0, 1.0);
        let (mut fast, mut slow) = (vec![1.0; x.len()], vec![2.0; x.len()]);
        cpu::col2im(&p, &dcols, &mut fast);
        reference::col2im(&p, &dcols, &mut slow);
        assert_eq!(bits(&fast), bits(&slow), "col2im case {i}");

        let bias = random_f32(40 + i as u64, ws[0], -1.0, 1.0);
        let y: Vec<f32> = random_f32(50 + i as u64, p.out_shape().iter().product(), -1.0, 1.0);
        let (mut fast, mut slow) = (y.clone(), y);
        cpu::bias_channels(&p, &bias, &mut fast);
        reference::bias_channels(&p, &bias, &mut slow);
        assert_eq!(bits(&fast), bits(&slow), "bias_channels case {i}");
    }
}

#[test]
fn fast_max_pool_picks_and_routes_as_the_reference() {
    use kiln_device::params::PoolParams;
    for (i, &(shape, k, stride)) in [
        ([2, 3, 8, 8], 2, 2),
        // 2x2 at stride 2 over odd sides: the last row and column are in no window.
        ([3, 2, 11, 7], 2, 2),
        ([1, 2, 9, 7], 3, 2),
        ([2, 1, 6, 6], 2, 1),
    ]
    .iter()
    .enumerate()
    {
        let p = PoolParams::new(&shape, k, k, stride).unwrap();
        // Few distinct values, so windows hold ties: the first maximum must win. Some NaNs,
        // which win as in the reference (a later element wins unless <= the best).
        let mut x: Vec<f32> = random_u32(60 + i as u64, shape.iter().product(), 4)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        x.iter_mut().step_by(11).for_each(|v| *v = f32::NAN);
        let n = p.out_len();
        // The device hands the fast kernel unzeroed outputs.
        let (mut fy, mut fa) = (vec![f32::NAN; n], vec![u32::MAX; n]);
        let (mut ry, mut ra) = (vec![1.0; n], vec![1; n]);
        cpu::max_pool2d_forward(&p, &x, &mut fy, &mut fa);
        reference::max_pool2d_forward(&p, &x, &mut ry, &mut ra);
        assert_eq!((bits(&fy), &fa), (bits(&ry), &ra), "case {i}");
        // Backward routes dy to the picks; overlapping windows (stride 1) add up.
        let dy = random_f32(65 + i as u64, n, -1.0, 1.0);
        let (mut fast, mut slow) = (vec![1.0; x.len()], vec![2.0; x.len()]);
        cpu::pool2d_route_backward(&p, &dy, &fa, &mut fast);
        reference::pool2d_route_backward(&p, &dy, &ra, &mut slow);
        assert_eq!(bits(&fast), bits(&slow), "backward case {i}");
        // A pick outside its window's plane (not from max pooling, but routed all the same) and
        // one that is no pick: the whole call is the reference's, whatever dx held.
        let mut odd = fa.clone();
        odd[0] = (x.len() - 1) as u32;
        odd[n - 1] = u32::MAX;
        let (mut fast, mut slow) = (vec![f32::NAN; x.len()], vec![2.0; x.len()]);
        cpu::pool2d_route_backward(&p, &dy, &odd, &mut fast);
        reference::pool2d_route_backward(&p, &dy, &odd, &mut slow);
        assert_eq!(bits(&fast), bits(&slow), "stray picks, case {i}");
    }
}

#[test]
fn fast_elementwise_kernels_match_the_reference() {
    use kiln_device::params::{BinaryOp, ElementwiseParams, UnaryOp};
    let n = 2 * (1 << 14) + 5;
    let x = random_f32(70, n, -3.0, 3.0);
    let dy = random_f32(71, n, -1.0, 1.0);
    let p = ElementwiseParams {
        n: n as u32,
        b_len: n as u32,
        scalar: 0.5,
        scalar2: 0.0,
    };
    // Relu gives the reference's bits; tanh and sigmoid are the CPU device's own vectorized
    // functions, within a few ulp (kiln_device::cpu::math).
    let x_wide = random_f32(73, n, -30.0, 30.0);
    for (op, x) in [
        (UnaryOp::Relu, &x),
        (UnaryOp::Tanh, &x),
        (UnaryOp::Sigmoid, &x),
        (UnaryOp::Tanh, &x_wide),
        (UnaryOp::Sigmoid, &x_wide),
    ] {
        let same = |what: String, fast: &[f32], slow: &[f32]| match op {
            UnaryOp::Relu => assert_eq!(bits(fast), bits(slow), "{what}"),
            _ => assert_close(&what, fast, slow, Tolerance::new(1e-6, 1e-6)),
        };
        let (mut fast, mut slow) = (vec![f32::NAN; n], vec![1.0; n]);
        cpu::unary(&p, op, x, &mut fast);
        reference::unary(&p, op, x, &mut slow);
        same(format!("{op:?}"), &fast, &slow);
        fast.fill(f32::NAN);
        cpu::unary_backward(&p, op, x, &dy, &mut fast);
        reference::unary_backward(&p, op, x, &dy, &mut slow);
        same(format!("{op:?} backward"), &fast, &slow);
    }
    // Binary ops with b broadcast over a length that the task chunks (2^14) do not divide, and
    // the same operand twice; outputs start as NaN (a reused, unzeroed buffer's worst case).
    for b_len in [n, 1000, 1] {
        let b = random_f32(72, b_len, -2.0, 2.0);
        let p = ElementwiseParams {
            b_len: b_len as u32,
            ..p
        };
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
            let (mut fast, mut slow) = (vec![f32::NAN; n], vec![0.0; n]);
            cpu::binary(&p, op, &x, &b, &mut fast);
            reference::binary(&p, op, &x, &b, &mut slow);
            assert_eq!(bits(&fast), bits(&slow), "{op:?}, b of {b_len}");
        }
    }
    let p_same = ElementwiseParams {
        b_len: n as u32,
        ..p
    };
    let (mut fast, mut slow) = (vec![f32::NAN; n], vec![0.0; n]);
    cpu::binary(&p_same, BinaryOp::Mul, &x, &x, &mut fast);
    reference::binary(&p_same, BinaryOp::Mul, &x, &x, &mut slow);
    assert_eq!(bits(&fast), bits(&slow), "x * x");
    let (mut fast, mut slow) = (dy.clone(), dy);
    cpu::axpy(&p, &x, &mut fast);
    reference::axpy(&p, &x, &mut slow);
    assert_eq!(bits(&fast), bits(&slow), "axpy");
}

/// The CPU device hands the kernels that write every output element a reused buffer without
/// zeroing it first: a step's values must never leak into a later op's output. Each op runs
/// twice, the second time into buffers of its output's length that other ops filled and freed;
/// both runs give the same bits, and the elementwise ops and im2col the reference's.
#[test]
fn reused_unzeroed_outputs_hold_no_stale_values() {
    use kiln_device::params::{Conv2dSpec, UnaryOp};
    use kiln_device::Device;
    let (m, k, n) = (37, 19, 41);
    let run = |d: &Device| -> Vec<Vec<Vec<u32>>> {
        let a = d
            .from_f32(&random_f32(80, m * k, -1.0, 1.0), &[m, k])
            .unwrap();
        let b = d
            .from_f32(&random_f32(81, k * n, -1.0, 1.0), &[k, n])
            .unwrap();
        let x = d
            .from_f32(&random_f32(82, m * n, -2.0, 2.0), &[m, n])
            .unwrap();
        let row = d.from_f32(&random_f32(83, n, -2.0, 2.0), &[n]).unwrap();
        let img = d
            .from_f32(&random_f32(84, 2 * 3 * 8 * 8, -1.0, 1.0), &[2, 3, 8, 8])
            .unwrap();
        let spec = Conv2dSpec {
            stride: 1,
            padding: 1,
            dilation: 1,
        };
        (0..2)
            .map(|_| {
                let outs = [
                    d.add(&x, &row).unwrap(),
                    d.mul(&x, &x).unwrap(),
                    d.unary(UnaryOp::Relu, &x).unwrap(),
                    d.unary_backward(UnaryOp::Relu, &x, &x).unwrap(),
                    d.im2col(&img, &[4, 3, 3, 3], &spec).unwrap(),
                    d.matmul(&a, &b, None, MatmulSpec::default()).unwrap(),
                    d.unary(UnaryOp::Tanh, &x).unwrap(),
                    d.unary_backward(UnaryOp::Sigmoid, &x, &x).unwrap(),
                ];
                let values = outs.iter().map(|t| bits(&d.to_f32(t).unwrap())).collect();
                // Freed with their values; then more buffers of the same lengths, filled.
                drop(outs);
                let _fill = [d.scale(&x, 7.0).unwrap(), d.scale(&x, 3.0).unwrap()];
                values
            })
            .collect()
    };
    let fast = run(&Device::cpu());
    assert_eq!(fast[0], fast[1], "a reused buffer changed an output");
    let slow = run(&Device::cpu_reference());
    assert_eq!(fast[1][..5], slow[1][..5], "the elementwise ops and im2col");
    let values = |v: &[u32]| v.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>();
    for i in 5..8 {
        let what = format!("output {i} (matmul, tanh, sigmoid backward)");
        let tol = Tolerance::new(1e-5, 1e-5);
        assert_close(&what, &values(&fast[1][i]), &values(&slow[1][i]), tol);
    }
}

/// Broadcasting over rayon's chunks gives the reference's bits, the chunk boundaries included,
/// for every pattern of the last merged dimension's strides (both operands whole, one broadcast,
/// the other broadcast, a channel axis in the middle) and for a copy.
#[test]
fn broadcast_gives_the_references_bits() {
    use kiln_device::params::{BinaryOp, BroadcastParams};
    let cases: [(&[usize], &[usize]); 5] = [
        (&[3, 1, 9001], &[1, 5, 1]),
        (&[64, 7, 13, 13], &[1, 7, 1, 1]),
        (&[40, 1000], &[40, 1]),
        (&[40, 1], &[40, 1000]),
        (&[2, 3, 5000], &[3, 5000]),
    ];
    for (n_case, (sa, sb)) in cases.into_iter().enumerate() {
        let (out, p) = BroadcastParams::plan(sa, sb).unwrap();
        let a = random_f32(80 + n_case as u64, sa.iter().product(), -2.0, 2.0);
        let b = random_f32(81 + n_case as u64, sb.iter().product(), 0.5, 2.0);
        let n = p.n as usize;
        for op in [
            Some(BinaryOp::Div),
            Some(BinaryOp::Sub),
            Some(BinaryOp::Mul),
            None,
        ] {
            // A copy (broadcast_to) plans b against the output shape and never reads a.
            let (p, a) = match op {
                None => (BroadcastParams::plan(&out, sb).unwrap().1, &b),
                Some(_) => (p, &a),
            };
            let (mut fast, mut slow) = (vec![f32::NAN; n], vec![0.0; n]);
            cpu::binary_broadcast(&p, op, a, &b, &mut fast);
            reference::binary_broadcast(&p, op, a, &b, &mut slow);
            assert_eq!(fast, slow, "{sa:?} {sb:?} {op:?}");
        }
    }
}
