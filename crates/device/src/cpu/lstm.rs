//! The LSTM recurrence on the CPU device, forward and backward: per step, the whole batch's
//! recurrent product is one sgemm (B x H times H x 4H forward, B x 4H times 4H x H backward) and the
//! gates are a loop over (row, unit); the two directions of a bidirectional layer run on two
//! threads. Same buffers and layouts as [`reference::lstm_forward`] and
//! [`reference::lstm_backward`]; only the order of the recurrent sums differs.

use super::gemm;
use crate::params::LstmParams;
use crate::reference::{
    cell_backward, cell_forward, is_masked, prev_time, time_of, LstmBackwardIn, LstmForwardOut,
};

/// What one direction's forward pass reads.
struct DirIn<'a> {
    dir: usize,
    /// (B*T, 4H): this direction's input projection.
    xproj: &'a [f32],
    /// (H, 4H).
    recurrent: &'a [f32],
    /// (4H).
    bias: &'a [f32],
    init: Option<&'a [f32]>,
    ids: Option<&'a [u32]>,
}

/// What one direction's forward pass writes: its blocks of cache and hprev, and its own (B, T, H)
/// sequence and (B, H) last states, interleaved into the layer's outputs afterwards.
struct DirOut<'a> {
    cache: &'a mut [f32],
    hprev: &'a mut [f32],
    y: Option<Vec<f32>>,
    hlast: Vec<f32>,
    clast: Vec<f32>,
}

/// Runs `f` for direction 0 here and direction 1 (if any) on a second thread.
fn per_direction<A: Send, R: Send>(mut args: Vec<A>, f: impl Fn(A) -> R + Sync) -> Vec<R> {
    if args.len() == 1 {
        return vec![f(args.pop().expect("one direction"))];
    }
    let second = args.pop().expect("two directions");
    let first = args.pop().expect("two directions");
    std::thread::scope(|s| {
        let other = s.spawn(|| f(second));
        let here = f(first);
        vec![here, other.join().expect("LSTM direction thread")]
    })
}

/// The recurrence over every step and direction, as [`reference::lstm_forward`].
///
/// [`reference::lstm_forward`]: crate::reference::lstm_forward
pub fn lstm_forward(
    p: &LstmParams,
    xproj: &[f32],
    recurrent: &[f32],
    bias: &[f32],
    init: Option<&[f32]>,
    ids: Option<&[u32]>,
    out: LstmForwardOut<'_>,
) {
    let (b_n, t_n, h_n, d_n) = p.dims();
    let rows = b_n * t_n;
    let LstmForwardOut {
        cache,
        hprev,
        y,
        hlast,
        clast,
    } = out;
    let want_y = y.is_some();
    let args: Vec<_> = cache
        .chunks_mut(rows * 5 * h_n)
        .zip(hprev.chunks_mut(rows * h_n))
        .enumerate()
        .take(d_n)
        .map(|(dir, (cache, hprev))| {
            let input = DirIn {
                dir,
                xproj: &xproj[dir * rows * 4 * h_n..(dir + 1) * rows * 4 * h_n],
                recurrent: &recurrent[dir * h_n * 4 * h_n..(dir + 1) * h_n * 4 * h_n],
                bias: &bias[dir * 4 * h_n..(dir + 1) * 4 * h_n],
                init,
                ids,
            };
            let out = DirOut {
                cache,
                hprev,
                y: want_y.then(|| vec![0.0; rows * h_n]),
                hlast: vec![0.0; b_n * h_n],
                clast: vec![0.0; b_n * h_n],
            };
            (input, out)
        })
        .collect();
    let outs = per_direction(args, |(input, mut out)| {
        forward_dir(p, &input, &mut out);
        (out.y, out.hlast, out.clast)
    });
    // Interleave the directions: (B, T, D*H) and (B, D*H).
    let mut y = y;
    for (dir, (y_dir, hl, cl)) in outs.into_iter().enumerate() {
        if let (Some(y), Some(y_dir)) = (y.as_deref_mut(), y_dir) {
            for (r, src) in y_dir.chunks_exact(h_n).enumerate() {
                y[(r * d_n + dir) * h_n..][..h_n].copy_from_slice(src);
            }
        }
        for b in 0..b_n {
            let at = (b * d_n + dir) * h_n;
            hlast[at..at + h_n].copy_from_slice(&hl[b * h_n..(b + 1) * h_n]);
            clast[at..at + h_n].copy_from_slice(&cl[b * h_n..(b + 1) * h_n]);
        }
    }
}

fn forward_dir(p: &LstmParams, input: &DirIn<'_>, out: &mut DirOut<'_>) {
    let (b_n, t_n, h_n, d_n) = p.dims();
    let dir = input.dir;
    let h4 = 4 * h_n;
    // The running (B, H) hidden and cell states.
    let mut h = vec![0.0f32; b_n * h_n];
    let mut c = vec![0.0f32; b_n * h_n];
    if let Some(init) = input.init {
        h.copy_from_slice(&init[dir * b_n * h_n..(dir + 1) * b_n * h_n]);
        c.copy_from_slice(&init[(d_n + dir) * b_n * h_n..(d_n + dir + 1) * b_n * h_n]);
    }
    let mut z = vec![0.0f32; b_n * h4];
    for s in 0..t_n {
        let t = time_of(p, s, dir);
        gemm(
            (b_n, h_n, h4),
            (&h, h_n, 1),
            (input.recurrent, h4, 1),
            0.0,
            &mut z,
        );
        for b in 0..b_n {
            let row = b * t_n + t;
            let masked = is_masked(p, input.ids, b, t);
            let (zr, xr) = (
                &z[b * h4..(b + 1) * h4],
                &input.xproj[row * h4..(row + 1) * h4],
            );
            let cr = &mut out.cache[row * 5 * h_n..(row + 1) * 5 * h_n];
            out.hprev[row * h_n..(row + 1) * h_n].copy_from_slice(&h[b * h_n..(b + 1) * h_n]);
            for j in 0..h_n {
                let pre = |g: usize| xr[g * h_n + j] + input.bias[g * h_n + j] + zr[g * h_n + j];
                let (h_prev, c_prev) = (h[b * h_n + j], c[b * h_n + j]);
                let ([ig, fg, gg, og], mut c_new, mut h_new) =
                    cell_forward([pre(0), pre(1), pre(2), pre(3)], c_prev);
                let mut y_out = h_new;
                if masked {
                    c_new = c_prev;
                    h_new = h_prev;
                    y_out = if p.zero_masked == 1 { 0.0 } else { h_prev };
                }
                for (g, v) in [ig, fg, gg, og, c_new].into_iter().enumerate() {
                    cr[g * h_n + j] = v;
                }
                if let Some(y) = out.y.as_deref_mut() {
                    y[row * h_n + j] = y_out;
                }
                h[b * h_n + j] = h_new;
                c[b * h_n + j] = c_new;
            }
        }
    }
    out.hlast.copy_from_slice(&h);
    out.clast.copy_from_slice(&c);
}

/// What one direction's backward pass reads besides the layer's inputs.
struct DirGrads<'a> {
    dir: usize,
    /// (B*T, 5H): this direction's block of the forward cache.
    cache: &'a [f32],
    /// (H, 4H).
    recurrent: &'a [f32],
    /// (B*T, 4H): this direction's block of dz, written.
    dz: &'a mut [f32],
}

/// Backpropagation through time, as [`reference::lstm_backward`]: writes dz (D, B*T, 4H) and
/// carry (2, D, B, H), which ends as d(h0) then d(c0).
///
/// [`reference::lstm_backward`]: crate::reference::lstm_backward
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward(
    p: &LstmParams,
    recurrent: &[f32],
    init: Option<&[f32]>,
    ids: Option<&[u32]>,
    cache: &[f32],
    grads: LstmBackwardIn<'_>,
    dz: &mut [f32],
    carry: &mut [f32],
) {
    let (b_n, t_n, h_n, d_n) = p.dims();
    let rows = b_n * t_n;
    let args: Vec<_> = dz
        .chunks_mut(rows * 4 * h_n)
        .enumerate()
        .take(d_n)
        .map(|(dir, dz)| DirGrads {
            dir,
            cache: &cache[dir * rows * 5 * h_n..(dir + 1) * rows * 5 * h_n],
            recurrent: &recurrent[dir * h_n * 4 * h_n..(dir + 1) * h_n * 4 * h_n],
            dz,
        })
        .collect();
    let grads = &grads;
    let carries = per_direction(args, |mut g| backward_dir(p, init, ids, grads, &mut g));
    let carry_dc = d_n * b_n * h_n;
    for (dir, (dh, dc)) in carries.into_iter().enumerate() {
        carry[dir * b_n * h_n..(dir + 1) * b_n * h_n].copy_from_slice(&dh);
        carry[carry_dc + dir * b_n * h_n..carry_dc + (dir + 1) * b_n * h_n].copy_from_slice(&dc);
    }
}

/// One direction's BPTT; returns its (B, H) d(h0) and d(c0).
fn backward_dir(
    p: &LstmParams,
    init: Option<&[f32]>,
    ids: Option<&[u32]>,
    grads: &LstmBackwardIn<'_>,
    g: &mut DirGrads<'_>,
) -> (Vec<f32>, Vec<f32>) {
    let (b_n, t_n, h_n, d_n) = p.dims();
    let (dir, h4) = (g.dir, 4 * h_n);
    let out_at = |b: usize, j: usize| b * d_n * h_n + dir * h_n + j;
    let mut dh_carry = vec![0.0f32; b_n * h_n];
    let mut dc_carry = vec![0.0f32; b_n * h_n];
    for b in 0..b_n {
        for j in 0..h_n {
            dh_carry[b * h_n + j] = grads.dhlast.map_or(0.0, |d| d[out_at(b, j)]);
            dc_carry[b * h_n + j] = grads.dclast.map_or(0.0, |d| d[out_at(b, j)]);
        }
    }
    // dz of the step processed after the current one (zero before the first), and its product
    // with the recurrent kernel's transpose: (B, 4H) x (4H, H).
    let mut dz_next = vec![0.0f32; b_n * h4];
    let mut back = vec![0.0f32; b_n * h_n];
    let back_product = |dz_next: &[f32], back: &mut [f32]| {
        gemm(
            (b_n, h4, h_n),
            (dz_next, h4, 1),
            (g.recurrent, 1, h4),
            0.0,
            back,
        );
    };
    for s in 0..t_n {
        let q = t_n - 1 - s;
        let t = time_of(p, q, dir);
        if s > 0 {
            back_product(&dz_next, &mut back);
        }
        for b in 0..b_n {
            let row = b * t_n + t;
            let masked = is_masked(p, ids, b, t);
            let output_zeroed = p.zero_masked == 1 && masked;
            let cr = &g.cache[row * 5 * h_n..(row + 1) * 5 * h_n];
            for j in 0..h_n {
                let i = b * h_n + j;
                let mut dh = dh_carry[i];
                if let (Some(dy), false) = (grads.dy, output_zeroed) {
                    dh += dy[(b * t_n + t) * d_n * h_n + dir * h_n + j];
                }
                dh += back[i];
                let mut d = [0.0f32; 4];
                if masked {
                    dh_carry[i] = dh;
                } else {
                    let (ig, fg, gg, og, c) = (
                        cr[j],
                        cr[h_n + j],
                        cr[2 * h_n + j],
                        cr[3 * h_n + j],
                        cr[4 * h_n + j],
                    );
                    let c_prev = if q == 0 {
                        init.map_or(0.0, |i| i[((d_n + dir) * b_n + b) * h_n + j])
                    } else {
                        let rp = b * t_n + prev_time(t, dir);
                        g.cache[rp * 5 * h_n + 4 * h_n + j]
                    };
                    let dc;
                    (d, dc) = cell_backward([ig, fg, gg, og], c, c_prev, dh, dc_carry[i]);
                    dh_carry[i] = 0.0;
                    dc_carry[i] = dc * fg;
                }
                for (k, v) in d.into_iter().enumerate() {
                    g.dz[row * h4 + k * h_n + j] = v;
                    dz_next[b * h4 + k * h_n + j] = v;
                }
            }
        }
    }
    back_product(&dz_next, &mut back);
    for (c, v) in dh_carry.iter_mut().zip(&back) {
        *c += v;
    }
    (dh_carry, dc_carry)
}
