//! The CPU reference of every kernel: plain loops, the same arguments in the same order as the
//! launchers in `ops`. This module is the spec, the test oracle, and the CPU device's engine.
//! Each function mirrors one WGSL entry point, including its f32 arithmetic, so that results agree
//! to rounding (and bit for bit for the random generator).
//!
//! Activations overwrite their outputs (`=`); parameter gradients accumulate (`+=`), as noted.

// Index loops on purpose: they read like the kernels they specify.
#![allow(clippy::needless_range_loop)]

pub(crate) mod attention;
mod conv;
mod gru;
mod lstm;
pub use attention::*;
pub use conv::*;
pub use gru::*;
pub use lstm::*;

use crate::params::{
    Activation, BinaryOp, BroadcastParams, DropoutParams, ElementwiseParams, EmbeddingParams,
    LossParams, MatmulParams, MatmulSpec, OptimParams, ReduceOp, ReduceParams, SliceParams,
    UnaryOp, BCE_EPS,
};

/// 1 / (1 + e^-x), without overflow for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn tanh(x: f32) -> f32 {
    x.clamp(-15.0, 15.0).tanh()
}

/// An activation's value at x.
pub fn activation(act: Activation, x: f32) -> f32 {
    activation_with(act, x, sigmoid, tanh)
}

/// [`activation`] with sigmoid and tanh given: the CPU device passes its vectorizable ones.
#[inline(always)]
pub(crate) fn activation_with(
    act: Activation,
    x: f32,
    sigmoid: impl Fn(f32) -> f32,
    tanh: impl Fn(f32) -> f32,
) -> f32 {
    match act {
        Activation::Identity => x,
        Activation::Relu => x.max(0.0),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => tanh(x),
        Activation::Step => step(x),
    }
}

#[inline]
fn step(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// c (B, M, N) = act(op(a) · op(b) + bias). a: (B, M, K) or (B, K, M) when trans_a; b: (B, K, N) or
/// (B, N, K) when trans_b; a batch stride of 0 broadcasts. Accumulates in f32 in k order.
pub fn matmul(
    p: &MatmulParams,
    spec: &MatmulSpec,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let chunk = p.chunk.max(1) as usize;
    for slice in 0..p.slices() as usize {
        let entries = slice * chunk..(slice * chunk + chunk).min(p.batch as usize);
        for row in 0..m {
            for col in 0..n {
                let mut acc = 0.0f32;
                for bi in entries.clone() {
                    let a0 = bi * p.a_batch_stride as usize;
                    let b0 = bi * p.b_batch_stride as usize;
                    for kk in 0..k {
                        let av = if spec.trans_a {
                            a[a0 + kk * m + row]
                        } else {
                            a[a0 + row * k + kk]
                        };
                        let bv = if spec.trans_b {
                            b[b0 + col * k + kk]
                        } else {
                            b[b0 + kk * n + col]
                        };
                        acc += av * bv;
                    }
                }
                if let Some(bias) = bias {
                    acc += bias[col];
                }
                c[(slice * m + row) * n + col] = activation(spec.activation, acc);
            }
        }
    }
}

/// `out[i] = a[i] op b[i % b_len]`
pub fn binary(p: &ElementwiseParams, op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] = op.apply(a[i], b[i % p.b_len as usize]);
    }
}

/// `out[i] = a[ia] op b[ib]` under NumPy broadcasting ([`BroadcastParams::index`]); with no
/// op, `out[i] = b[ib]` (a broadcasting copy; `a` unused).
pub fn binary_broadcast(
    p: &BroadcastParams,
    op: Option<BinaryOp>,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    for (i, o) in out[..p.n as usize].iter_mut().enumerate() {
        let (ia, ib) = p.index(i);
        *o = match op {
            Some(op) => op.apply(a[ia], b[ib]),
            None => b[ib],
        };
    }
}

/// A unary op's value at x.
#[inline]
pub fn unary_value(op: UnaryOp, x: f32) -> f32 {
    unary_value_with(op, x, sigmoid, tanh)
}

/// [`unary_value`] with sigmoid and tanh given, as [`activation_with`].
#[inline(always)]
pub(crate) fn unary_value_with(
    op: UnaryOp,
    x: f32,
    sigmoid: impl Fn(f32) -> f32,
    tanh: impl Fn(f32) -> f32,
) -> f32 {
    match op {
        UnaryOp::Identity => x,
        UnaryOp::Step => step(x),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Tanh => tanh(x),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Scale(s) => x * s,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Affine { scale, shift } => x * scale + shift,
        UnaryOp::Pow(p) => x.powf(p),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Clamp { min, max } => x.max(min).min(max),
        UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
        UnaryOp::GeluTanh => 0.5 * x * (1.0 + tanh(gelu_inner(x))),
    }
}

/// erf(x) within 1.2e-7: Numerical Recipes' erfc (a Chebyshev fit), as the kernels compute it
/// (WGSL has no erf, nor Rust's std). The coefficients are the published ones, digit for digit.
#[allow(clippy::excessive_precision)]
pub fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = [
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
    ]
    .iter()
    .fold(0.17087277f32, |acc, &c| c + t * acc);
    let r = t * (-z * z - 1.26551223 + t * poly).exp();
    if x >= 0.0 {
        1.0 - r
    } else {
        r - 1.0
    }
}

/// GELU's tanh approximation's inner term, sqrt(2 / pi) (x + 0.044715 x^3).
fn gelu_inner(x: f32) -> f32 {
    0.797_884_6 * (x + 0.044715 * x * x * x)
}

/// f'(x)
#[inline]
pub fn unary_derivative(op: UnaryOp, x: f32) -> f32 {
    unary_derivative_with(op, x, sigmoid, tanh)
}

/// [`unary_derivative`] with sigmoid and tanh given, as [`activation_with`].
#[inline(always)]
pub(crate) fn unary_derivative_with(
    op: UnaryOp,
    x: f32,
    sigmoid: impl Fn(f32) -> f32,
    tanh: impl Fn(f32) -> f32,
) -> f32 {
    match op {
        UnaryOp::Identity => 1.0,
        UnaryOp::Step => 0.0,
        UnaryOp::Sigmoid => {
            let s = sigmoid(x);
            s * (1.0 - s)
        }
        UnaryOp::Tanh => {
            let t = tanh(x);
            1.0 - t * t
        }
        UnaryOp::Relu => step(x),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => 1.0 / x,
        UnaryOp::Scale(s) => s,
        UnaryOp::Abs => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryOp::Affine { scale, .. } => scale,
        UnaryOp::Pow(p) => p * x.powf(p - 1.0),
        UnaryOp::Sqrt => 0.5 / x.sqrt(),
        UnaryOp::Rsqrt => -0.5 / (x.sqrt() * x),
        UnaryOp::Clamp { min, max } => ((min..=max).contains(&x) as u32) as f32,
        UnaryOp::Gelu => {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            cdf + x * 0.398_942_3 * (-0.5 * x * x).exp()
        }
        UnaryOp::GeluTanh => {
            let t = tanh(gelu_inner(x));
            let inner_grad = 0.797_884_6 * (1.0 + 3.0 * 0.044715 * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner_grad
        }
    }
}

/// `out[i] = f(x[i])`
pub fn unary(p: &ElementwiseParams, op: UnaryOp, x: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] = unary_value(op, x[i]);
    }
}

/// `dx[i] = dy[i] * f'(x[i])`, with x the forward input.
pub fn unary_backward(p: &ElementwiseParams, op: UnaryOp, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for i in 0..p.n as usize {
        dx[i] = dy[i] * unary_derivative(op, x[i]);
    }
}

/// Reduce (outer, len, inner) over len. The GPU sums in a different order, so compare with a
/// tolerance that grows with len.
pub fn reduce(p: &ReduceParams, op: ReduceOp, x: &[f32], out: &mut [f32]) {
    let (len, inner) = (p.len as usize, p.inner as usize);
    for o in 0..p.out_len() {
        let base = (o / inner) * len * inner + o % inner;
        let vals = (0..len).map(|l| x[base + l * inner]);
        out[o] = match op {
            ReduceOp::Sum => vals.sum(),
            ReduceOp::Mean => vals.sum::<f32>() / len as f32,
            ReduceOp::Max => vals.fold(f32::MIN, f32::max),
        };
    }
}

/// Index of the first maximum along len.
pub fn argmax(p: &ReduceParams, x: &[f32], out: &mut [u32]) {
    let (len, inner) = (p.len as usize, p.inner as usize);
    for o in 0..p.out_len() {
        let base = (o / inner) * len * inner + o % inner;
        let mut best = 0;
        for l in 1..len {
            if x[base + l * inner] > x[base + best * inner] {
                best = l;
            }
        }
        out[o] = best as u32;
    }
}

/// Softmax (or log-softmax) of each row of (outer, len), with the row maximum subtracted first.
pub fn softmax(p: &ReduceParams, log: bool, x: &[f32], out: &mut [f32]) {
    let len = p.len as usize;
    for row in 0..p.outer as usize {
        let xs = &x[row * len..(row + 1) * len];
        let max = xs.iter().copied().fold(f32::MIN, f32::max);
        let total: f32 = xs.iter().map(|v| (v - max).exp()).sum();
        for (o, v) in out[row * len..(row + 1) * len].iter_mut().zip(xs) {
            *o = if log {
                (v - max) - total.ln()
            } else {
                (v - max).exp() / total
            };
        }
    }
}

/// out (N, E) = `table[ids]` (V, E); ids at or past V give zeros (the host refuses them first).
pub fn embedding_forward(p: &EmbeddingParams, table: &[f32], ids: &[u32], out: &mut [f32]) {
    let dim = p.dim as usize;
    for (i, &id) in ids.iter().enumerate().take(p.n as usize) {
        for e in 0..dim {
            out[i * dim + e] = if id < p.vocab {
                table[id as usize * dim + e]
            } else {
                0.0
            };
        }
    }
}

/// out (N, V): 1 at column `ids[i]` of row i, 0 elsewhere (a row of zeros for an id >= V); dim = V.
pub fn one_hot(p: &EmbeddingParams, ids: &[u32], out: &mut [f32]) {
    let dim = p.dim as usize;
    for (i, &id) in ids.iter().enumerate().take(p.n as usize) {
        for e in 0..dim {
            out[i * dim + e] = if id as usize == e { 1.0 } else { 0.0 };
        }
    }
}

/// dtable (V, E) += scatter of dout (N, E) by ids, summed per row in index order (deterministic).
pub fn embedding_backward(p: &EmbeddingParams, dout: &[f32], ids: &[u32], dtable: &mut [f32]) {
    let dim = p.dim as usize;
    let n = p.n as usize;
    for i in 0..n {
        let id = ids[i];
        if id >= p.vocab || ids[..i].contains(&id) {
            continue;
        }
        for e in 0..dim {
            let mut acc = 0.0f32;
            for j in i..n {
                if ids[j] == id {
                    acc += dout[j * dim + e];
                }
            }
            dtable[id as usize * dim + e] += acc;
        }
    }
}

/// Threefry-2x32 with 20 rounds (Random123), the generator behind dropout.
pub fn threefry2x32(counter: [u32; 2], key: [u32; 2]) -> [u32; 2] {
    const ROT: [u32; 8] = [13, 15, 26, 6, 17, 29, 16, 24];
    let ks = [key[0], key[1], 0x1BD1_1BDA ^ key[0] ^ key[1]];
    let mut x0 = counter[0].wrapping_add(ks[0]);
    let mut x1 = counter[1].wrapping_add(ks[1]);
    for r in 0..20u32 {
        x0 = x0.wrapping_add(x1);
        x1 = x1.rotate_left(ROT[(r % 8) as usize]);
        x1 ^= x0;
        if r % 4 == 3 {
            let s = r / 4 + 1;
            x0 = x0.wrapping_add(ks[(s % 3) as usize]);
            x1 = x1.wrapping_add(ks[((s + 1) % 3) as usize]).wrapping_add(s);
        }
    }
    [x0, x1]
}

/// out = x * mask, `mask[i]` = scale where the element is kept, 0 where dropped.
pub fn dropout_forward(p: &DropoutParams, x: &[f32], out: &mut [f32], mask: &mut [f32]) {
    for i in 0..p.n as usize {
        let bits = threefry2x32([p.offset.wrapping_add(i as u32), 0], [p.seed_lo, p.seed_hi])[0];
        let u = (bits >> 8) as f32 * (1.0 / 16_777_216.0);
        mask[i] = if u < p.keep_prob { p.scale } else { 0.0 };
        out[i] = x[i] * mask[i];
    }
}

/// In place: m, v, w updated from g (see shaders/optim.wgsl for the formulas).
pub fn adam_update(p: &OptimParams, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for i in 0..p.n as usize {
        let gi = g[i];
        let mi = m[i] + (gi - m[i]) * (1.0 - p.beta1);
        let vi = v[i] + (gi * gi - v[i]) * (1.0 - p.beta2);
        m[i] = mi;
        v[i] = vi;
        w[i] = decayed(p, w[i]) - p.alpha * mi / (vi.sqrt() + p.eps);
    }
}

/// w after decoupled weight decay: w - w * weight_decay * lr (Keras's order), or w.
fn decayed(p: &OptimParams, w: f32) -> f32 {
    if p.weight_decay == 0.0 {
        w
    } else {
        w - w * p.weight_decay * p.lr
    }
}

/// In place: mean square v = rho * v + (1 - rho) * g^2, increment lr * g / sqrt(v + eps);
/// w -= increment, or with momentum m = momentum * m + increment, w -= m (Keras's RMSprop).
pub fn rmsprop_update(p: &OptimParams, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for i in 0..p.n as usize {
        let gi = g[i];
        let vi = p.beta2 * v[i] + p.one_minus_rho * (gi * gi);
        v[i] = vi;
        let inc = p.alpha * gi / (vi + p.eps).sqrt();
        let wi = decayed(p, w[i]);
        if p.beta1 > 0.0 {
            m[i] = p.beta1 * m[i] + inc;
            w[i] = wi - m[i];
        } else {
            w[i] = wi - inc;
        }
    }
}

/// In place: each gradient limited to [-alpha, alpha] (Keras's clipvalue).
pub fn clip_value(p: &OptimParams, g: &mut [f32]) {
    for x in &mut g[..p.n as usize] {
        *x = x.clamp(-p.alpha, p.alpha);
    }
}

/// The global-norm clipping factor alpha * min(1 / norm, 1 / alpha) of the gradients (Keras's
/// global_clipnorm; NaN when the norm is not finite), the norm summed in f64.
pub fn clip_scale(p: &OptimParams, g: &[f32]) -> f32 {
    let norm = g[..p.n as usize]
        .iter()
        .map(|&x| x as f64 * x as f64)
        .sum::<f64>()
        .sqrt() as f32;
    if !norm.is_finite() {
        return f32::NAN;
    }
    let inv = if norm <= p.alpha {
        1.0 / p.alpha
    } else {
        1.0 / norm
    };
    p.alpha * inv
}

/// In place: velocity u = momentum * u - lr * g; w += u (Nesterov: w += momentum * u - lr * g).
pub fn sgd_update(p: &OptimParams, w: &mut [f32], g: &[f32], u: &mut [f32]) {
    for i in 0..p.n as usize {
        let ui = p.beta1 * u[i] - p.alpha * g[i];
        u[i] = ui;
        w[i] += if p.nesterov != 0 {
            p.beta1 * ui - p.alpha * g[i]
        } else {
            ui
        };
    }
}

/// (p - y)^2 per element.
pub fn mse_forward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        let e = pred[i] - target[i];
        out[i] = e * e;
    }
}

/// 2 (p - y) * scale.
pub fn mse_backward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] = 2.0 * (pred[i] - target[i]) * p.scale;
    }
}

/// |p - y| per element.
pub fn mae_forward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] = (pred[i] - target[i]).abs();
    }
}

/// sign(p - y) * scale, 0 where p = y.
pub fn mae_backward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        let e = pred[i] - target[i];
        let s = if e > 0.0 {
            1.0
        } else if e < 0.0 {
            -1.0
        } else {
            0.0
        };
        out[i] = s * p.scale;
    }
}

/// e^2 / 2 where |e| <= delta, delta * (|e| - delta / 2) beyond (e = p - y), as Keras's Huber.
pub fn huber_forward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        let a = (pred[i] - target[i]).abs();
        out[i] = if a <= p.delta {
            0.5 * a * a
        } else {
            p.delta * (a - 0.5 * p.delta)
        };
    }
}

/// e clamped to [-delta, delta], times scale.
pub fn huber_backward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] = (pred[i] - target[i]).clamp(-p.delta, p.delta) * p.scale;
    }
}

/// Binary cross-entropy of probabilities, per element, clamped to [BCE_EPS, 1 - BCE_EPS] as Keras does.
pub fn bce_forward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        let q = pred[i].clamp(BCE_EPS, 1.0 - BCE_EPS);
        let y = target[i];
        out[i] = -(y * (q + BCE_EPS).ln() + (1.0 - y) * (1.0 - q + BCE_EPS).ln());
    }
}

/// Its gradient with respect to the probabilities, times `p.scale`.
pub fn bce_backward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        let (x, y) = (pred[i], target[i]);
        let d = if (BCE_EPS..=1.0 - BCE_EPS).contains(&x) {
            -(y / (x + BCE_EPS) - (1.0 - y) / (1.0 - x + BCE_EPS))
        } else {
            0.0
        };
        out[i] = d * p.scale;
    }
}

/// Binary cross-entropy of logits, per element, in the overflow-free form.
pub fn bce_logits_forward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        let x = pred[i];
        out[i] = x.max(0.0) - x * target[i] + (1.0 + (-x.abs()).exp()).ln();
    }
}

/// Its gradient with respect to the logits (sigmoid(x) - y), times `p.scale`.
pub fn bce_logits_backward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] = (sigmoid(pred[i]) - target[i]) * p.scale;
    }
}

fn unclamped(q: f32) -> bool {
    (BCE_EPS..=1.0 - BCE_EPS).contains(&q)
}

/// Per row: q = p / sum(p) clamped to [EPS, 1 - EPS]; -sum_j y_j log(q_j) (Keras on probabilities).
pub fn cce_forward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    let c = p.classes as usize;
    for row in 0..p.n as usize {
        let r = row * c..(row + 1) * c;
        let total: f32 = pred[r.clone()].iter().sum();
        let mut l = 0.0f32;
        for j in r {
            l -= target[j] * (pred[j] / total).clamp(BCE_EPS, 1.0 - BCE_EPS).ln();
        }
        out[row] = l;
    }
}

/// Per row: (sum of y over unclamped j) / sum(p) - y_k / p_k where q_k is unclamped, scaled.
pub fn cce_backward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    let c = p.classes as usize;
    for row in 0..p.n as usize {
        let r = row * c..(row + 1) * c;
        let total: f32 = pred[r.clone()].iter().sum();
        let mut y_in = 0.0f32;
        for j in r.clone() {
            if unclamped(pred[j] / total) {
                y_in += target[j];
            }
        }
        for k in r {
            let mut g = y_in / total;
            if unclamped(pred[k] / total) {
                g -= target[k] / pred[k];
            }
            out[k] = g * p.scale;
        }
    }
}

fn row_stats(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::MIN, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    (max, sum.ln())
}

/// Per row: sum_j y_j * (logsumexp(x) - x_j).
pub fn cce_logits_forward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    let c = p.classes as usize;
    for row in 0..p.n as usize {
        let xs = &pred[row * c..(row + 1) * c];
        let ys = &target[row * c..(row + 1) * c];
        let (max, log_sum) = row_stats(xs);
        out[row] = xs
            .iter()
            .zip(ys)
            .map(|(x, y)| y * (log_sum - (x - max)))
            .sum();
    }
}

/// Per row: softmax(x) * sum(y) - y, scaled.
pub fn cce_logits_backward(p: &LossParams, pred: &[f32], target: &[f32], out: &mut [f32]) {
    let c = p.classes as usize;
    for row in 0..p.n as usize {
        let xs = &pred[row * c..(row + 1) * c];
        let ys = &target[row * c..(row + 1) * c];
        let (max, log_sum) = row_stats(xs);
        let total: f32 = ys.iter().sum();
        for j in 0..c {
            let s = (xs[j] - max - log_sum).exp();
            out[row * c + j] = (s * total - ys[j]) * p.scale;
        }
    }
}

/// `out[i] += scalar * x[i]` (in place).
pub fn axpy(p: &ElementwiseParams, x: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] += p.scalar * x[i];
    }
}

/// Rows of (outer, len): dx = y * (dy - sum(dy * y)) for y = softmax(x); with `log`, y is
/// log_softmax(x) and dx = dy - exp(y) * sum(dy).
pub fn softmax_backward(p: &ReduceParams, log: bool, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let len = p.len as usize;
    for row in 0..p.outer as usize {
        let r = row * len..(row + 1) * len;
        let total: f32 = if log {
            dy[r.clone()].iter().sum()
        } else {
            dy[r.clone()]
                .iter()
                .zip(&y[r.clone()])
                .map(|(d, y)| d * y)
                .sum()
        };
        for i in r {
            dx[i] = if log {
                dy[i] - y[i].exp() * total
            } else {
                y[i] * (dy[i] - total)
            };
        }
    }
}

/// 1 where (pred > threshold) == (label > 0.5); the threshold travels in `scale`.
pub fn binary_correct(p: &LossParams, pred: &[f32], labels: &[f32], out: &mut [f32]) {
    for i in 0..p.n as usize {
        out[i] = ((pred[i] > p.scale) == (labels[i] > 0.5)) as u32 as f32;
    }
}

fn first_argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for j in 1..row.len() {
        if row[j] > row[best] {
            best = j;
        }
    }
    best
}

/// 1 where fewer than k (`p.scale`) predictions of the row exceed the prediction at the label
/// row's argmax (shaders/loss.wgsl `top_k_correct`).
pub fn top_k_correct(p: &LossParams, pred: &[f32], labels: &[f32], out: &mut [f32]) {
    let c = p.classes as usize;
    for row in 0..p.n as usize {
        let r = row * c..(row + 1) * c;
        let target = pred[r.start + first_argmax(&labels[r.clone()])];
        let above = pred[r].iter().filter(|&&v| v > target).count();
        out[row] = ((above as f32) < p.scale) as u32 as f32;
    }
}

/// True positives, predicted positives and actual positives over all `p.n` elements, at the
/// threshold `p.scale` (shaders/loss.wgsl `binary_counts`).
pub fn binary_counts(p: &LossParams, pred: &[f32], labels: &[f32], out: &mut [f32]) {
    let mut counts = [0u32; 3];
    for (&v, &l) in pred.iter().zip(labels).take(p.n as usize) {
        let (predicted, actual) = (v > p.scale, l > 0.5);
        counts[0] += (predicted && actual) as u32;
        counts[1] += predicted as u32;
        counts[2] += actual as u32;
    }
    for (o, c) in out.iter_mut().zip(counts) {
        *o = c as f32;
    }
}

/// The scores' histogram in `p.classes` bins over [0, 1], negatives then positives
/// (shaders/loss.wgsl `score_histogram`).
pub fn score_histogram(p: &LossParams, pred: &[f32], labels: &[f32], out: &mut [f32]) {
    let bins = p.classes as usize;
    out[..2 * bins].fill(0.0);
    for (&v, &l) in pred.iter().zip(labels).take(p.n as usize) {
        let b = ((v.clamp(0.0, 1.0) * bins as f32) as usize).min(bins - 1);
        out[if l > 0.5 { bins + b } else { b }] += 1.0;
    }
}

/// 1 where argmax(pred row) == argmax(label row).
pub fn categorical_correct(p: &LossParams, pred: &[f32], labels: &[f32], out: &mut [f32]) {
    let c = p.classes as usize;
    for row in 0..p.n as usize {
        let r = row * c..(row + 1) * c;
        out[row] = (first_argmax(&pred[r.clone()]) == first_argmax(&labels[r])) as u32 as f32;
    }
}

/// dst[o, dst_start + a, i] (= or +=) src[o, src_start + a, i] (shaders/layout.wgsl).
pub fn slice_copy(p: &SliceParams, accumulate: bool, src: &[f32], dst: &mut [f32]) {
    let (count, inner) = (p.count as usize, p.inner as usize);
    for o in 0..p.outer as usize {
        for a in 0..count {
            for i in 0..inner {
                let s = (o * p.src_axis as usize + p.src_start as usize + a) * inner + i;
                let d = (o * p.dst_axis as usize + p.dst_start as usize + a) * inner + i;
                if accumulate {
                    dst[d] += src[s];
                } else {
                    dst[d] = src[s];
                }
            }
        }
    }
}
