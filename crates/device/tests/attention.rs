//! The fused attention kernels (shaders/attention.wgsl) on the adapter against their CPU
//! reference: outputs, log-sum-exp and every gradient, with and without causal, query and key
//! masks (including rows left with no key), dropout, Tq != Tk, Dk != Dv, head widths 1 to 128
//! and T across tile boundaries, up to 2048. The reference itself is checked against the unfused
//! composition and finite differences in kiln-graph's tests.

use kiln_device::testing::{assert_close, gpu_device, random_f32, random_u32, Tolerance};
use kiln_device::*;

#[derive(Clone, Copy, Debug)]
struct Case {
    b: usize,
    tq: usize,
    tk: usize,
    h: usize,
    dk: usize,
    dv: usize,
    causal: bool,
    qmask: bool,
    kmask: bool,
    dropout: f32,
}

const fn case(b: usize, tq: usize, tk: usize, h: usize, dk: usize, dv: usize) -> Case {
    Case {
        b,
        tq,
        tk,
        h,
        dk,
        dv,
        causal: false,
        qmask: false,
        kmask: false,
        dropout: 0.0,
    }
}

fn cases() -> Vec<Case> {
    let plain = [
        case(1, 1, 1, 1, 1, 1),
        case(2, 5, 7, 3, 4, 6),
        case(1, 70, 65, 2, 16, 8),
        case(2, 33, 33, 1, 128, 128),
        case(1, 130, 129, 2, 64, 64),
        case(3, 9, 140, 1, 3, 70),
    ];
    let mut all = plain.to_vec();
    // Long enough that a loop per element of a row would pass llvmpipe's 65535 iterations per
    // invocation (Mesa before 24 then quietly ends every loop).
    all.push(Case {
        causal: true,
        ..case(1, 2048, 2048, 1, 64, 64)
    });
    for c in [plain[1], plain[2], plain[4]] {
        all.push(Case { causal: true, ..c });
        all.push(Case { kmask: true, ..c });
        all.push(Case {
            qmask: true,
            kmask: true,
            causal: true,
            ..c
        });
        all.push(Case {
            dropout: 0.3,
            kmask: true,
            ..c
        });
    }
    all
}

/// Every output and gradient of one case: (name, values).
fn run(dev: &Device, c: &Case, seed: u64) -> Vec<(String, Vec<f32>)> {
    let f = |s: u64, n: usize| random_f32(seed * 100 + s, n, -1.5, 1.5);
    let q = dev
        .from_f32(&f(1, c.b * c.tq * c.h * c.dk), &[c.b, c.tq, c.h, c.dk])
        .unwrap();
    let k = dev
        .from_f32(&f(2, c.b * c.tk * c.h * c.dk), &[c.b, c.tk, c.h, c.dk])
        .unwrap();
    let v = dev
        .from_f32(&f(3, c.b * c.tk * c.h * c.dv), &[c.b, c.tk, c.h, c.dv])
        .unwrap();
    // Ids 0..3: about a third padded, so some rows (and, with causal, early rows) lose every key.
    let ids = |on: bool, s: u64, t: usize| {
        on.then(|| {
            dev.from_u32(&random_u32(seed + s, c.b * t, 3), &[c.b, t])
                .unwrap()
        })
    };
    let (qids, kids) = (ids(c.qmask, 7, c.tq), ids(c.kmask, 8, c.tk));
    let x = AttentionInputs::new(&q, &k, &v)
        .query_ids(qids.as_ref())
        .key_ids(kids.as_ref());
    let spec =
        AttentionSpec::for_head(c.dk)
            .causal(c.causal)
            .dropout(c.dropout, seed ^ 0x5eed, 1000);
    let fwd = dev.attention(&x, &spec).unwrap();
    let dout = dev
        .from_f32(&f(4, c.b * c.tq * c.h * c.dv), &[c.b, c.tq, c.h, c.dv])
        .unwrap();
    let g = dev.attention_backward(&x, &spec, &fwd, &dout).unwrap();
    [
        ("out", &fwd.out),
        ("lse", &fwd.lse),
        ("dq", &g.dq),
        ("dk", &g.dk),
        ("dv", &g.dv),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), dev.to_f32(t).unwrap()))
    .collect()
}

/// Both kernel families (blocks for GPUs, rows for CPU adapters) against the reference, and
/// against each other bit for bit: the tuner's choice changes speed, never results.
#[test]
fn fused_attention_matches_the_reference_on_the_adapter() {
    let Some(gpu) = gpu_device("attention") else {
        return;
    };
    let cpu = Device::cpu_reference();
    // The row kernels are not used through wgpu's GL backend (Mesa's GLSL compiler takes many
    // minutes over them); every other backend runs both.
    let gl = gpu.info().adapter.is_some_and(|a| a.backend == "Gl");
    let families: &[&str] = if gl { &["blocks"] } else { &["blocks", "rows"] };
    for (n, c) in cases().iter().enumerate() {
        let tol = Tolerance::reduction(c.tk.max(c.tq) * c.dk.max(c.dv));
        let want = run(&cpu, c, n as u64);
        let t = c.tq.max(c.tk).next_power_of_two();
        let class = format!("attention:t{t}:dk{}:dv{}", c.dk, c.dv);
        let mut first: Option<Vec<(String, Vec<f32>)>> = None;
        for &family in families {
            gpu.pin_tuned_choice(&class, family).unwrap();
            let got = run(&gpu, c, n as u64);
            for ((name, g), (_, w)) in got.iter().zip(&want) {
                assert_close(&format!("{family} {c:?} {name}"), g, w, tol);
            }
            if let Some(blocks) = &first {
                for ((name, r), (_, b)) in got.iter().zip(blocks) {
                    let same = r.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{c:?} {name}: rows and blocks differ");
                }
            }
            first = Some(got);
        }
    }
}

#[test]
fn the_cpu_device_matches_the_reference() {
    let (fast, cpu) = (Device::cpu(), Device::cpu_reference());
    for (n, c) in cases().iter().enumerate() {
        let tol = Tolerance::reduction(c.tk.max(c.tq) * c.dk.max(c.dv));
        let (got, want) = (run(&fast, c, n as u64), run(&cpu, c, n as u64));
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert_close(&format!("{c:?} {name}"), g, w, tol);
        }
    }
}

/// A row whose keys are all padded weighs every key 1 / Tk, as Keras's masked softmax does, and
/// stores f32::MIN as its log-sum-exp.
#[test]
fn a_query_with_no_key_averages_every_value() {
    let d = Device::cpu_reference();
    let q = d.from_f32(&[1.0, -2.0], &[1, 2, 1, 1]).unwrap();
    let k = d.from_f32(&[0.5, 3.0, -1.0], &[1, 3, 1, 1]).unwrap();
    let v = d.from_f32(&[1.0, 2.0, 6.0], &[1, 3, 1, 1]).unwrap();
    let kids = d.from_u32(&[0, 5, 0], &[1, 3]).unwrap();
    let qids = d.from_u32(&[4, 0], &[1, 2]).unwrap();
    let x = AttentionInputs::new(&q, &k, &v)
        .key_ids(Some(&kids))
        .query_ids(Some(&qids));
    let out = d.attention(&x, &AttentionSpec::for_head(1)).unwrap();
    // Query 0 sees key 1 alone; query 1 is padded: the mean of v.
    assert_eq!(d.to_f32(&out.out).unwrap(), vec![2.0, 3.0]);
    let lse = d.to_f32(&out.lse).unwrap();
    assert_eq!(lse, vec![3.0, f32::MIN]);
    let causal = AttentionSpec::for_head(1).causal(true);
    let out = d
        .attention(
            &AttentionInputs::new(&q, &k, &v).key_ids(Some(&kids)),
            &causal,
        )
        .unwrap();
    // Causal: query 0 may see key 0 only, which is padded; query 1 sees key 1.
    assert_eq!(d.to_f32(&out.out).unwrap(), vec![3.0, 2.0]);
}

#[test]
fn dispatches_per_call_do_not_grow_with_the_sequence() {
    let Some(gpu) = kiln_device::testing::private_gpu_device("attention_dispatches") else {
        return;
    };
    for t in [8, 200] {
        let c = case(1, t, t, 2, 8, 8);
        let before = gpu.counters().dispatches;
        run(&gpu, &c, 1);
        assert_eq!(
            gpu.counters().dispatches - before,
            3,
            "forward 1, backward 2 at T = {t}"
        );
    }
}

#[test]
fn bad_inputs_are_refused_with_the_fix() {
    let d = Device::cpu();
    let z = |s: &[usize]| d.zeros(s).unwrap();
    let (q, k, v) = (z(&[2, 3, 4, 8]), z(&[2, 5, 4, 8]), z(&[2, 5, 4, 6]));
    let spec = AttentionSpec::for_head(8);
    let err = |x: AttentionInputs, s: &AttentionSpec| d.attention(&x, s).unwrap_err().to_string();
    assert!(
        err(AttentionInputs::new(&q, &z(&[2, 5, 3, 8]), &v), &spec).contains("keys [2, Tk, 4, 8]")
    );
    assert!(err(AttentionInputs::new(&z(&[2, 3, 32]), &k, &v), &spec).contains("rank 4"));
    let wide = z(&[1, 2, 1, 129]);
    assert!(err(AttentionInputs::new(&wide, &wide, &wide), &spec).contains("more heads"));
    let ids = d.from_u32(&[1; 6], &[2, 3]).unwrap();
    assert!(
        err(AttentionInputs::new(&q, &k, &v).key_ids(Some(&ids)), &spec)
            .contains("key ids of shape [2, 5]")
    );
    let f_ids = z(&[2, 5]);
    assert!(err(
        AttentionInputs::new(&q, &k, &v).key_ids(Some(&f_ids)),
        &spec
    )
    .contains("key ids"));
    assert!(err(AttentionInputs::new(&q, &k, &v), &spec.dropout(1.0, 0, 0)).contains("dropout"));
}
