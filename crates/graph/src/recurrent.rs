//! Recurrent ops on the tape: the LSTM and the GRU, each fused (kiln-device's persistent
//! kernels: two dispatches forward, whatever T is) or unfused (matmul and elementwise ops per
//! timestep, the way a general-purpose framework runs it), and the simple RNN.
//!
//! Both LSTM paths take the same weights, Keras's layout stacked over directions D (1, or 2 for a
//! bidirectional layer; 0 = forward, 1 = backward): kernel (D, E, 4H), recurrent (D, H, 4H),
//! bias (D, 4H), gates i, f, g, o. The unfused path is the reference the fused one is tested
//! against, and the fallback for layers wider than the fused kernels take.

use kiln_device::{
    GruInputs, GruOutputGrads, LstmInputs, LstmOutputGrads, LstmPath, Tensor, UnaryOp,
};

use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// One LSTM layer's inputs on the tape: the input sequence, the weights (Keras's layout stacked
/// over directions D), the initial state and the mask (kiln-device's [`LstmInputs`] over
/// variables).
pub type LstmVars<'a> = LstmInputs<'a, Var>;

/// One GRU layer's inputs on the tape (kiln-device's [`GruInputs`] over variables): kernel
/// (D, E, 3H), recurrent (D, H, 3H), bias (D, 2, 3H), init h0 (D, B, H).
pub type GruVars<'a> = GruInputs<'a, Var>;

/// A GRU's outputs.
#[derive(Clone, Debug)]
pub struct GruOutputs {
    /// (B, T, D*H), with `return_sequences`.
    pub y: Option<Var>,
    /// (B, D*H): each direction's last state (forward at t = T-1, backward at t = 0).
    pub h: Var,
}

/// An LSTM's outputs.
#[derive(Clone, Debug)]
pub struct LstmOutputs {
    /// (B, T, D*H), with `return_sequences`.
    pub y: Option<Var>,
    /// (B, D*H): each direction's last state (forward at t = T-1, backward at t = 0).
    pub h: Var,
    /// (B, D*H): the matching cell states.
    pub c: Var,
}

/// Per-step masks for the unfused paths: for each t, a (B, H) tensor of 1 (keep) / 0 (masked).
fn step_masks(tape: &Tape, ids: &Tensor, hidden: usize) -> Result<Vec<Tensor>> {
    let d = tape.device();
    let (b, t) = (ids.shape()[0], ids.shape()[1]);
    let host = d.to_u32(ids)?;
    (0..t)
        .map(|s| {
            let m: Vec<f32> = (0..b)
                .flat_map(|r| {
                    let keep = if host[r * t + s] == 0 { 0.0 } else { 1.0 };
                    std::iter::repeat_n(keep, hidden)
                })
                .collect();
            Ok(d.from_f32(&m, &[b, hidden])?)
        })
        .collect()
}

fn check_mask(x: &[usize], mask: Option<&Tensor>) -> Result<()> {
    if let Some(mask) = mask {
        if x.len() < 2 || mask.shape() != &x[..2] {
            return Err(Error::model(
                "recurrent mask",
                format!("ids of shape {:?} for input {x:?}", mask.shape()),
            ));
        }
    }
    Ok(())
}

impl Tape {
    /// The LSTM by the tape's path ([`Tape::lstm_path`]); the fused path falls back to the
    /// unfused one where the kernels do not run (wider than
    /// [`kiln_device::LstmParams::MAX_HIDDEN`], or an adapter short of their limits).
    pub fn lstm(&self, inputs: LstmVars) -> Result<LstmOutputs> {
        let hidden = inputs.recurrent.shape().get(1).copied().unwrap_or(0);
        if self.lstm_path() == LstmPath::Fused && self.device().lstm_fused_supported(hidden) {
            self.lstm_fused(inputs)
        } else {
            self.lstm_unfused(inputs)
        }
    }

    /// The fused LSTM (kiln-device's persistent kernels).
    pub fn lstm_fused(&self, inputs: LstmVars) -> Result<LstmOutputs> {
        let LstmVars {
            x,
            kernel,
            recurrent,
            bias,
            init,
            mask,
            return_sequences,
        } = inputs;
        check_mask(x.shape(), mask)?;
        let d = self.device();
        let state = d.lstm_forward(
            LstmInputs::new(x.value(), kernel.value(), recurrent.value(), bias.value())
                .init(init.map(Var::value))
                .mask(mask)
                .return_sequences(return_sequences),
        )?;
        let mut values = vec![];
        values.extend(state.y.clone());
        values.push(state.h_last.clone());
        values.push(state.c_last.clone());
        let saved = [x, kernel, recurrent, bias].map(|v| v.value().clone());
        let (init_v, mask_v, need_dx) = (
            init.map(|v| v.value().clone()),
            mask.cloned(),
            x.requires_grad(),
        );
        let mut parents = vec![x, kernel, recurrent, bias];
        parents.extend(init);
        let mut outs = self.record_multi(values, &parents, move |d, douts| {
            let mut it = douts.into_iter();
            let dy = if return_sequences {
                it.next().flatten()
            } else {
                None
            };
            let (dh, dc) = (it.next().flatten(), it.next().flatten());
            let [xv, kv, rv, bv] = &saved;
            let inputs = LstmInputs::new(xv, kv, rv, bv)
                .init(init_v.as_ref())
                .mask(mask_v.as_ref())
                .return_sequences(return_sequences);
            let grads = LstmOutputGrads {
                dy: dy.as_ref(),
                dh_last: dh.as_ref(),
                dc_last: dc.as_ref(),
            };
            let g = d.lstm_backward(inputs, &state, grads, need_dx)?;
            let mut grads = vec![g.dx, Some(g.dkernel), Some(g.drecurrent), Some(g.dbias)];
            if init_v.is_some() {
                grads.push(g.dinit);
            }
            Ok(grads)
        });
        let c = outs.pop().expect("c");
        let h = outs.pop().expect("h");
        Ok(LstmOutputs {
            y: outs.pop(),
            h,
            c,
        })
    }

    /// The same LSTM composed of tape ops, one timestep at a time: per step and direction a matmul
    /// h . recurrent, the gate slices, three sigmoids, two tanh and the cell arithmetic.
    pub fn lstm_unfused(&self, inputs: LstmVars) -> Result<LstmOutputs> {
        let h = inputs.recurrent.shape().get(1).copied().unwrap_or(0);
        let (y, mut states) = self.unfused_recurrence(
            "lstm",
            inputs,
            4,
            |dir, b| {
                let (hv, cv) = self.lstm_start(inputs.init, dir, b, h)?;
                Ok(vec![hv, cv])
            },
            |dir, xt, state| {
                let u = self.reshape(&self.narrow(inputs.recurrent, 0, dir, 1)?, &[h, 4 * h])?;
                let bias = self.reshape(&self.narrow(inputs.bias, 0, dir, 1)?, &[4 * h])?;
                let z = self.add(
                    &self.add(xt, &bias)?,
                    &self.matmul(&state[0], &u, false, false)?,
                )?;
                let (h_new, c_new) = self.lstm_cell(&z, &state[1], h)?;
                Ok(vec![h_new, c_new])
            },
        )?;
        let c = states.pop().expect("c");
        let h = states.pop().expect("h");
        Ok(LstmOutputs { y, h, c })
    }

    /// The GRU by the tape's path ([`Tape::lstm_path`], which chooses for every recurrent
    /// layer); the fused path falls back to the unfused one where the kernels do not run.
    pub fn gru(&self, inputs: GruVars) -> Result<GruOutputs> {
        let hidden = inputs.recurrent.shape().get(1).copied().unwrap_or(0);
        if self.lstm_path() == LstmPath::Fused && self.device().gru_fused_supported(hidden) {
            self.gru_fused(inputs)
        } else {
            self.gru_unfused(inputs)
        }
    }

    /// The fused GRU (kiln-device's persistent kernels).
    pub fn gru_fused(&self, inputs: GruVars) -> Result<GruOutputs> {
        let GruVars {
            x,
            kernel,
            recurrent,
            bias,
            init,
            mask,
            return_sequences,
        } = inputs;
        check_mask(x.shape(), mask)?;
        let d = self.device();
        let state = d.gru_forward(
            GruInputs::new(x.value(), kernel.value(), recurrent.value(), bias.value())
                .init(init.map(Var::value))
                .mask(mask)
                .return_sequences(return_sequences),
        )?;
        let mut values = vec![];
        values.extend(state.y.clone());
        values.push(state.h_last.clone());
        let saved = [x, kernel, recurrent, bias].map(|v| v.value().clone());
        let (init_v, mask_v, need_dx) = (
            init.map(|v| v.value().clone()),
            mask.cloned(),
            x.requires_grad(),
        );
        let mut parents = vec![x, kernel, recurrent, bias];
        parents.extend(init);
        let mut outs = self.record_multi(values, &parents, move |d, douts| {
            let mut it = douts.into_iter();
            let dy = if return_sequences {
                it.next().flatten()
            } else {
                None
            };
            let dh = it.next().flatten();
            let [xv, kv, rv, bv] = &saved;
            let inputs = GruInputs::new(xv, kv, rv, bv)
                .init(init_v.as_ref())
                .mask(mask_v.as_ref())
                .return_sequences(return_sequences);
            let grads = GruOutputGrads {
                dy: dy.as_ref(),
                dh_last: dh.as_ref(),
            };
            let g = d.gru_backward(inputs, &state, grads, need_dx)?;
            let mut grads = vec![g.dx, Some(g.dkernel), Some(g.drecurrent), Some(g.dbias)];
            if init_v.is_some() {
                grads.push(g.dinit);
            }
            Ok(grads)
        });
        let h = outs.pop().expect("h");
        Ok(GruOutputs { y: outs.pop(), h })
    }

    /// The same GRU composed of tape ops, one timestep at a time: per step and direction a
    /// matmul h . recurrent, the gate slices, two sigmoids, a tanh and the update arithmetic.
    pub fn gru_unfused(&self, inputs: GruVars) -> Result<GruOutputs> {
        let h = inputs.recurrent.shape().get(1).copied().unwrap_or(0);
        let (y, mut states) = self.unfused_recurrence(
            "gru",
            inputs,
            3,
            |dir, b| {
                let h0 = match inputs.init {
                    Some(init) => self.reshape(&self.narrow(init, 0, dir, 1)?, &[b, h])?,
                    None => self.constant(self.device().zeros(&[b, h])?),
                };
                Ok(vec![h0])
            },
            |dir, xt, state| {
                let u = self.reshape(&self.narrow(inputs.recurrent, 0, dir, 1)?, &[h, 3 * h])?;
                let bias = self.narrow(inputs.bias, 0, dir, 1)?;
                let part = |which: usize| self.reshape(&self.narrow(&bias, 1, which, 1)?, &[3 * h]);
                let x = self.add(xt, &part(0)?)?;
                let a = self.add(&self.matmul(&state[0], &u, false, false)?, &part(1)?)?;
                let gate = |v: &Var, g: usize| self.narrow(v, 1, g * h, h);
                let z = self.unary(UnaryOp::Sigmoid, &self.add(&gate(&x, 0)?, &gate(&a, 0)?)?)?;
                let r = self.unary(UnaryOp::Sigmoid, &self.add(&gate(&x, 1)?, &gate(&a, 1)?)?)?;
                let n = self.unary(
                    UnaryOp::Tanh,
                    &self.add(&gate(&x, 2)?, &self.mul(&r, &gate(&a, 2)?)?)?,
                )?;
                // z h + (1 - z) n, as n + z (h - n).
                let h_new = self.add(&n, &self.mul(&z, &self.sub(&state[0], &n)?)?)?;
                Ok(vec![h_new])
            },
        )?;
        let h = states.pop().expect("h");
        Ok(GruOutputs { y, h })
    }

    /// A recurrent layer of `gates` * H columns composed of tape ops, one timestep at a time:
    /// per direction the input projection x . kernel, then `step(dir, x_t, state)` from
    /// `start(dir, B)`, whose first state is h. The mask carries every state through a masked
    /// step; sequences output h (zero at masked steps for two directions, as Keras's
    /// Bidirectional). Returns the sequence (B, T, D*H) when asked, and each state's last value
    /// (B, D*H), directions concatenated.
    fn unfused_recurrence(
        &self,
        op: &str,
        inputs: LstmVars,
        gates: usize,
        start: impl Fn(usize, usize) -> Result<Vec<Var>>,
        step: impl Fn(usize, &Var, &[Var]) -> Result<Vec<Var>>,
    ) -> Result<(Option<Var>, Vec<Var>)> {
        let LstmVars {
            x,
            kernel,
            mask,
            return_sequences,
            ..
        } = inputs;
        check_mask(x.shape(), mask)?;
        let &[b, t, e] = x.shape() else {
            return Err(Error::model(
                op,
                format!("x of shape [B, T, E], got {:?}", x.shape()),
            ));
        };
        let (dirs, hg) = match *kernel.shape() {
            [dirs, _, hg] if hg % gates == 0 => (dirs, hg),
            _ => {
                return Err(Error::model(
                    op,
                    format!("kernel [D, E, {gates}H], got {:?}", kernel.shape()),
                ))
            }
        };
        let h = hg / gates;
        let masks = mask.map(|m| step_masks(self, m, h)).transpose()?;
        let x2 = self.reshape(x, &[b * t, e])?;
        let (mut ys, mut last): (Vec<Var>, Vec<Vec<Var>>) = (vec![], vec![]);
        for dir in 0..dirs {
            let k = self.reshape(&self.narrow(kernel, 0, dir, 1)?, &[e, hg])?;
            let xproj = self.reshape(&self.matmul(&x2, &k, false, false)?, &[b, t, hg])?;
            let mut state = start(dir, b)?;
            let mut seq: Vec<Option<Var>> = vec![None; t];
            for s in 0..t {
                let ts = if dir == 1 { t - 1 - s } else { s };
                let xt = self.reshape(&self.narrow(&xproj, 1, ts, 1)?, &[b, hg])?;
                let new = step(dir, &xt, &state)?;
                state = match &masks {
                    Some(m) => {
                        // state = prev + keep * (new - prev)
                        let keep = self.constant(m[ts].clone());
                        let carried = |(prev, new): (&Var, &Var)| {
                            self.add(prev, &self.mul(&keep, &self.sub(new, prev)?)?)
                        };
                        state.iter().zip(&new).map(carried).collect::<Result<_>>()?
                    }
                    None => new,
                };
                if return_sequences {
                    // Keras's Bidirectional outputs zeros at masked steps; a single layer repeats h.
                    let out = match &masks {
                        Some(m) if dirs == 2 => {
                            self.mul(&state[0], &self.constant(m[ts].clone()))?
                        }
                        _ => state[0].clone(),
                    };
                    seq[ts] = Some(self.reshape(&out, &[b, 1, h])?);
                }
            }
            if return_sequences {
                let parts: Vec<Var> = seq.into_iter().map(|v| v.expect("every step")).collect();
                ys.push(self.concat(&parts.iter().collect::<Vec<_>>(), 1)?);
            }
            last.push(state);
        }
        let join = |vs: Vec<Var>, axis: usize| -> Result<Var> {
            if vs.len() == 1 {
                Ok(vs.into_iter().next().expect("one"))
            } else {
                self.concat(&vs.iter().collect::<Vec<_>>(), axis)
            }
        };
        let y = if return_sequences {
            Some(join(ys, 2)?)
        } else {
            None
        };
        let kinds = last.first().map_or(0, Vec::len);
        let states = (0..kinds)
            .map(|i| join(last.iter().map(|s| s[i].clone()).collect(), 1))
            .collect::<Result<_>>()?;
        Ok((y, states))
    }

    /// The unfused LSTM's state before its first step in direction `dir`: `init`'s (2, D, B, H)
    /// slices, or zeros.
    fn lstm_start(&self, init: Option<&Var>, dir: usize, b: usize, h: usize) -> Result<(Var, Var)> {
        let Some(init) = init else {
            let zeros = || Ok::<_, Error>(self.constant(self.device().zeros(&[b, h])?));
            return Ok((zeros()?, zeros()?));
        };
        let part = |which: usize| {
            self.reshape(
                &self.narrow(&self.narrow(init, 0, which, 1)?, 1, dir, 1)?,
                &[b, h],
            )
        };
        Ok((part(0)?, part(1)?))
    }

    /// One LSTM cell from its gate pre-activations z (B, 4H) and c (B, H): (h, c) after the step.
    fn lstm_cell(&self, z: &Var, c: &Var, h: usize) -> Result<(Var, Var)> {
        let gate = |g: usize| self.narrow(z, 1, g * h, h);
        let i = self.unary(UnaryOp::Sigmoid, &gate(0)?)?;
        let f = self.unary(UnaryOp::Sigmoid, &gate(1)?)?;
        let g = self.unary(UnaryOp::Tanh, &gate(2)?)?;
        let o = self.unary(UnaryOp::Sigmoid, &gate(3)?)?;
        let c_new = self.add(&self.mul(&f, c)?, &self.mul(&i, &g)?)?;
        let h_new = self.mul(&o, &self.unary(UnaryOp::Tanh, &c_new)?)?;
        Ok((h_new, c_new))
    }

    /// Elman RNN, Keras's SimpleRNN: h_t = tanh(x_t . kernel + h_{t-1} . recurrent + bias), from
    /// h = 0. x (B, T, E), kernel (E, H), recurrent (H, H), bias (H). Returns the sequence
    /// (B, T, H) when asked, and the last state (B, H).
    pub fn simple_rnn(
        &self,
        x: &Var,
        kernel: &Var,
        recurrent: &Var,
        bias: &Var,
        return_sequences: bool,
    ) -> Result<(Option<Var>, Var)> {
        let &[b, t, e] = x.shape() else {
            return Err(Error::model(
                "simple_rnn",
                format!("x of shape [B, T, E], got {:?}", x.shape()),
            ));
        };
        let h = recurrent.shape()[0];
        let xproj = self.reshape(
            &self.matmul(&self.reshape(x, &[b * t, e])?, kernel, false, false)?,
            &[b, t, h],
        )?;
        let mut hv = self.constant(self.device().zeros(&[b, h])?);
        let mut seq = vec![];
        for s in 0..t {
            let xt = self.reshape(&self.narrow(&xproj, 1, s, 1)?, &[b, h])?;
            let z = self.add(
                &self.add(&xt, bias)?,
                &self.matmul(&hv, recurrent, false, false)?,
            )?;
            hv = self.unary(UnaryOp::Tanh, &z)?;
            if return_sequences {
                seq.push(self.reshape(&hv, &[b, 1, h])?);
            }
        }
        let y = if return_sequences {
            Some(self.concat(&seq.iter().collect::<Vec<_>>(), 1)?)
        } else {
            None
        };
        Ok((y, hv))
    }
}
