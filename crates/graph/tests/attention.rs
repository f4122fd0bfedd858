//! The fused attention op against its unfused composition (matmul, Keras's -1e9 mask, softmax,
//! matmul) on every device: outputs and the gradients of q, k and v, with causal and padding
//! masks, rows left with no key, and dropout (the fused forward and backward use the mask the
//! composition is given). Finite differences for the op itself.

use kiln_device::testing::{assert_close, each_device, random_f32, random_u32, Tolerance};
use kiln_device::{Device, Tensor};
use kiln_graph::layers::Signature;
use kiln_graph::testing::check_input_gradients;
use kiln_graph::*;

struct Case {
    b: usize,
    tq: usize,
    tk: usize,
    h: usize,
    dk: usize,
    dv: usize,
    opts: AttentionOptions,
}

fn tensors(d: &Device, c: &Case, seed: u64) -> Vec<Tensor> {
    let f = |s: u64, shape: &[usize]| {
        let n = shape.iter().product();
        d.from_f32(&random_f32(seed * 10 + s, n, -1.0, 1.0), shape)
            .unwrap()
    };
    vec![
        f(1, &[c.b, c.tq, c.h, c.dk]),
        f(2, &[c.b, c.tk, c.h, c.dk]),
        f(3, &[c.b, c.tk, c.h, c.dv]),
        f(4, &[c.b, c.tq, c.h, c.dv]),
    ]
}

/// The output and the gradients of q, k, v for loss = sum(out * w), fused or not.
fn run(d: &Device, c: &Case, fused: bool) -> Vec<Vec<f32>> {
    let xs = tensors(d, c, 3);
    let tape = Tape::training(d, 42, 7);
    let vars: Vec<Var> = xs[..3].iter().map(|x| tape.input(x.clone())).collect();
    let out = if fused {
        tape.attention(&vars[0], &vars[1], &vars[2], &c.opts)
    } else {
        tape.attention_unfused(&vars[0], &vars[1], &vars[2], &c.opts)
    }
    .unwrap();
    let w = tape.constant(xs[3].clone());
    let loss = tape.sum(&tape.mul(&out, &w).unwrap()).unwrap();
    tape.backward(&loss).unwrap();
    let mut all = vec![d.to_f32(out.value()).unwrap()];
    all.extend(
        vars.iter()
            .map(|v| d.to_f32(&tape.grad(v).unwrap()).unwrap()),
    );
    all
}

fn ids(d: &Device, b: usize, t: usize, seed: u64) -> Option<Tensor> {
    Some(d.from_u32(&random_u32(seed, b * t, 3), &[b, t]).unwrap())
}

fn cases(d: &Device) -> Vec<Case> {
    let c = |b, tq, tk, h, dk, dv, opts| Case {
        b,
        tq,
        tk,
        h,
        dk,
        dv,
        opts,
    };
    let o = AttentionOptions::new;
    vec![
        c(2, 5, 7, 2, 4, 3, o()),
        c(1, 70, 70, 2, 16, 16, o().causal(true)),
        c(2, 9, 12, 2, 8, 5, o().ids(None, ids(d, 2, 12, 1))),
        c(
            2,
            12,
            12,
            1,
            8,
            8,
            o().causal(true).ids(ids(d, 2, 12, 2), ids(d, 2, 12, 3)),
        ),
        c(1, 40, 33, 2, 8, 8, o().dropout(0.25)),
        c(
            2,
            16,
            16,
            2,
            8,
            8,
            o().dropout(0.5).causal(true).ids(None, ids(d, 2, 16, 4)),
        ),
        c(1, 128, 128, 4, 64, 64, o()),
        c(1, 512, 512, 4, 64, 64, o().causal(true)),
    ]
}

#[test]
fn fused_attention_matches_the_unfused_composition() {
    for d in each_device("attention_vs_unfused") {
        for c in cases(&d) {
            let (fused, unfused) = (run(&d, &c, true), run(&d, &c, false));
            for (name, (f, u)) in ["out", "dq", "dk", "dv"]
                .iter()
                .zip(fused.iter().zip(&unfused))
            {
                let what = format!("{} T {}x{} {:?} {name}", d.name(), c.tq, c.tk, c.opts);
                assert_close(&what, f, u, Tolerance::new(1e-5, 1e-5));
            }
        }
    }
}

#[test]
fn attention_gradients_match_finite_differences() {
    let d = Device::cpu_reference();
    for (n, opts) in [
        AttentionOptions::new(),
        AttentionOptions::new()
            .causal(true)
            .ids(ids(&d, 2, 4, 5), ids(&d, 2, 6, 6)),
    ]
    .into_iter()
    .enumerate()
    {
        let c = Case {
            b: 2,
            tq: 4,
            tk: 6,
            h: 2,
            dk: 3,
            dv: 2,
            opts,
        };
        let xs = tensors(&d, &c, n as u64);
        check_input_gradients(
            "attention",
            &d,
            &xs,
            1e-2,
            Tolerance::new(2e-3, 2e-2),
            |t, v| {
                let out = t.attention(&v[0], &v[1], &v[2], &c.opts).unwrap();
                t.sum(&t.mul(&out, &v[3]).unwrap()).unwrap()
            },
        );
    }
}

/// GlobalAveragePooling1D with an embedding's mask: the mean over the kept steps (Keras's
/// sum(x * mask) / sum(mask)), its gradient by finite differences; without a mask, the mean.
#[test]
fn masked_global_average_pooling_is_the_mean_of_the_kept_steps() {
    use kiln_graph::layers::GlobalAveragePooling1dConfig;
    for d in each_device("global_average_pooling1d") {
        let (b, t, e) = (3, 5, 4);
        let x = random_f32(9, b * t * e, -1.0, 1.0);
        let ids = vec![1, 2, 0, 3, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4];
        let pb = ParamBuilder::new(0);
        let (layer, _) = GlobalAveragePooling1dConfig::default()
            .build(&pb, &Signature::values(&[t, e]))
            .unwrap();
        let params = pb.build(&d).unwrap();
        let mask = d.from_u32(&ids, &[b, t]).unwrap();
        let tape = Tape::inference(&d);
        let xv = tape.constant(d.from_f32(&x, &[b, t, e]).unwrap());
        let (y, out_mask) = layer
            .forward_masked(&tape, &params, &xv, Some(mask.clone()))
            .unwrap();
        assert!(out_mask.is_none(), "pooling drops the mask");
        let mut want = vec![0.0f32; b * e];
        for bi in 0..b {
            let kept: Vec<usize> = (0..t).filter(|&s| ids[bi * t + s] != 0).collect();
            // A sample with every step padded averages them all.
            let steps = if kept.is_empty() {
                (0..t).collect()
            } else {
                kept
            };
            for f in 0..e {
                let sum: f32 = steps.iter().map(|&s| x[(bi * t + s) * e + f]).sum();
                want[bi * e + f] = sum / steps.len() as f32;
            }
        }
        assert_close(
            &d.name(),
            &d.to_f32(y.value()).unwrap(),
            &want,
            Tolerance::new(1e-6, 1e-5),
        );
        let xs = [d.from_f32(&x, &[b, t, e]).unwrap()];
        let w = d
            .from_f32(&random_f32(3, b * e, -1.0, 1.0), &[b, e])
            .unwrap();
        check_input_gradients(
            "gap1d",
            &d,
            &xs,
            1e-2,
            Tolerance::new(2e-3, 2e-2),
            |t, v| {
                let (y, _) = layer
                    .forward_masked(t, &params, &v[0], Some(mask.clone()))
                    .unwrap();
                t.sum(&t.mul(&y, &t.constant(w.clone())).unwrap()).unwrap()
            },
        );
    }
}
