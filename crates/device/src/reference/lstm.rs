//! CPU reference of the fused LSTM recurrence (shaders/lstm.wgsl): the same loops in the same
//! order, one cell at a time. Buffers and layouts as documented in the shader.

use crate::params::LstmParams;
use crate::reference::sigmoid;

pub(crate) fn tanh_c(v: f32) -> f32 {
    v.clamp(-15.0, 15.0).tanh()
}

/// What the recurrences' step helpers read of their kernel params (the LSTM's and the GRU's).
pub(crate) trait Recurrence {
    /// Timesteps T.
    fn steps(&self) -> usize;
    /// Whether padding ids mask steps.
    fn has_mask(&self) -> bool;
}

impl Recurrence for LstmParams {
    fn steps(&self) -> usize {
        self.steps as usize
    }
    fn has_mask(&self) -> bool {
        self.has_mask == 1
    }
}

impl Recurrence for crate::params::GruParams {
    fn steps(&self) -> usize {
        self.steps as usize
    }
    fn has_mask(&self) -> bool {
        self.has_mask == 1
    }
}

/// Actual time of processing step `s` in direction `dir`.
pub(crate) fn time_of(p: &impl Recurrence, s: usize, dir: usize) -> usize {
    if dir == 1 {
        p.steps() - 1 - s
    } else {
        s
    }
}

pub(crate) fn prev_time(t: usize, dir: usize) -> usize {
    if dir == 1 {
        t + 1
    } else {
        t - 1
    }
}

pub(crate) fn is_masked(p: &impl Recurrence, mask: Option<&[u32]>, b: usize, t: usize) -> bool {
    p.has_mask() && mask.is_some_and(|m| m[b * p.steps() + t] == 0)
}

/// One cell's step from its gate pre-activations z (i, f, g, o) and c_prev: the activated gates,
/// the new cell state and the new hidden state.
pub(crate) fn cell_forward(z: [f32; 4], c_prev: f32) -> ([f32; 4], f32, f32) {
    cell_forward_with(z, c_prev, sigmoid, tanh_c)
}

/// [`cell_forward`] with the activations given: the CPU device passes its vectorizable ones.
#[inline(always)]
pub(crate) fn cell_forward_with(
    z: [f32; 4],
    c_prev: f32,
    sigmoid: impl Fn(f32) -> f32,
    tanh: impl Fn(f32) -> f32,
) -> ([f32; 4], f32, f32) {
    let gates = [sigmoid(z[0]), sigmoid(z[1]), tanh(z[2]), sigmoid(z[3])];
    let [ig, fg, gg, og] = gates;
    let c = fg * c_prev + ig * gg;
    (gates, c, og * tanh(c))
}

/// One cell's backward step from its activated gates, cell state c, c_prev, the hidden state's
/// gradient dh and the cell state's carried gradient: the gradients of the four pre-activations
/// and the cell state's gradient dc (the carry into the step before is dc * f).
pub(crate) fn cell_backward(
    gates: [f32; 4],
    c: f32,
    c_prev: f32,
    dh: f32,
    dc_carry: f32,
) -> ([f32; 4], f32) {
    cell_backward_with(gates, c, c_prev, dh, dc_carry, tanh_c)
}

/// [`cell_backward`] with tanh given: the CPU device passes its vectorizable one.
#[inline(always)]
pub(crate) fn cell_backward_with(
    [ig, fg, gg, og]: [f32; 4],
    c: f32,
    c_prev: f32,
    dh: f32,
    dc_carry: f32,
    tanh: impl Fn(f32) -> f32,
) -> ([f32; 4], f32) {
    let tc = tanh(c);
    let dc = dc_carry + dh * og * (1.0 - tc * tc);
    let d = [
        dc * gg * ig * (1.0 - ig),
        dc * c_prev * fg * (1.0 - fg),
        dc * ig * (1.0 - gg * gg),
        dh * tc * og * (1.0 - og),
    ];
    (d, dc)
}

/// Outputs of [`lstm_forward`].
pub struct LstmForwardOut<'a> {
    /// (D, B*T, 5H): activated gates i, f, g, o and the cell state, per step.
    pub cache: &'a mut [f32],
    /// (D, B*T, H): the hidden state each step started from.
    pub hprev: &'a mut [f32],
    /// (B, T, D*H): the output sequence, when wanted.
    pub y: Option<&'a mut [f32]>,
    /// (B, D*H): the last hidden states.
    pub hlast: &'a mut [f32],
    /// (B, D*H): the last cell states.
    pub clast: &'a mut [f32],
}

/// What both passes of the recurrence read besides their own buffers: the recurrent weights, the
/// initial state and the mask.
#[derive(Clone, Copy, Debug)]
pub struct LstmRecurrence<'a> {
    /// (D, H, 4H).
    pub recurrent: &'a [f32],
    /// (2, D, B, H): h0 then c0, when given (zeros otherwise).
    pub init: Option<&'a [f32]>,
    /// (B, T): the steps whose id is 0 are masked (Keras's `mask_zero`), when given.
    pub mask: Option<&'a [u32]>,
}

/// The recurrence over every step and direction (entry point `lstm_forward`).
pub fn lstm_forward(
    p: &LstmParams,
    xproj: &[f32],
    bias: &[f32],
    r: LstmRecurrence<'_>,
    out: LstmForwardOut<'_>,
) {
    let LstmRecurrence {
        recurrent,
        init,
        mask,
    } = r;
    let (b_n, t_n, h_n, d_n) = p.dims();
    let LstmForwardOut {
        cache,
        hprev,
        mut y,
        hlast,
        clast,
    } = out;
    for dir in 0..d_n {
        for b in 0..b_n {
            let mut h_state: Vec<f32> = (0..h_n)
                .map(|j| init.map_or(0.0, |i| i[(dir * b_n + b) * h_n + j]))
                .collect();
            for s in 0..t_n {
                let t = time_of(p, s, dir);
                let row = (dir * b_n + b) * t_n + t;
                let mut next = vec![0.0; h_n];
                for j in 0..h_n {
                    let h_prev = h_state[j];
                    let c_prev = if s == 0 {
                        init.map_or(0.0, |i| i[((d_n + dir) * b_n + b) * h_n + j])
                    } else {
                        let rp = (dir * b_n + b) * t_n + prev_time(t, dir);
                        cache[rp * 5 * h_n + 4 * h_n + j]
                    };
                    let (xr, br) = (row * 4 * h_n, dir * 4 * h_n);
                    let mut z = [0.0f32; 4];
                    for (g, zg) in z.iter_mut().enumerate() {
                        *zg = xproj[xr + g * h_n + j] + bias[br + g * h_n + j];
                    }
                    let mut w = dir * h_n * 4 * h_n + j;
                    for k in 0..h_n {
                        let hv = h_state[k];
                        for (g, zg) in z.iter_mut().enumerate() {
                            *zg += hv * recurrent[w + g * h_n];
                        }
                        w += 4 * h_n;
                    }
                    let ([ig, fg, gg, og], mut c, mut h) = cell_forward(z, c_prev);
                    let mut y_out = h;
                    if is_masked(p, mask, b, t) {
                        c = c_prev;
                        h = h_prev;
                        y_out = if p.zero_masked == 1 { 0.0 } else { h };
                    }
                    let cr = row * 5 * h_n;
                    for (g, v) in [ig, fg, gg, og, c].into_iter().enumerate() {
                        cache[cr + g * h_n + j] = v;
                    }
                    hprev[row * h_n + j] = h_prev;
                    if let Some(y) = y.as_deref_mut() {
                        y[(b * t_n + t) * d_n * h_n + dir * h_n + j] = y_out;
                    }
                    if s + 1 == t_n {
                        hlast[b * d_n * h_n + dir * h_n + j] = h;
                        clast[b * d_n * h_n + dir * h_n + j] = c;
                    }
                    next[j] = h;
                }
                h_state = next;
            }
        }
    }
}

/// Gradients given to [`lstm_backward`]; absent ones are zero.
pub struct LstmBackwardIn<'a> {
    /// (B, T, D*H): the gradient of the output sequence.
    pub dy: Option<&'a [f32]>,
    /// (B, D*H): the gradient of the last hidden states.
    pub dhlast: Option<&'a [f32]>,
    /// (B, D*H): the gradient of the last cell states.
    pub dclast: Option<&'a [f32]>,
}

/// What [`lstm_backward`] writes.
pub struct LstmBackwardOut<'a> {
    /// (D, B*T, 4H): the gradient of the gates' pre-activations.
    pub dz: &'a mut [f32],
    /// (2, D, B, H): the carried dh and dc while the loop runs, d(h0) then d(c0) when it ends.
    pub carry: &'a mut [f32],
}

/// Backpropagation through time (entry point `lstm_backward`): writes dz (D, B*T, 4H) and
/// carry (2, D, B, H), which ends as d(h0) then d(c0). `cache` is the forward pass's.
pub fn lstm_backward(
    p: &LstmParams,
    r: LstmRecurrence<'_>,
    cache: &[f32],
    grads: LstmBackwardIn<'_>,
    out: LstmBackwardOut<'_>,
) {
    let LstmRecurrence {
        recurrent,
        init,
        mask,
    } = r;
    let LstmBackwardOut { dz, carry } = out;
    let (b_n, t_n, h_n, d_n) = p.dims();
    let carry_dc = d_n * b_n * h_n;
    for dir in 0..d_n {
        for b in 0..b_n {
            for j in 0..h_n {
                let ci = (dir * b_n + b) * h_n + j;
                let out = b * d_n * h_n + dir * h_n + j;
                carry[ci] = grads.dhlast.map_or(0.0, |d| d[out]);
                carry[carry_dc + ci] = grads.dclast.map_or(0.0, |d| d[out]);
            }
            // dz of the step processed after the current one (zero before the first).
            let mut dz_next = vec![0.0f32; 4 * h_n];
            for s in 0..t_n {
                let q = t_n - 1 - s;
                let t = time_of(p, q, dir);
                let row = (dir * b_n + b) * t_n + t;
                let mut dz_here = vec![0.0f32; 4 * h_n];
                for j in 0..h_n {
                    let ci = (dir * b_n + b) * h_n + j;
                    let mut dh = carry[ci];
                    let output_zeroed = p.zero_masked == 1 && is_masked(p, mask, b, t);
                    if let (Some(dy), false) = (grads.dy, output_zeroed) {
                        dh += dy[(b * t_n + t) * d_n * h_n + dir * h_n + j];
                    }
                    let wr = (dir * h_n + j) * 4 * h_n;
                    for k in 0..4 * h_n {
                        dh += dz_next[k] * recurrent[wr + k];
                    }
                    let mut d = [0.0f32; 4];
                    if is_masked(p, mask, b, t) {
                        carry[ci] = dh;
                    } else {
                        let cr = row * 5 * h_n;
                        let (ig, fg, gg, og, c) = (
                            cache[cr + j],
                            cache[cr + h_n + j],
                            cache[cr + 2 * h_n + j],
                            cache[cr + 3 * h_n + j],
                            cache[cr + 4 * h_n + j],
                        );
                        let c_prev = if q == 0 {
                            init.map_or(0.0, |i| i[((d_n + dir) * b_n + b) * h_n + j])
                        } else {
                            let rp = (dir * b_n + b) * t_n + prev_time(t, dir);
                            cache[rp * 5 * h_n + 4 * h_n + j]
                        };
                        let dc;
                        (d, dc) =
                            cell_backward([ig, fg, gg, og], c, c_prev, dh, carry[carry_dc + ci]);
                        carry[ci] = 0.0;
                        carry[carry_dc + ci] = dc * fg;
                    }
                    for (g, v) in d.into_iter().enumerate() {
                        dz[row * 4 * h_n + g * h_n + j] = v;
                        dz_here[g * h_n + j] = v;
                    }
                }
                dz_next = dz_here;
            }
            for j in 0..h_n {
                let ci = (dir * b_n + b) * h_n + j;
                let wr = (dir * h_n + j) * 4 * h_n;
                let mut dh = carry[ci];
                for k in 0..4 * h_n {
                    dh += dz_next[k] * recurrent[wr + k];
                }
                carry[ci] = dh;
            }
        }
    }
}
