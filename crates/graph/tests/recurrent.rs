//! Recurrent ops: the fused LSTM and GRU against their unfused compositions (forward and every
//! gradient, with and without masks and initial states, H = 1, 3, 33, 64, T = 1 to 40), on the CPU
//! device and on the adapter; both against central finite differences; the simple RNN, narrow and
//! concat too.

use kiln_device::testing::{assert_close, gpu_device, random_f32, random_u32, Tolerance};
use kiln_device::{Device, Tensor};
use kiln_graph::*;

/// Which recurrent layer a case runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    /// Gate blocks of the weights' last axis.
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    b: usize,
    t: usize,
    e: usize,
    h: usize,
    d: usize,
    init: bool,
    mask: bool,
    seq: bool,
}

/// x, kernel, recurrent, bias (and init) as parameters, so that every gradient can be read.
fn store(dev: &Device, cell: Cell, c: &Case, seed: u64) -> ParamStore {
    let b = ParamBuilder::new(seed);
    let v = |s: u64, n: usize, a: f32| Init::Values(random_f32(seed * 10 + s, n, -a, a));
    let (hg, sc) = (cell.gates() * c.h, 1.0 / (c.h as f32).sqrt());
    b.add("x", &[c.b, c.t, c.e], v(1, c.b * c.t * c.e, 1.0))
        .unwrap();
    b.add("kernel", &[c.d, c.e, hg], v(2, c.d * c.e * hg, 0.6))
        .unwrap();
    b.add("recurrent", &[c.d, c.h, hg], v(3, c.d * c.h * hg, sc))
        .unwrap();
    // The GRU's bias has two rows per direction: input, then recurrent.
    let bias = match cell {
        Cell::Lstm => vec![c.d, hg],
        Cell::Gru => vec![c.d, 2, hg],
    };
    let n = bias.iter().product();
    b.add("bias", &bias, v(4, n, 0.5)).unwrap();
    if c.init {
        let shape = match cell {
            Cell::Lstm => vec![2, c.d, c.b, c.h],
            Cell::Gru => vec![c.d, c.b, c.h],
        };
        b.add("init", &shape, v(5, shape.iter().product(), 1.0))
            .unwrap();
    }
    b.build(dev).unwrap()
}

fn ids(dev: &Device, c: &Case, seed: u64) -> Option<Tensor> {
    c.mask.then(|| {
        dev.from_u32(&random_u32(seed + 77, c.b * c.t, 3), &[c.b, c.t])
            .unwrap()
    })
}

/// A layer's outputs: the sequence (with `seq`), then h (and c for the LSTM).
struct Outputs {
    y: Option<Var>,
    states: Vec<Var>,
}

/// sum over outputs of mean(output * r): every output element matters.
fn objective(tape: &Tape, out: &Outputs) -> Var {
    let mut parts: Vec<&Var> = out.states.iter().collect();
    parts.extend(out.y.as_ref());
    let mut total: Option<Var> = None;
    for (i, v) in parts.into_iter().enumerate() {
        let r = random_f32(500 + i as u64, v.value().len(), -1.0, 1.0);
        let r = tape.constant(tape.device().from_f32(&r, v.shape()).unwrap());
        let m = tape.mean(&tape.mul(v, &r).unwrap()).unwrap();
        total = Some(match total {
            Some(t) => tape.add(&t, &m).unwrap(),
            None => m,
        });
    }
    total.unwrap()
}

fn run(
    tape: &Tape,
    s: &ParamStore,
    (cell, c): (Cell, &Case),
    ids: Option<&Tensor>,
    path: LstmPath,
) -> Outputs {
    let p = |name: &str| tape.param(s, s.find(name).unwrap());
    let init = c.init.then(|| p("init"));
    let (x, k, r, b) = (p("x"), p("kernel"), p("recurrent"), p("bias"));
    let vars = LstmVars::new(&x, &k, &r, &b)
        .init(init.as_ref())
        .mask(ids)
        .return_sequences(c.seq);
    match (cell, path) {
        (Cell::Lstm, _) => {
            let out = match path {
                LstmPath::Fused => tape.lstm_fused(vars),
                LstmPath::Unfused => tape.lstm_unfused(vars),
            }
            .unwrap();
            Outputs {
                y: out.y,
                states: vec![out.h, out.c],
            }
        }
        (Cell::Gru, _) => {
            let out = match path {
                LstmPath::Fused => tape.gru_fused(vars),
                LstmPath::Unfused => tape.gru_unfused(vars),
            }
            .unwrap();
            Outputs {
                y: out.y,
                states: vec![out.h],
            }
        }
    }
}

/// Outputs and every gradient, by one path.
fn outputs_and_grads(
    dev: &Device,
    (cell, c): (Cell, &Case),
    seed: u64,
    path: LstmPath,
) -> Vec<(String, Vec<f32>)> {
    let s = store(dev, cell, c, seed);
    let ids = ids(dev, c, seed);
    let tape = Tape::recording(dev);
    let out = run(&tape, &s, (cell, c), ids.as_ref(), path);
    let mut got = vec![];
    if let Some(y) = &out.y {
        got.push(("y".to_string(), dev.to_f32(y.value()).unwrap()));
    }
    for (i, v) in out.states.iter().enumerate() {
        got.push((format!("state {i}"), dev.to_f32(v.value()).unwrap()));
    }
    let loss = objective(&tape, &out);
    tape.backward(&loss).unwrap();
    for id in s.ids() {
        got.push((format!("d{}", s.name(id)), dev.to_f32(s.grad(id)).unwrap()));
    }
    got
}

fn cases() -> Vec<Case> {
    let base = Case {
        b: 3,
        t: 4,
        e: 3,
        h: 3,
        d: 1,
        init: false,
        mask: false,
        seq: true,
    };
    vec![
        Case { h: 1, ..base },
        Case { t: 1, d: 2, ..base },
        Case {
            d: 2,
            init: true,
            mask: true,
            ..base
        },
        Case {
            h: 33,
            b: 2,
            t: 6,
            d: 2,
            mask: true,
            seq: false,
            ..base
        },
        Case {
            h: 64,
            b: 2,
            t: 40,
            e: 5,
            d: 2,
            init: true,
            ..base
        },
        Case {
            h: 64,
            b: 5,
            t: 7,
            e: 4,
            d: 1,
            mask: true,
            seq: false,
            init: true,
        },
    ]
}

fn compare_paths(dev: &Device, cell: Cell, label: &str) {
    for (i, c) in cases().iter().enumerate() {
        let fused = outputs_and_grads(dev, (cell, c), i as u64, LstmPath::Fused);
        let unfused = outputs_and_grads(dev, (cell, c), i as u64, LstmPath::Unfused);
        assert_eq!(fused.len(), unfused.len());
        let tol = Tolerance::reduction(4 * c.h + c.b * c.t).max(Tolerance::TRANSCENDENTAL);
        for ((name, f), (_, u)) in fused.iter().zip(&unfused) {
            assert_close(
                &format!("{label} {cell:?} case {i} {c:?}: {name}"),
                f,
                u,
                tol,
            );
        }
    }
}

#[test]
fn fused_lstm_matches_unfused_composition_on_cpu() {
    compare_paths(&Device::cpu(), Cell::Lstm, "cpu");
}

#[test]
fn fused_lstm_matches_unfused_composition_on_gpu() {
    let Some(gpu) = gpu_device("fused_lstm_matches_unfused_composition_on_gpu") else {
        return;
    };
    compare_paths(&gpu, Cell::Lstm, "gpu");
}

#[test]
fn fused_gru_matches_unfused_composition_on_cpu() {
    compare_paths(&Device::cpu(), Cell::Gru, "cpu");
}

#[test]
fn fused_gru_matches_unfused_composition_on_gpu() {
    let Some(gpu) = gpu_device("fused_gru_matches_unfused_composition_on_gpu") else {
        return;
    };
    compare_paths(&gpu, Cell::Gru, "gpu");
}

const EPS: f32 = 3e-3;
const FD_TOL: Tolerance = Tolerance {
    abs: 2e-3,
    rel: 2e-2,
};

/// Central differences of `f` against its recorded gradients, for every parameter element.
fn gradcheck(name: &str, s: &ParamStore, f: impl Fn(&Tape) -> Var) {
    kiln_graph::testing::check_param_gradients(name, s, EPS, FD_TOL, f);
}

#[test]
fn fused_and_unfused_lstm_against_finite_differences() {
    recurrent_against_finite_differences(Cell::Lstm);
}

#[test]
fn fused_and_unfused_gru_against_finite_differences() {
    recurrent_against_finite_differences(Cell::Gru);
}

fn recurrent_against_finite_differences(cell: Cell) {
    let dev = Device::cpu();
    let c = Case {
        b: 2,
        t: 3,
        e: 2,
        h: 2,
        d: 2,
        init: true,
        mask: true,
        seq: true,
    };
    let s = store(&dev, cell, &c, 42);
    let ids = dev.from_u32(&[1, 0, 2, 2, 1, 0], &[2, 3]).unwrap();
    for path in [LstmPath::Fused, LstmPath::Unfused] {
        gradcheck(&format!("{cell:?} {path:?}"), &s, |t| {
            objective(t, &run(t, &s, (cell, &c), Some(&ids), path))
        });
        s.zero_grad().unwrap();
    }
}

#[test]
fn simple_rnn_narrow_and_concat_against_finite_differences() {
    let dev = Device::cpu();
    let b = ParamBuilder::new(3);
    let v = |s: u64, n: usize| Init::Values(random_f32(s, n, -0.8, 0.8));
    b.add("x", &[2, 4, 3], v(1, 24)).unwrap();
    b.add("kernel", &[3, 5], v(2, 15)).unwrap();
    b.add("recurrent", &[5, 5], v(3, 25)).unwrap();
    b.add("bias", &[5], v(4, 5)).unwrap();
    let s = b.build(&dev).unwrap();
    let p = |t: &Tape, n: &str| t.param(&s, s.find(n).unwrap());
    gradcheck("simple_rnn", &s, |t| {
        let (y, h) = t
            .simple_rnn(
                &p(t, "x"),
                &p(t, "kernel"),
                &p(t, "recurrent"),
                &p(t, "bias"),
                true,
            )
            .unwrap();
        let y = y.unwrap();
        // Mix narrow and concat in: [y[:, 1:3], h as (B, 1, H)] along time.
        let mid = t.narrow(&y, 1, 1, 2).unwrap();
        let h3 = t.reshape(&h, &[2, 1, 5]).unwrap();
        let joined = t.concat(&[&mid, &h3], 1).unwrap();
        let r = random_f32(9, joined.value().len(), -1.0, 1.0);
        let r = t.constant(t.device().from_f32(&r, joined.shape()).unwrap());
        t.mean(&t.mul(&joined, &r).unwrap()).unwrap()
    });
}

#[test]
fn bidirectional_last_states_are_forward_end_and_backward_start() {
    // With return_sequences the last states must equal y[:, T-1, :H] and y[:, 0, H:].
    let dev = Device::cpu();
    let c = Case {
        b: 2,
        t: 5,
        e: 3,
        h: 4,
        d: 2,
        init: false,
        mask: false,
        seq: true,
    };
    for cell in [Cell::Lstm, Cell::Gru] {
        let s = store(&dev, cell, &c, 7);
        let tape = Tape::inference(&dev);
        let out = run(&tape, &s, (cell, &c), None, LstmPath::Fused);
        let y = dev.to_f32(out.y.unwrap().value()).unwrap();
        let h = dev.to_f32(out.states[0].value()).unwrap();
        for b in 0..2 {
            for j in 0..4 {
                assert_eq!(h[b * 8 + j], y[(b * 5 + 4) * 8 + j], "{cell:?}");
                assert_eq!(h[b * 8 + 4 + j], y[(b * 5) * 8 + 4 + j], "{cell:?}");
            }
        }
    }
}
