//! Test helpers for models built on kiln-graph: gradients of parameters and of inputs checked
//! by central differences.

use kiln_device::testing::{assert_close, Tolerance};

use crate::params::ParamStore;
use crate::tape::{Tape, Var};

/// Checks the gradients that backward records for every element of every parameter in `store`
/// against central differences (step `eps`) of the scalar `f`, within `tol`; panics naming the
/// parameter and the first mismatches. `f` builds the same scalar on whichever tape it is given.
pub fn check_param_gradients(
    name: &str,
    store: &ParamStore,
    eps: f32,
    tol: Tolerance,
    f: impl Fn(&Tape) -> Var,
) {
    let d = store.device().clone();
    store.zero_grad().expect("zero gradients");
    let tape = Tape::recording(&d);
    tape.backward(&f(&tape)).expect("backward");
    let eval = || d.to_f32(f(&Tape::inference(&d)).value()).expect("read")[0];
    for id in store.ids() {
        let analytic = d.to_f32(store.grad(id)).expect("read");
        let base = d.to_f32(store.value(id)).expect("read");
        let mut numeric = vec![0.0; base.len()];
        for i in 0..base.len() {
            let mut v = base.clone();
            v[i] = base[i] + eps;
            d.write_f32(store.value(id), &v).expect("write");
            let up = eval();
            v[i] = base[i] - eps;
            d.write_f32(store.value(id), &v).expect("write");
            numeric[i] = (up - eval()) / (2.0 * eps);
        }
        d.write_f32(store.value(id), &base).expect("write");
        assert_close(
            &format!("{name}: d/d {}", store.name(id)),
            &analytic,
            &numeric,
            tol,
        );
    }
}

/// Checks the gradients that backward gives the inputs `xs` (on device `d`, each made into a
/// [`Tape::input`]) against central differences (step `eps`) of the scalar `f`, within `tol`;
/// panics naming the input and the first mismatches. For ops of one's own
/// ([`crate::CustomOp`]) and compositions without parameters.
pub fn check_input_gradients(
    name: &str,
    d: &kiln_device::Device,
    xs: &[kiln_device::Tensor],
    eps: f32,
    tol: Tolerance,
    f: impl Fn(&Tape, &[Var]) -> Var,
) {
    let tape = Tape::recording(d);
    let vars: Vec<Var> = xs.iter().map(|x| tape.input(x.clone())).collect();
    tape.backward(&f(&tape, &vars)).expect("backward");
    let hosts: Vec<Vec<f32>> = xs.iter().map(|x| d.to_f32(x).expect("read")).collect();
    let eval = |hosts: &[Vec<f32>]| {
        let t = Tape::inference(d);
        let vars: Vec<Var> = hosts
            .iter()
            .zip(xs)
            .map(|(h, x)| t.constant(d.from_f32(h, x.shape()).expect("upload")))
            .collect();
        d.to_f32(f(&t, &vars).value()).expect("read")[0]
    };
    for (k, var) in vars.iter().enumerate() {
        let analytic = match tape.grad(var) {
            Some(g) => d.to_f32(&g).expect("read"),
            None => vec![0.0; hosts[k].len()],
        };
        let mut numeric = vec![0.0; hosts[k].len()];
        for i in 0..numeric.len() {
            let mut moved = hosts.clone();
            moved[k][i] = hosts[k][i] + eps;
            let up = eval(&moved);
            moved[k][i] = hosts[k][i] - eps;
            numeric[i] = (up - eval(&moved)) / (2.0 * eps);
        }
        assert_close(&format!("{name}: d/d input {k}"), &analytic, &numeric, tol);
    }
}
