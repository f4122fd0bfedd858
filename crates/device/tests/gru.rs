//! The fused GRU kernels (shaders/gru.wgsl) on the adapter, and the CPU device's GRU, against
//! their CPU reference: forward outputs, the saved cache, and every gradient, for one and two
//! directions, with and without an initial state, a padding mask and each kind of output
//! gradient, at H = 1, 3, 5, 33, 64, 130, 300 (3H not a multiple of 4 among them) and T = 1 to
//! 70. The reference itself is checked against the unfused composition, finite differences and
//! Keras in kiln-graph's tests.

use kiln_device::testing::{assert_close, gpu_device, random_f32, random_u32, Tolerance};
use kiln_device::*;

struct Case {
    b: usize,
    t: usize,
    e: usize,
    h: usize,
    d: usize,
    init: bool,
    mask: bool,
    seq: bool,
    dlast: bool,
}

fn run(dev: &Device, c: &Case, seed: u64) -> Vec<(String, Vec<f32>)> {
    let f = |s: u64, n: usize, scale: f32| random_f32(seed * 100 + s, n, -scale, scale);
    let x = dev
        .from_f32(&f(1, c.b * c.t * c.e, 1.0), &[c.b, c.t, c.e])
        .unwrap();
    let kernel = dev
        .from_f32(&f(2, c.d * c.e * 3 * c.h, 0.5), &[c.d, c.e, 3 * c.h])
        .unwrap();
    let scale = 1.0 / (c.h as f32).sqrt();
    let recurrent = dev
        .from_f32(&f(3, c.d * c.h * 3 * c.h, scale), &[c.d, c.h, 3 * c.h])
        .unwrap();
    let bias = dev
        .from_f32(&f(4, c.d * 6 * c.h, 0.5), &[c.d, 2, 3 * c.h])
        .unwrap();
    let init = c.init.then(|| {
        dev.from_f32(&f(5, c.d * c.b * c.h, 1.0), &[c.d, c.b, c.h])
            .unwrap()
    });
    // Ids 0..3: about a third of the steps masked, including runs and the first/last steps.
    let ids = c.mask.then(|| {
        dev.from_u32(&random_u32(seed + 7, c.b * c.t, 3), &[c.b, c.t])
            .unwrap()
    });
    let inputs = GruInputs::new(&x, &kernel, &recurrent, &bias)
        .init(init.as_ref())
        .mask(ids.as_ref())
        .return_sequences(c.seq);
    let state = dev.gru_forward(inputs).unwrap();
    let dy = c.seq.then(|| {
        dev.from_f32(&f(6, c.b * c.t * c.d * c.h, 1.0), &[c.b, c.t, c.d * c.h])
            .unwrap()
    });
    let dh = c.dlast.then(|| {
        dev.from_f32(&f(8, c.b * c.d * c.h, 1.0), &[c.b, c.d * c.h])
            .unwrap()
    });
    let grads = dev
        .gru_backward(
            inputs,
            &state,
            GruOutputGrads {
                dy: dy.as_ref(),
                dh_last: dh.as_ref(),
            },
            true,
        )
        .unwrap();
    let mut out = vec![];
    let mut put = |name: &str, t: &Tensor| out.push((name.to_string(), dev.to_f32(t).unwrap()));
    if let Some(y) = &state.y {
        put("y", y);
    }
    put("h_last", &state.h_last);
    put("cache", &state.cache);
    put("hprev", &state.hprev);
    put("dx", grads.dx.as_ref().unwrap());
    put("dkernel", &grads.dkernel);
    put("drecurrent", &grads.drecurrent);
    put("dbias", &grads.dbias);
    if let Some(dinit) = &grads.dinit {
        put("dinit", dinit);
    }
    out
}

/// Every option, at H = 1, 3, 5, 33, 64, 130, 300 and T = 1 to 70.
fn cases() -> Vec<Case> {
    let base = Case {
        b: 3,
        t: 5,
        e: 4,
        h: 3,
        d: 1,
        init: false,
        mask: false,
        seq: true,
        dlast: false,
    };
    [
        Case {
            b: 1,
            d: 2,
            h: 5,
            t: 3,
            init: true,
            dlast: true,
            ..base
        },
        Case { h: 1, ..base },
        Case {
            d: 2,
            h: 1,
            t: 1,
            ..base
        },
        Case {
            d: 2,
            h: 3,
            init: true,
            dlast: true,
            ..base
        },
        Case {
            d: 2,
            h: 33,
            b: 5,
            t: 9,
            mask: true,
            ..base
        },
        Case {
            d: 1,
            h: 33,
            b: 9,
            t: 7,
            seq: false,
            dlast: true,
            ..base
        },
        Case {
            d: 2,
            h: 64,
            b: 6,
            t: 70,
            e: 5,
            mask: true,
            init: true,
            dlast: true,
            ..base
        },
        Case {
            d: 2,
            h: 64,
            b: 17,
            t: 12,
            e: 16,
            ..base
        },
        Case {
            d: 1,
            h: 130,
            b: 2,
            t: 4,
            e: 3,
            seq: false,
            dlast: true,
            mask: true,
            ..base
        },
        // More units than a workgroup's threads take at one unit each (256): a thread loops.
        Case {
            d: 2,
            h: 300,
            b: 3,
            t: 3,
            e: 2,
            mask: true,
            dlast: true,
            ..base
        },
        // One direction with sequences and a mask: masked steps output h_prev (not zero), so
        // their dy flows into the carried dh.
        Case {
            d: 1,
            h: 33,
            b: 4,
            t: 9,
            mask: true,
            dlast: true,
            ..base
        },
    ]
    .into()
}

/// Runs every case on `dev` and on the reference loops, comparing every output and gradient.
fn matches_reference(dev: &Device) {
    for (i, c) in cases().iter().enumerate() {
        let got = run(dev, c, i as u64);
        let want = run(&Device::cpu_reference(), c, i as u64);
        assert_eq!(got.len(), want.len());
        // Sums over H (forward) and over B*T (weight gradients) are rounded in another order.
        let tol = Tolerance::reduction(3 * c.h + c.b * c.t).max(Tolerance::TRANSCENDENTAL);
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            let what = format!(
                "case {i} (B {} T {} E {} H {} D {} init {} mask {} seq {} dlast {}) {name}",
                c.b, c.t, c.e, c.h, c.d, c.init, c.mask, c.seq, c.dlast
            );
            assert_close(&what, g, w, tol);
        }
    }
}

#[test]
fn fused_gru_matches_reference_forward_and_backward() {
    let Some(gpu) = gpu_device("fused_gru_matches_reference") else {
        return;
    };
    matches_reference(&gpu);
}

/// The CPU device's GRU.
#[test]
fn cpu_gru_matches_reference_forward_and_backward() {
    matches_reference(&Device::cpu());
}

#[test]
fn cpu_gru_gives_the_same_bits_every_run() {
    let c = &cases()[6];
    let first = run(&Device::cpu(), c, 6);
    for _ in 0..3 {
        assert_eq!(run(&Device::cpu(), c, 6), first);
    }
}

#[test]
fn gru_shape_errors_name_the_argument() {
    let dev = Device::cpu();
    let x = dev.zeros(&[2, 3, 4]).unwrap();
    let k = dev.zeros(&[1, 4, 6]).unwrap();
    let r = dev.zeros(&[1, 2, 6]).unwrap();
    let b = dev.zeros(&[1, 2, 6]).unwrap();
    let err = |inputs: GruInputs| dev.gru_forward(inputs).unwrap_err().to_string();
    let bad_r = dev.zeros(&[1, 3, 6]).unwrap();
    let e = err(GruInputs::new(&x, &k, &bad_r, &b));
    assert!(e.contains("recurrent kernel of shape [1, 2, 6]"), "{e}");
    // Keras's reset_after bias has two rows: an LSTM-style (D, 3H) bias is refused.
    let flat_b = dev.zeros(&[1, 6]).unwrap();
    let e = err(GruInputs::new(&x, &k, &r, &flat_b));
    assert!(e.contains("bias of shape [1, 2, 6]"), "{e}");
    let lstm_k = dev.zeros(&[1, 4, 8]).unwrap();
    let e = err(GruInputs::new(&x, &lstm_k, &r, &b));
    assert!(e.contains("3H"), "{e}");
    let ids = dev.from_u32(&[1, 2, 3], &[1, 3]).unwrap();
    let e = err(GruInputs::new(&x, &k, &r, &b).mask(Some(&ids)));
    assert!(e.contains("mask ids of shape [2, 3]"), "{e}");
    let h0 = dev.zeros(&[2, 1, 2, 2]).unwrap();
    let e = err(GruInputs::new(&x, &k, &r, &b).init(Some(&h0)));
    assert!(e.contains("initial state h0 of shape [1, 2, 2]"), "{e}");
    let wide = GruParams::MAX_HIDDEN + 1;
    let k = dev.zeros(&[1, 4, 3 * wide]).unwrap();
    let r = dev.zeros(&[1, wide, 3 * wide]).unwrap();
    let b = dev.zeros(&[1, 2, 3 * wide]).unwrap();
    let e = err(GruInputs::new(&x, &k, &r, &b));
    assert!(e.contains("Unfused"), "{e}");
}

/// The fused layer's dispatches do not grow with T: the forward is the input GEMM and one
/// recurrence dispatch, the backward one BPTT dispatch and its GEMMs and sums, whatever T is.
#[test]
fn gru_dispatches_do_not_grow_with_the_sequence() {
    for dev in [
        Some(Device::cpu()),
        testing::private_gpu_device("gru_dispatches"),
    ]
    .into_iter()
    .flatten()
    {
        let counts: Vec<u64> = [2, 9, 70]
            .into_iter()
            .map(|t| {
                let c = Case {
                    b: 3,
                    t,
                    e: 4,
                    h: 5,
                    d: 2,
                    init: true,
                    mask: true,
                    seq: true,
                    dlast: true,
                };
                let before = dev.counters().dispatches;
                run(&dev, &c, 1);
                dev.counters().dispatches - before
            })
            .collect();
        assert!(
            counts.windows(2).all(|w| w[0] == w[1]),
            "{}: {counts:?}",
            dev.name()
        );
    }
}
