//! Recurrent ops on the tape: the LSTM, fused (kiln-device's persistent kernels: two dispatches
//! forward, whatever T is) or unfused (matmul and elementwise ops per timestep, the way a
//! general-purpose framework runs it), and the simple RNN.
//!
//! Both LSTM paths take the same weights, Keras's layout stacked over directions D (1, or 2 for a
//! bidirectional layer; 0 = forward, 1 = backward): kernel (D, E, 4H), recurrent (D, H, 4H),
//! bias (D, 4H), gates i, f, g, o. The unfused path is the reference the fused one is tested
//! against, and the fallback for layers wider than the fused kernels take.

use kiln_device::{LstmInputs, LstmOutputGrads, LstmPath, Tensor, UnaryOp};

use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// One LSTM layer's inputs on the tape: the input sequence, the weights (Keras's layout stacked
/// over directions D), the initial state and the mask (kiln-device's [`LstmInputs`] over
/// variables).
pub type LstmVars<'a> = LstmInputs<'a, Var>;

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
                "lstm mask",
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
        let &[b, t, e] = x.shape() else {
            return Err(Error::model(
                "lstm",
                format!("x of shape [B, T, E], got {:?}", x.shape()),
            ));
        };
        let &[dirs, _, h4] = kernel.shape() else {
            return Err(Error::model(
                "lstm",
                format!("kernel [D, E, 4H], got {:?}", kernel.shape()),
            ));
        };
        let h = h4 / 4;
        let masks = mask.map(|m| step_masks(self, m, h)).transpose()?;
        let x2 = self.reshape(x, &[b * t, e])?;
        let (mut ys, mut hs, mut cs) = (vec![], vec![], vec![]);
        for dir in 0..dirs {
            let k = self.reshape(&self.narrow(kernel, 0, dir, 1)?, &[e, h4])?;
            let u = self.reshape(&self.narrow(recurrent, 0, dir, 1)?, &[h, h4])?;
            let bias_d = self.reshape(&self.narrow(bias, 0, dir, 1)?, &[h4])?;
            let xproj = self.reshape(&self.matmul(&x2, &k, false, false)?, &[b, t, h4])?;
            let (mut hv, mut cv) = self.lstm_start(init, dir, b, h)?;
            let mut seq: Vec<Option<Var>> = vec![None; t];
            for s in 0..t {
                let ts = if dir == 1 { t - 1 - s } else { s };
                let xt = self.reshape(&self.narrow(&xproj, 1, ts, 1)?, &[b, h4])?;
                let z = self.add(
                    &self.add(&xt, &bias_d)?,
                    &self.matmul(&hv, &u, false, false)?,
                )?;
                let (h_new, c_new) = self.lstm_cell(&z, &cv, h)?;
                (hv, cv) = match &masks {
                    Some(m) => {
                        // state = prev + keep * (new - prev)
                        let keep = self.constant(m[ts].clone());
                        (
                            self.add(&hv, &self.mul(&keep, &self.sub(&h_new, &hv)?)?)?,
                            self.add(&cv, &self.mul(&keep, &self.sub(&c_new, &cv)?)?)?,
                        )
                    }
                    None => (h_new, c_new),
                };
                if return_sequences {
                    // Keras's Bidirectional outputs zeros at masked steps; its LSTM repeats h.
                    let out = match &masks {
                        Some(m) if dirs == 2 => self.mul(&hv, &self.constant(m[ts].clone()))?,
                        _ => hv.clone(),
                    };
                    seq[ts] = Some(self.reshape(&out, &[b, 1, h])?);
                }
            }
            if return_sequences {
                let parts: Vec<Var> = seq.into_iter().map(|v| v.expect("every step")).collect();
                let refs: Vec<&Var> = parts.iter().collect();
                ys.push(self.concat(&refs, 1)?);
            }
            hs.push(hv);
            cs.push(cv);
        }
        let join = |vs: &[Var], axis: usize| -> Result<Var> {
            if vs.len() == 1 {
                Ok(vs[0].clone())
            } else {
                self.concat(&vs.iter().collect::<Vec<_>>(), axis)
            }
        };
        Ok(LstmOutputs {
            y: if return_sequences {
                Some(join(&ys, 2)?)
            } else {
                None
            },
            h: join(&hs, 1)?,
            c: join(&cs, 1)?,
        })
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
