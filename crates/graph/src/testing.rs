//! Test helpers for models built on kiln-graph: gradients checked by central differences.

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
