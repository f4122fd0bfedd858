//! The fused LSTM kernels (shaders/lstm.wgsl) on the adapter, and the CPU device's fast LSTM
//! (kiln_device::cpu), against their CPU reference: forward
//! outputs, the saved cache, and every gradient, for one and two directions, with and without an
//! initial state, a padding mask and each kind of output gradient, at H = 1, 3, 33, 64, 130, 300
//! and T = 1 to 70. The reference itself is checked against the unfused composition and finite differences
//! in kiln-graph's tests.

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
        .from_f32(&f(2, c.d * c.e * 4 * c.h, 0.5), &[c.d, c.e, 4 * c.h])
        .unwrap();
    let scale = 1.0 / (c.h as f32).sqrt();
    let recurrent = dev
        .from_f32(&f(3, c.d * c.h * 4 * c.h, scale), &[c.d, c.h, 4 * c.h])
        .unwrap();
    let bias = dev
        .from_f32(&f(4, c.d * 4 * c.h, 0.5), &[c.d, 4 * c.h])
        .unwrap();
    let init = c.init.then(|| {
        dev.from_f32(&f(5, 2 * c.d * c.b * c.h, 1.0), &[2, c.d, c.b, c.h])
            .unwrap()
    });
    // Ids 0..3: about a third of the steps masked, including runs and the first/last steps.
    let ids = c.mask.then(|| {
        dev.from_u32(&random_u32(seed + 7, c.b * c.t, 3), &[c.b, c.t])
            .unwrap()
    });
    let inputs = LstmInputs::new(&x, &kernel, &recurrent, &bias)
        .init(init.as_ref())
        .mask(ids.as_ref())
        .return_sequences(c.seq);
    let state = dev.lstm_forward(inputs).unwrap();
    let dy = c.seq.then(|| {
        dev.from_f32(&f(6, c.b * c.t * c.d * c.h, 1.0), &[c.b, c.t, c.d * c.h])
            .unwrap()
    });
    let dh = c.dlast.then(|| {
        dev.from_f32(&f(8, c.b * c.d * c.h, 1.0), &[c.b, c.d * c.h])
            .unwrap()
    });
    let dc = c.dlast.then(|| {
        dev.from_f32(&f(9, c.b * c.d * c.h, 1.0), &[c.b, c.d * c.h])
            .unwrap()
    });
    let grads = dev
        .lstm_backward(
            inputs,
            &state,
            LstmOutputGrads {
                dy: dy.as_ref(),
                dh_last: dh.as_ref(),
                dc_last: dc.as_ref(),
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
    put("c_last", &state.c_last);
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
        let tol = Tolerance::reduction(4 * c.h + c.b * c.t).max(Tolerance::TRANSCENDENTAL);
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
fn fused_lstm_matches_reference_forward_and_backward() {
    let Some(gpu) = gpu_device("fused_lstm_matches_reference") else {
        return;
    };
    matches_reference(&gpu);
}

/// The CPU device's LSTM (kiln_device::cpu: one sgemm per step, a thread per direction).
#[test]
fn fast_cpu_lstm_matches_reference_forward_and_backward() {
    matches_reference(&Device::cpu());
}

#[test]
fn fast_cpu_lstm_gives_the_same_bits_every_run() {
    let c = &cases()[6];
    let first = run(&Device::cpu(), c, 6);
    for _ in 0..3 {
        assert_eq!(run(&Device::cpu(), c, 6), first);
    }
}

#[test]
fn lstm_shape_errors_name_the_argument() {
    let dev = Device::cpu();
    let x = dev.zeros(&[2, 3, 4]).unwrap();
    let k = dev.zeros(&[1, 4, 8]).unwrap();
    let r = dev.zeros(&[1, 2, 8]).unwrap();
    let bad_r = dev.zeros(&[1, 3, 8]).unwrap();
    let b = dev.zeros(&[1, 8]).unwrap();
    let e = dev
        .lstm_forward(LstmInputs::new(&x, &k, &bad_r, &b))
        .unwrap_err()
        .to_string();
    assert!(e.contains("recurrent kernel of shape [1, 2, 8]"), "{e}");
    let ids = dev.from_u32(&[1, 2, 3], &[1, 3]).unwrap();
    let e = dev
        .lstm_forward(LstmInputs::new(&x, &k, &r, &b).mask(Some(&ids)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("mask ids of shape [2, 3]"), "{e}");
    let wide = LstmParams::MAX_HIDDEN + 1;
    let k = dev.zeros(&[1, 4, 4 * wide]).unwrap();
    let r = dev.zeros(&[1, wide, 4 * wide]).unwrap();
    let b = dev.zeros(&[1, 4 * wide]).unwrap();
    let e = dev
        .lstm_forward(LstmInputs::new(&x, &k, &r, &b))
        .unwrap_err()
        .to_string();
    assert!(e.contains("Unfused"), "{e}");
}

/// The rows per workgroup that autotuning picks change speed only: the same bits, forward and
/// backward, with 1 row and with 4 rows per workgroup.
#[test]
fn fused_lstm_gives_the_same_bits_with_any_rows_per_workgroup() {
    let (Some(one), Some(four)) = (
        testing::private_gpu_device("lstm_rows_1"),
        testing::private_gpu_device("lstm_rows_4"),
    ) else {
        return;
    };
    let c = &cases()[6];
    let class = format!("lstm:b{}:h{}:d{}", c.b.next_power_of_two(), c.h, c.d);
    one.pin_tuned_choice(&class, "rows1").unwrap();
    four.pin_tuned_choice(&class, "rows4").unwrap();
    assert!(one.pin_tuned_choice(&class, "rows9").is_err());
    assert!(Device::cpu().pin_tuned_choice(&class, "rows1").is_err());
    let bits = |d: &Device| {
        run(d, c, 6)
            .into_iter()
            .map(|(name, v)| (name, v.into_iter().map(f32::to_bits).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&one), bits(&four));
    // The pins took: each device compiled the forward kernel with its rows.
    let rows = |d: &Device| -> Vec<f64> {
        d.pipeline_keys()
            .into_iter()
            .filter(|k| k.entry == "lstm_forward")
            .flat_map(|k| k.overrides.into_iter())
            .filter(|(name, _)| *name == "ROWS")
            .map(|(_, v)| f64::from_bits(v))
            .collect()
    };
    assert_eq!((rows(&one), rows(&four)), (vec![1.0], vec![4.0]));
}

/// The hidden units per thread (1 on a GPU, up to 8 on a CPU adapter, or pinned) change speed
/// only: the same bits with the adapter's own choice, 1 and 2, at H = 300, where one unit a
/// thread makes a thread loop (256 threads at most) and a block of 2 rows is left partial.
#[test]
fn fused_lstm_gives_the_same_bits_with_any_units_per_thread() {
    let Some(d) = testing::private_gpu_device("lstm_units") else {
        return;
    };
    let i = 9;
    let c = &cases()[i];
    assert_eq!((c.h, c.b), (300, 3));
    let class = format!("lstm:b{}:h{}:d{}", c.b.next_power_of_two(), c.h, c.d);
    let bits = || {
        run(&d, c, i as u64)
            .into_iter()
            .map(|(name, v)| (name, v.into_iter().map(f32::to_bits).collect::<Vec<_>>()))
            .collect::<Vec<_>>()
    };
    // The units each kernel was compiled with, so far.
    let units = || {
        let mut seen: Vec<(&str, u64)> = d
            .pipeline_keys()
            .into_iter()
            .filter(|k| k.entry.starts_with("lstm_"))
            .flat_map(|k| {
                let entry = k.entry;
                k.overrides
                    .into_iter()
                    .filter(|(name, _)| *name == "UNITS")
                    .map(move |(_, v)| (entry, f64::from_bits(v) as u64))
            })
            .collect();
        seen.sort();
        seen
    };
    d.pin_tuned_choice(&class, "rows2").unwrap();
    let want = bits();
    let own = units();
    assert_eq!(own.len(), 2, "{own:?}");
    for pinned in [1, 2] {
        d.pin_tuned_choice(&class, &format!("rows2:units{pinned}"))
            .unwrap();
        assert_eq!(bits(), want, "{pinned} unit(s) a thread");
        // The pin took, in both kernels.
        for entry in ["lstm_backward", "lstm_forward"] {
            assert!(units().contains(&(entry, pinned)), "{entry} {:?}", units());
        }
    }
    for bad in ["rows2:units3", "rows2:units16"] {
        assert!(d.pin_tuned_choice(&class, bad).is_err(), "{bad}");
    }
}
