//! CPU reference of the fused GRU recurrence (shaders/gru.wgsl, Keras's GRU with
//! `reset_after`): the same loops in the same order, one cell at a time. Buffers and layouts as
//! documented in the shader.

use crate::params::GruParams;
use crate::reference::lstm::{is_masked, tanh_c, time_of};
use crate::reference::{sigmoid, LstmRecurrence};

/// One cell's step: from the input part x (z, r, n: xproj plus the input bias), the recurrent
/// part a (h_prev . recurrent plus the recurrent bias) and h_prev, the gates z, r, n and h.
#[inline(always)]
pub(crate) fn gru_cell_forward_with(
    x: [f32; 3],
    a: [f32; 3],
    h_prev: f32,
    sigmoid: impl Fn(f32) -> f32,
    tanh: impl Fn(f32) -> f32,
) -> ([f32; 3], f32) {
    let z = sigmoid(x[0] + a[0]);
    let r = sigmoid(x[1] + a[1]);
    let n = tanh(x[2] + r * a[2]);
    ([z, r, n], z * h_prev + (1.0 - z) * n)
}

/// One cell's backward step from its gates (z, r, n), the recurrent candidate part a_n, h_prev
/// and dh: the input part's gradient (dz', dr', dn'), the recurrent part's (dz', dr', dn' r), and
/// the direct carry into dh_prev (dh z).
#[inline(always)]
pub(crate) fn gru_cell_backward(
    [z, r, n]: [f32; 3],
    a_n: f32,
    h_prev: f32,
    dh: f32,
) -> ([f32; 3], [f32; 3], f32) {
    let dn = dh * (1.0 - z) * (1.0 - n * n);
    let dz = dh * (h_prev - n) * z * (1.0 - z);
    let dr = dn * a_n * r * (1.0 - r);
    ([dz, dr, dn], [dz, dr, dn * r], dh * z)
}

/// Outputs of [`gru_forward`].
pub struct GruForwardOut<'a> {
    /// (D, B*T, 4H): gates z, r, n and the recurrent candidate part a_n, per step.
    pub cache: &'a mut [f32],
    /// (D, B*T, H): the hidden state each step started from.
    pub hprev: &'a mut [f32],
    /// (B, T, D*H): the output sequence, when wanted.
    pub y: Option<&'a mut [f32]>,
    /// (B, D*H): the last hidden states.
    pub hlast: &'a mut [f32],
}

/// The recurrence over every step and direction (entry point `gru_forward`). `bias` is
/// (D, 2, 3H): the input bias, then the recurrent one; `r.init`, when given, is h0 (D, B, H).
pub fn gru_forward(
    p: &GruParams,
    xproj: &[f32],
    bias: &[f32],
    r: LstmRecurrence<'_>,
    out: GruForwardOut<'_>,
) {
    let LstmRecurrence {
        recurrent,
        init,
        mask,
    } = r;
    let (b_n, t_n, h_n, d_n) = p.dims();
    let GruForwardOut {
        cache,
        hprev,
        mut y,
        hlast,
    } = out;
    for dir in 0..d_n {
        let bb = dir * 6 * h_n;
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
                    let mut a = [0.0f32; 3];
                    for (g, ag) in a.iter_mut().enumerate() {
                        *ag = bias[bb + (3 + g) * h_n + j];
                    }
                    let mut w = dir * h_n * 3 * h_n + j;
                    for &hv in &h_state {
                        for (g, ag) in a.iter_mut().enumerate() {
                            *ag += hv * recurrent[w + g * h_n];
                        }
                        w += 3 * h_n;
                    }
                    let xr = row * 3 * h_n;
                    let x: [f32; 3] =
                        std::array::from_fn(|g| xproj[xr + g * h_n + j] + bias[bb + g * h_n + j]);
                    let (gates, mut h) = gru_cell_forward_with(x, a, h_prev, sigmoid, tanh_c);
                    let mut y_out = h;
                    if is_masked(p, mask, b, t) {
                        h = h_prev;
                        y_out = if p.zero_masked == 1 { 0.0 } else { h };
                    }
                    let cr = row * 4 * h_n;
                    for (g, v) in gates.into_iter().chain([a[2]]).enumerate() {
                        cache[cr + g * h_n + j] = v;
                    }
                    hprev[row * h_n + j] = h_prev;
                    if let Some(y) = y.as_deref_mut() {
                        y[(b * t_n + t) * d_n * h_n + dir * h_n + j] = y_out;
                    }
                    if s + 1 == t_n {
                        hlast[b * d_n * h_n + dir * h_n + j] = h;
                    }
                    next[j] = h;
                }
                h_state = next;
            }
        }
    }
}

/// What [`gru_backward`] reads besides the weights: the forward's cache and hprev, and the
/// gradients reaching the outputs (absent ones are zero).
pub struct GruBackwardIn<'a> {
    /// (D, B*T, 4H): the forward's cache.
    pub cache: &'a [f32],
    /// (D, B*T, H): the forward's hprev.
    pub hprev: &'a [f32],
    /// (B, T, D*H): the gradient of the output sequence.
    pub dy: Option<&'a [f32]>,
    /// (B, D*H): the gradient of the last hidden states.
    pub dhlast: Option<&'a [f32]>,
}

/// What [`gru_backward`] writes.
pub struct GruBackwardOut<'a> {
    /// (D, B*T, 3H): the gradient of the input part (xproj plus the input bias).
    pub dx: &'a mut [f32],
    /// (D, B*T, 3H): the gradient of the recurrent part (h . recurrent plus its bias).
    pub da: &'a mut [f32],
    /// (D, B, H): the carried dh while the loop runs, d(h0) when it ends.
    pub carry: &'a mut [f32],
}

/// Backpropagation through time (entry point `gru_backward`).
pub fn gru_backward(
    p: &GruParams,
    r: LstmRecurrence<'_>,
    grads: GruBackwardIn<'_>,
    out: GruBackwardOut<'_>,
) {
    let (recurrent, mask) = (r.recurrent, r.mask);
    let GruBackwardOut { dx, da, carry } = out;
    let (b_n, t_n, h_n, d_n) = p.dims();
    for dir in 0..d_n {
        for b in 0..b_n {
            for j in 0..h_n {
                let out = b * d_n * h_n + dir * h_n + j;
                carry[(dir * b_n + b) * h_n + j] = grads.dhlast.map_or(0.0, |d| d[out]);
            }
            // da of the step processed after the current one (zero before the first).
            let mut da_next = vec![0.0f32; 3 * h_n];
            for s in 0..t_n {
                let t = time_of(p, t_n - 1 - s, dir);
                let row = (dir * b_n + b) * t_n + t;
                let mut da_here = vec![0.0f32; 3 * h_n];
                for j in 0..h_n {
                    let ci = (dir * b_n + b) * h_n + j;
                    let mut dh = carry[ci];
                    let output_zeroed = p.zero_masked == 1 && is_masked(p, mask, b, t);
                    if let (Some(dy), false) = (grads.dy, output_zeroed) {
                        dh += dy[(b * t_n + t) * d_n * h_n + dir * h_n + j];
                    }
                    let wr = (dir * h_n + j) * 3 * h_n;
                    for k in 0..3 * h_n {
                        dh += da_next[k] * recurrent[wr + k];
                    }
                    let (mut gx, mut ga) = ([0.0f32; 3], [0.0f32; 3]);
                    if is_masked(p, mask, b, t) {
                        carry[ci] = dh;
                    } else {
                        let cr = row * 4 * h_n;
                        let c = |g: usize| grads.cache[cr + g * h_n + j];
                        let h_prev = grads.hprev[row * h_n + j];
                        let direct;
                        (gx, ga, direct) = gru_cell_backward([c(0), c(1), c(2)], c(3), h_prev, dh);
                        carry[ci] = direct;
                    }
                    for g in 0..3 {
                        dx[row * 3 * h_n + g * h_n + j] = gx[g];
                        da[row * 3 * h_n + g * h_n + j] = ga[g];
                        da_here[g * h_n + j] = ga[g];
                    }
                }
                da_next = da_here;
            }
            for j in 0..h_n {
                let ci = (dir * b_n + b) * h_n + j;
                let wr = (dir * h_n + j) * 3 * h_n;
                let mut dh = carry[ci];
                for k in 0..3 * h_n {
                    dh += da_next[k] * recurrent[wr + k];
                }
                carry[ci] = dh;
            }
        }
    }
}
