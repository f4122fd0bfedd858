//! The CPU device's fast kernels (`kiln_device::cpu`) against the plain references they replace:
//! every transpose, batch broadcast, bias and activation, odd sizes and sizes past the
//! micro-kernel's blocks; and the same bits on every run.

use kiln_device::params::{Activation, MatmulSpec};
use kiln_device::testing::{assert_close, random_f32, Tolerance};
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
