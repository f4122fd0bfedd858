//! Convolution and pooling: the seed's worked examples exactly, every kernel on the GPU against the
//! CPU reference, typed errors for shapes that give no whole output, and backward passes against
//! finite differences.

use kiln_device::testing::{assert_close, each_device, gpu_device, random_f32, Tolerance};
use kiln_device::*;

/// Every gradient of a convolution.
const BOTH: Conv2dWanted = Conv2dWanted {
    bias: true,
    dx: true,
};

const SEED_X: [f32; 16] = [
    1.0, 2.0, 3.0, 0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 0.0, 1.0, 2.0, 2.0, 3.0, 0.0, 1.0,
];
const SEED_W: [f32; 9] = [2.0, 0.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 2.0];

#[test]
fn the_seed_examples_come_out_exactly() {
    for d in each_device("seed_conv_examples") {
        for variant in [ConvVariant::Im2col, ConvVariant::Direct] {
            let x = d.from_f32(&SEED_X, &[1, 1, 4, 4]).unwrap();
            let w = d.from_f32(&SEED_W, &[1, 1, 3, 3]).unwrap();
            let b = d.from_f32(&[3.0], &[1]).unwrap();
            let y = d
                .conv2d(&x, &w, Some(&b), &Conv2dSpec::default(), variant)
                .unwrap();
            assert_eq!(y.shape(), &[1, 1, 2, 2]);
            assert_eq!(
                d.to_f32(&y).unwrap(),
                vec![18.0, 19.0, 9.0, 18.0],
                "{} {variant:?}",
                d.name()
            );
            let padded = Conv2dSpec {
                padding: 1,
                ..Default::default()
            };
            let y = d.conv2d(&x, &w, None, &padded, variant).unwrap();
            let want = [
                7.0, 12.0, 10.0, 2.0, 4.0, 15.0, 16.0, 10.0, 10.0, 6.0, 15.0, 6.0, 8.0, 10.0, 4.0,
                3.0,
            ];
            assert_eq!(
                d.to_f32(&y).unwrap(),
                want,
                "{} {variant:?} padded",
                d.name()
            );
        }
    }
}

#[test]
fn output_sizes_that_are_not_whole_are_typed_errors_naming_the_numbers() {
    let d = Device::cpu();
    let x = d.zeros(&[1, 1, 4, 4]).unwrap();
    let w = d.zeros(&[1, 1, 3, 3]).unwrap();
    let spec = Conv2dSpec {
        stride: 2,
        ..Default::default()
    }; // (4 - 3) / 2 + 1 = 1.5
    let err = d
        .conv2d(&x, &w, None, &spec, ConvVariant::Im2col)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv2d") && err.contains("1.50") && err.contains("stride 2"),
        "{err}"
    );
    let big = d.zeros(&[1, 1, 5, 5]).unwrap();
    let err = d
        .conv2d(&x, &big, None, &Conv2dSpec::default(), ConvVariant::Im2col)
        .unwrap_err()
        .to_string();
    assert!(err.contains("smaller than the filter's span 5"), "{err}");
    let w3 = d.zeros(&[2, 3, 3, 3]).unwrap();
    let err = d
        .conv2d(&x, &w3, None, &Conv2dSpec::default(), ConvVariant::Im2col)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 input channels, the input 1"), "{err}");
    let err = d
        .pool2d(&x, &PoolSpec::new(PoolMode::Max, 5, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not fit"), "{err}");
}

/// (N, C, H, W, F, FH, FW, spec)
fn conv_cases() -> Vec<([usize; 4], [usize; 4], Conv2dSpec)> {
    let s = |stride, padding, dilation| Conv2dSpec {
        stride,
        padding,
        dilation,
    };
    vec![
        ([1, 1, 4, 4], [1, 1, 3, 3], s(1, 0, 1)),
        ([2, 3, 7, 7], [4, 3, 3, 3], s(2, 0, 1)), // stride 2, RGB, several filters, a mini-batch
        ([3, 3, 9, 11], [5, 3, 3, 3], s(2, 1, 1)), // stride 2 with padding, non-square
        ([2, 2, 9, 9], [3, 2, 3, 3], s(1, 2, 2)), // dilation 2
        ([2, 1, 28, 28], [8, 1, 5, 5], s(1, 2, 1)), // MNIST-like "same"
        ([1, 4, 6, 6], [2, 4, 1, 1], s(1, 0, 1)), // 1x1
    ]
}

#[test]
fn conv_kernels_match_the_reference_on_the_gpu() {
    let Some(gpu) = gpu_device("conv_gpu_vs_cpu") else {
        return;
    };
    let cpu = Device::cpu();
    for (i, (xs, ws, spec)) in conv_cases().into_iter().enumerate() {
        let xv = random_f32(i as u64, xs.iter().product(), -1.0, 1.0);
        let wv = random_f32(100 + i as u64, ws.iter().product(), -1.0, 1.0);
        let bv = random_f32(200 + i as u64, ws[0], -1.0, 1.0);
        let run = |d: &Device, variant| {
            let (x, w, b) = (
                d.from_f32(&xv, &xs).unwrap(),
                d.from_f32(&wv, &ws).unwrap(),
                d.from_f32(&bv, &[ws[0]]).unwrap(),
            );
            let y = d.conv2d(&x, &w, Some(&b), &spec, variant).unwrap();
            let cols = d.im2col(&x, &ws, &spec).unwrap();
            let dy = d
                .from_f32(&random_f32(300, y.len(), -1.0, 1.0), y.shape())
                .unwrap();
            let g = d.conv2d_backward(&x, &w, &dy, &spec, true, true).unwrap();
            [y, cols, g.dx.unwrap(), g.dweight, g.dbias.unwrap()].map(|t| d.to_f32(&t).unwrap())
        };
        let want = run(&cpu, ConvVariant::Direct);
        let k = ws[1] * ws[2] * ws[3];
        for variant in [ConvVariant::Im2col, ConvVariant::Direct] {
            let got = run(&gpu, variant);
            for (j, name) in ["y", "cols", "dx", "dweight", "dbias"].iter().enumerate() {
                let tol = if j == 1 {
                    Tolerance::EXACT
                } else {
                    Tolerance::reduction(k.max(xs[0] * 64))
                };
                assert_close(
                    &format!("case {i} {variant:?} {name}"),
                    &got[j],
                    &want[j],
                    tol,
                );
            }
        }
        // The two CPU forms agree too.
        let im2col_cpu = run(&cpu, ConvVariant::Im2col);
        assert_close(
            &format!("case {i} cpu im2col vs direct"),
            &im2col_cpu[0],
            &want[0],
            Tolerance::reduction(k),
        );
    }
}

/// d(sum(f(x) * r))/dx by central differences, f32 on the CPU device.
fn numeric_grad(x: &[f32], r: &[f32], f: impl Fn(&[f32]) -> Vec<f32>) -> Vec<f32> {
    let eps = 1e-2f32;
    let obj = |v: &[f32]| -> f32 { f(v).iter().zip(r).map(|(a, b)| a * b).sum() };
    (0..x.len())
        .map(|i| {
            let (mut up, mut down) = (x.to_vec(), x.to_vec());
            up[i] += eps;
            down[i] -= eps;
            (obj(&up) - obj(&down)) / (2.0 * eps)
        })
        .collect()
}

#[test]
fn conv_backward_matches_finite_differences() {
    let d = Device::cpu();
    let (xs, ws, spec) = (
        [2, 2, 5, 6],
        [3, 2, 3, 3],
        Conv2dSpec {
            stride: 1,
            padding: 1,
            dilation: 1,
        },
    );
    let xv = random_f32(1, xs.iter().product(), -1.0, 1.0);
    let wv = random_f32(2, ws.iter().product(), -1.0, 1.0);
    let bv = random_f32(3, 3, -1.0, 1.0);
    let conv = |x: &[f32], w: &[f32], b: &[f32]| {
        let y = d
            .conv2d(
                &d.from_f32(x, &xs).unwrap(),
                &d.from_f32(w, &ws).unwrap(),
                Some(&d.from_f32(b, &[3]).unwrap()),
                &spec,
                ConvVariant::Im2col,
            )
            .unwrap();
        d.to_f32(&y).unwrap()
    };
    let y = conv(&xv, &wv, &bv);
    let r = random_f32(4, y.len(), -1.0, 1.0);
    let dy = d.from_f32(&r, &[2, 3, 5, 6]).unwrap();
    let g = d
        .conv2d_backward(
            &d.from_f32(&xv, &xs).unwrap(),
            &d.from_f32(&wv, &ws).unwrap(),
            &dy,
            &spec,
            true,
            true,
        )
        .unwrap();
    let tol = Tolerance::new(2e-3, 1e-2);
    assert_close(
        "dx",
        &d.to_f32(g.dx.as_ref().unwrap()).unwrap(),
        &numeric_grad(&xv, &r, |x| conv(x, &wv, &bv)),
        tol,
    );
    assert_close(
        "dweight",
        &d.to_f32(&g.dweight).unwrap(),
        &numeric_grad(&wv, &r, |w| conv(&xv, w, &bv)),
        tol,
    );
    assert_close(
        "dbias",
        &d.to_f32(&g.dbias.unwrap()).unwrap(),
        &numeric_grad(&bv, &r, |b| conv(&xv, &wv, b)),
        tol,
    );
}

fn pool_specs() -> Vec<([usize; 4], PoolSpec)> {
    let mut v = vec![];
    for mode in [PoolMode::Max, PoolMode::Avg, PoolMode::Stochastic] {
        for (xs, size, stride) in [
            ([2, 3, 6, 6], 2, 2),
            ([1, 2, 7, 5], 3, 2),
            ([2, 1, 5, 5], 2, 1),
            ([1, 2, 4, 4], 4, 1),
        ] {
            let mut spec = PoolSpec::new(mode, size, stride);
            spec.training = mode == PoolMode::Stochastic;
            spec.seed = 42;
            v.push((xs, spec));
        }
    }
    let mut eval = PoolSpec::new(PoolMode::Stochastic, 2, 2);
    eval.training = false;
    v.push(([2, 3, 6, 6], eval));
    v
}

#[test]
fn pooling_kernels_match_the_reference_on_the_gpu() {
    let Some(gpu) = gpu_device("pool_gpu_vs_cpu") else {
        return;
    };
    let cpu = Device::cpu();
    for (i, (xs, spec)) in pool_specs().into_iter().enumerate() {
        // Non-negative inputs with exact zeros, as after relu.
        let xv: Vec<f32> = random_f32(i as u64, xs.iter().product(), -0.5, 1.0)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        let run = |d: &Device| {
            let x = d.from_f32(&xv, &xs).unwrap();
            let pooled = d.pool2d(&x, &spec).unwrap();
            let mut out = vec![d.to_f32(&pooled.y).unwrap()];
            if let Some(p) = &pooled.picks {
                out.push(d.to_u32(p).unwrap().into_iter().map(|v| v as f32).collect());
            }
            {
                let dy = d
                    .from_f32(&random_f32(7, pooled.y.len(), -1.0, 1.0), pooled.y.shape())
                    .unwrap();
                out.push(
                    d.to_f32(&d.pool2d_backward(&x, &dy, &pooled, &spec).unwrap())
                        .unwrap(),
                );
            }
            out
        };
        let (got, want) = (run(&gpu), run(&cpu));
        assert_eq!(got.len(), want.len());
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(
                &format!("pool case {i} {spec:?} output {j}"),
                g,
                w,
                Tolerance::ELEMENTWISE,
            );
        }
    }
}

#[test]
fn pool_backward_matches_finite_differences() {
    let d = Device::cpu();
    let xs = [1, 2, 6, 7];
    // Distinct positive values, so max pooling's choice does not flip under the perturbation and
    // inference-time stochastic pooling (sum(a^2) / sum(a)) stays on its smooth side.
    let xv: Vec<f32> = (0..84)
        .map(|i| ((i * 37) % 84) as f32 * 0.1 + 0.05)
        .collect();
    for mode in [PoolMode::Max, PoolMode::Avg, PoolMode::Stochastic] {
        let spec = PoolSpec::new(mode, 3, 2);
        let pool = |x: &[f32]| {
            d.to_f32(&d.pool2d(&d.from_f32(x, &xs).unwrap(), &spec).unwrap().y)
                .unwrap()
        };
        let x = d.from_f32(&xv, &xs).unwrap();
        let pooled = d.pool2d(&x, &spec).unwrap();
        let r = random_f32(5, pooled.y.len(), -1.0, 1.0);
        let dy = d.from_f32(&r, pooled.y.shape()).unwrap();
        let dx = d
            .to_f32(&d.pool2d_backward(&x, &dy, &pooled, &spec).unwrap())
            .unwrap();
        assert_close(
            &format!("{mode:?} dx"),
            &dx,
            &numeric_grad(&xv, &r, pool),
            Tolerance::new(2e-3, 1e-2),
        );
    }
}

#[test]
fn stochastic_pooling_samples_by_value_and_averages_by_probability_at_inference() {
    let d = Device::cpu();
    // One 2x2 window [0, 1, 0, 3]: picks 1 with p = 1/4 and 3 with p = 3/4; never a zero.
    let x = d.from_f32(&[0.0, 1.0, 0.0, 3.0], &[1, 1, 2, 2]).unwrap();
    let mut counts = [0usize; 2];
    for seed in 0..4000u64 {
        let mut spec = PoolSpec::new(PoolMode::Stochastic, 2, 2);
        spec.training = true;
        spec.seed = seed;
        let y = d.to_f32(&d.pool2d(&x, &spec).unwrap().y).unwrap()[0];
        match y {
            1.0 => counts[0] += 1,
            3.0 => counts[1] += 1,
            other => panic!("picked {other}"),
        }
    }
    let share = counts[1] as f32 / 4000.0;
    assert!((share - 0.75).abs() < 0.03, "3 picked {share} of the time");
    let eval = PoolSpec::new(PoolMode::Stochastic, 2, 2);
    let y = d.to_f32(&d.pool2d(&x, &eval).unwrap().y).unwrap()[0];
    assert!((y - 2.5).abs() < 1e-6, "(1 + 9) / 4 = 2.5, got {y}");
    let zeros = d.zeros(&[1, 1, 2, 2]).unwrap();
    assert_eq!(
        d.to_f32(&d.pool2d(&zeros, &eval).unwrap().y).unwrap(),
        vec![0.0]
    );
}

#[test]
fn global_average_pooling_is_a_window_the_size_of_the_image() {
    for d in each_device("global_avg_pool") {
        let xv = random_f32(8, 2 * 3 * 5 * 4, -1.0, 1.0);
        let x = d.from_f32(&xv, &[2, 3, 5, 4]).unwrap();
        let mut spec = PoolSpec::new(PoolMode::Avg, 5, 1);
        spec.size = (5, 4);
        let y = d.to_f32(&d.pool2d(&x, &spec).unwrap().y).unwrap();
        let want: Vec<f32> = xv
            .chunks(20)
            .map(|c| c.iter().sum::<f32>() / 20.0)
            .collect();
        assert_close("global average", &y, &want, Tolerance::reduction(20));
    }
}

#[test]
fn conv_backward_can_skip_the_input_gradient() {
    for d in each_device("conv_backward_without_dx") {
        let x = d
            .from_f32(&random_f32(1, 2 * 3 * 6 * 6, -1.0, 1.0), &[2, 3, 6, 6])
            .unwrap();
        let w = d
            .from_f32(&random_f32(2, 4 * 3 * 9, -1.0, 1.0), &[4, 3, 3, 3])
            .unwrap();
        let dy = d
            .from_f32(&random_f32(3, 2 * 4 * 16, -1.0, 1.0), &[2, 4, 4, 4])
            .unwrap();
        let spec = Conv2dSpec::default();
        let with = d.conv2d_backward(&x, &w, &dy, &spec, false, true).unwrap();
        let without = d.conv2d_backward(&x, &w, &dy, &spec, false, false).unwrap();
        assert!(without.dx.is_none() && with.dx.is_some() && without.dbias.is_none());
        assert_eq!(
            d.to_f32(&with.dweight).unwrap(),
            d.to_f32(&without.dweight).unwrap()
        );
    }
}

/// The backward pass on the forward's kept columns gives what rebuilding them gives, bit for bit;
/// columns of another convolution are refused.
#[test]
fn conv_backward_on_kept_columns_matches_rebuilding_them() {
    for d in each_device("conv_backward_with_cols") {
        let x = d
            .from_f32(&random_f32(3, 2 * 3 * 7 * 7, -1.0, 1.0), &[2, 3, 7, 7])
            .unwrap();
        let w = d
            .from_f32(&random_f32(4, 4 * 3 * 3 * 3, -1.0, 1.0), &[4, 3, 3, 3])
            .unwrap();
        let b = d.from_f32(&[0.1, -0.2, 0.3, 0.0], &[4]).unwrap();
        let spec = Conv2dSpec {
            stride: 2,
            padding: 1,
            dilation: 1,
        };
        let (y, cols) = d.conv2d_with_cols(&x, &w, Some(&b), &spec).unwrap();
        let plain = d
            .conv2d(&x, &w, Some(&b), &spec, ConvVariant::Im2col)
            .unwrap();
        assert_eq!(d.to_f32(&y).unwrap(), d.to_f32(&plain).unwrap());
        let dy = d
            .from_f32(&random_f32(5, y.len(), -1.0, 1.0), y.shape())
            .unwrap();
        let kept = d
            .conv2d_backward_with_cols(&x, &w, &dy, &spec, BOTH, Some(&cols))
            .unwrap();
        let rebuilt = d.conv2d_backward(&x, &w, &dy, &spec, true, true).unwrap();
        let all = |g: &Conv2dGrads| {
            [g.dx.as_ref(), Some(&g.dweight), g.dbias.as_ref()]
                .into_iter()
                .flatten()
                .map(|t| d.to_f32(t).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(all(&kept), all(&rebuilt));
        let wrong = d.zeros(&[2, 27, 10]).unwrap();
        let err = d
            .conv2d_backward_with_cols(&x, &w, &dy, &spec, BOTH, Some(&wrong))
            .unwrap_err();
        assert!(err.to_string().contains("columns of shape"), "{err}");
    }
}
