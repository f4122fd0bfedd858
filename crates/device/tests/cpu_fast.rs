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
    let (mut fast, mut slow) = (vec![0.0; p.out_len()], vec![0.0; p.out_len()]);
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
    use kiln_device::params::{AdamConfig, SgdConfig};
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
