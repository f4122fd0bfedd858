//! The LSTM recurrence on the CPU device, forward and backward: per step, the whole batch's
//! recurrent product is one sgemm (B x H times H x 4H forward, B x 4H times 4H x H backward) and the
//! gates are a vectorized loop over each row's units, with [`math`]'s sigmoid and tanh in place of
//! libm's; the two directions of a bidirectional layer run on two threads. Same buffers, layouts
//! and cell formulas as [`reference::lstm_forward`] and [`reference::lstm_backward`]; the order of
//! the recurrent sums and the activations' last bits differ (within the tests' tolerance).

use super::simd::simd_fn;
use super::{gemm, math};
use crate::params::LstmParams;
use crate::reference::{
    cell_backward_with, cell_forward_with, is_masked, prev_time, time_of, LstmBackwardIn,
    LstmBackwardOut, LstmForwardOut, LstmRecurrence,
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
    mask: Option<&'a [u32]>,
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
pub(super) fn per_direction<A: Send, R: Send>(
    mut args: Vec<A>,
    f: impl Fn(A) -> R + Sync,
) -> Vec<R> {
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
                mask,
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
            let (hb, cb) = (
                &mut h[b * h_n..(b + 1) * h_n],
                &mut c[b * h_n..(b + 1) * h_n],
            );
            out.hprev[row * h_n..(row + 1) * h_n].copy_from_slice(hb);
            let masked = is_masked(p, input.mask, b, t);
            cell_row(
                h_n,
                masked,
                [
                    &input.xproj[row * h4..(row + 1) * h4],
                    input.bias,
                    &z[b * h4..(b + 1) * h4],
                ],
                &mut out.cache[row * 5 * h_n..(row + 1) * 5 * h_n],
                (hb, cb),
            );
            if let Some(y) = out.y.as_deref_mut() {
                let y = &mut y[row * h_n..(row + 1) * h_n];
                if masked && p.zero_masked == 1 {
                    y.fill(0.0);
                } else {
                    // The new hidden state, or h_prev where masked (kept in hb).
                    y.copy_from_slice(hb);
                }
            }
        }
    }
    out.hlast.copy_from_slice(&h);
    out.clast.copy_from_slice(&c);
}

/// One row's cells for one step: the pre-activations are x + bias + z (each (4H), gate-major),
/// the activated gates and the new cell state go to the row's (5H) cache, and h and c (each (H))
/// advance in place, or, where the step is masked, keep their values (the cache then holds
/// c_prev). Slices of exact length and no calls, so the loop vectorizes, at the CPU's widest
/// vector width ([`simd_fn`]).
#[inline(always)]
fn cell_row_lanes<const MASKED: bool>(
    h_n: usize,
    [x, bias, z]: [&[f32]; 3],
    cache: &mut [f32],
    (h, c): (&mut [f32], &mut [f32]),
) {
    fn quarters(v: &[f32], h_n: usize) -> [&[f32]; 4] {
        [0, 1, 2, 3].map(|g| &v[g * h_n..(g + 1) * h_n])
    }
    let (x, bias, z) = (quarters(x, h_n), quarters(bias, h_n), quarters(z, h_n));
    let (gates, rest) = cache[..5 * h_n].split_at_mut(4 * h_n);
    let (gi, gates) = gates.split_at_mut(h_n);
    let (gf, gates) = gates.split_at_mut(h_n);
    let (gg, go) = gates.split_at_mut(h_n);
    let (cc, h, c) = (&mut rest[..h_n], &mut h[..h_n], &mut c[..h_n]);
    for j0 in (0..h_n).step_by(LANES) {
        let n = LANES.min(h_n - j0);
        if n == LANES {
            let at = |v: &[f32]| -> [f32; LANES] {
                v[j0..j0 + LANES]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("a full chunk"))
            };
            let pre = |g: usize| -> [f32; LANES] {
                let (xg, bg, zg) = (at(x[g]), at(bias[g]), at(z[g]));
                std::array::from_fn(|l| xg[l] + bg[l] + zg[l])
            };
            let chunk = |v| chunk_mut(v, j0);
            let c_prev = at(c);
            cell_chunk::<MASKED>(
                [pre(0), pre(1), pre(2), pre(3)],
                &c_prev,
                [chunk(gi), chunk(gf), chunk(gg), chunk(go)],
                [chunk(cc), chunk(c), chunk(h)],
            );
        } else {
            // The last chunk of an H that is not a multiple of LANES: padded copies.
            let pre = [0, 1, 2, 3].map(|g| {
                let (xg, bg, zg) = (
                    lanes(x[g], j0, n),
                    lanes(bias[g], j0, n),
                    lanes(z[g], j0, n),
                );
                std::array::from_fn(|l| xg[l] + bg[l] + zg[l])
            });
            let c_prev = lanes(c, j0, n);
            // c and h start as they are: a masked step leaves them so.
            let mut out = [[0.0f32; LANES]; 7];
            (out[5], out[6]) = (c_prev, lanes(h, j0, n));
            let [o0, o1, o2, o3, o4, o5, o6] = &mut out;
            cell_chunk::<MASKED>(pre, &c_prev, [o0, o1, o2, o3], [o4, o5, o6]);
            for (dst, src) in [&mut *gi, gf, gg, go, cc, c, h].into_iter().zip(&out) {
                put_lanes(dst, j0, n, src);
            }
        }
    }
}

/// `v`'s [`LANES`] values from `j0`, in place.
#[inline(always)]
fn chunk_mut(v: &mut [f32], j0: usize) -> &mut [f32; LANES] {
    (&mut v[j0..j0 + LANES])
        .try_into()
        .unwrap_or_else(|_| unreachable!("a full chunk"))
}

/// [`LANES`] cells: gates to `gates`; the cache's c, the running c and h to `state`, or, where
/// masked, c_prev to the cache and the running state left as it is.
#[inline(always)]
fn cell_chunk<const MASKED: bool>(
    pre: [[f32; LANES]; 4],
    c_prev: &[f32; LANES],
    gates: [&mut [f32; LANES]; 4],
    [cc, c, h]: [&mut [f32; LANES]; 3],
) {
    let [gi, gf, gg, go] = gates;
    for l in 0..LANES {
        let ([i, f, g, o], c_new, h_new) = cell_forward_with(
            [pre[0][l], pre[1][l], pre[2][l], pre[3][l]],
            c_prev[l],
            math::sigmoid,
            math::tanh,
        );
        (gi[l], gf[l], gg[l], go[l]) = (i, f, g, o);
        if MASKED {
            cc[l] = c_prev[l];
        } else {
            (cc[l], c[l], h[l]) = (c_new, c_new, h_new);
        }
    }
}

/// Units per chunk of the cell loops: one AVX-512 vector, two AVX2 ones, four SSE ones. The
/// loops run over fixed-size arrays, so they vectorize whatever H is; a loop over H itself ran
/// scalar for H = 32 (too few iterations for the vectorizer's unrolled loop).
const LANES: usize = 16;

/// `n` values of `v` from `j0` (n at most [`LANES`]), zero-padded to [`LANES`].
#[inline(always)]
pub(super) fn lanes(v: &[f32], j0: usize, n: usize) -> [f32; LANES] {
    let mut a = [0.0; LANES];
    if n == LANES {
        a.copy_from_slice(&v[j0..j0 + LANES]);
    } else {
        a[..n].copy_from_slice(&v[j0..j0 + n]);
    }
    a
}

/// Stores the first `n` values of `a` into `v` from `j0`.
#[inline(always)]
pub(super) fn put_lanes(v: &mut [f32], j0: usize, n: usize, a: &[f32; LANES]) {
    if n == LANES {
        v[j0..j0 + LANES].copy_from_slice(a);
    } else {
        v[j0..j0 + n].copy_from_slice(&a[..n]);
    }
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
    let carries = per_direction(args, |mut g| backward_dir(p, init, mask, grads, &mut g));
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
    mask: Option<&[u32]>,
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
    // Stands in for an absent dy or initial cell state.
    let zeros = vec![0.0f32; h_n];
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
            let masked = is_masked(p, mask, b, t);
            let dy = match grads.dy {
                Some(dy) if !(masked && p.zero_masked == 1) => {
                    &dy[(b * t_n + t) * d_n * h_n + dir * h_n..][..h_n]
                }
                _ => &zeros,
            };
            let c_prev = if q == 0 {
                init.map_or(&zeros[..], |i| &i[((d_n + dir) * b_n + b) * h_n..][..h_n])
            } else {
                let rp = b * t_n + prev_time(t, dir);
                &g.cache[rp * 5 * h_n + 4 * h_n..][..h_n]
            };
            let at = b * h_n..(b + 1) * h_n;
            let dz_row = &mut g.dz[row * h4..(row + 1) * h4];
            if masked {
                // The state passes the step unchanged: dh carries on, every dz is 0.
                for ((c, y), r) in dh_carry[at.clone()].iter_mut().zip(dy).zip(&back[at]) {
                    *c = *c + y + r;
                }
                dz_row.fill(0.0);
            } else {
                grad_row(
                    h_n,
                    [
                        &g.cache[row * 5 * h_n..(row + 1) * 5 * h_n],
                        c_prev,
                        dy,
                        &back[at.clone()],
                    ],
                    (&mut dh_carry[at.clone()], &mut dc_carry[at]),
                    dz_row,
                );
            }
            dz_next[b * h4..(b + 1) * h4].copy_from_slice(dz_row);
        }
    }
    back_product(&dz_next, &mut back);
    for (c, v) in dh_carry.iter_mut().zip(&back) {
        *c += v;
    }
    (dh_carry, dc_carry)
}

simd_fn! {
    /// [`cell_row_lanes`], masked or not.
    fn cell_row(
        h_n: usize,
        masked: bool,
        inputs: [&[f32]; 3],
        cache: &mut [f32],
        state: (&mut [f32], &mut [f32]),
    ) {
        if masked {
            cell_row_lanes::<true>(h_n, inputs, cache, state)
        } else {
            cell_row_lanes::<false>(h_n, inputs, cache, state)
        }
    }
}

simd_fn! {
    /// [`grad_row_lanes`].
    fn grad_row(
        h_n: usize,
        inputs: [&[f32]; 4],
        carry: (&mut [f32], &mut [f32]),
        dz: &mut [f32],
    ) {
        grad_row_lanes(h_n, inputs, carry, dz)
    }
}

/// One unmasked row's cells for one backward step, from the row's (5H) cache (gates i, f, g, o
/// and c), c_prev, dy and the recurrent product `back` (each (H)): writes the row's (4H) dz,
/// zeroes dh_carry and advances dc_carry. Slices of exact length and no calls, so the loop
/// vectorizes.
#[inline(always)]
fn grad_row_lanes(
    h_n: usize,
    [cache, c_prev, dy, back]: [&[f32]; 4],
    (dh_carry, dc_carry): (&mut [f32], &mut [f32]),
    dz: &mut [f32],
) {
    let [gi, gf, gg, go, cc] = [0, 1, 2, 3, 4].map(|g| &cache[g * h_n..(g + 1) * h_n]);
    let (di, dz) = dz[..4 * h_n].split_at_mut(h_n);
    let (df, dz) = dz.split_at_mut(h_n);
    let (dg, d_o) = dz.split_at_mut(h_n);
    for j0 in (0..h_n).step_by(LANES) {
        let n = LANES.min(h_n - j0);
        // (No array `map` here: its closure is not inlined into the vector builds.)
        let (gi, gf, gg) = (lanes(gi, j0, n), lanes(gf, j0, n), lanes(gg, j0, n));
        let (go, cc, c_prev) = (lanes(go, j0, n), lanes(cc, j0, n), lanes(c_prev, j0, n));
        let (dy, back) = (lanes(dy, j0, n), lanes(back, j0, n));
        let (dhc, dcc) = (lanes(dh_carry, j0, n), lanes(dc_carry, j0, n));
        let mut out = [[0.0f32; LANES]; 5];
        for l in 0..LANES {
            let dh = dhc[l] + dy[l] + back[l];
            let ([i, f, g, o], dc) = cell_backward_with(
                [gi[l], gf[l], gg[l], go[l]],
                cc[l],
                c_prev[l],
                dh,
                dcc[l],
                math::tanh,
            );
            [out[0][l], out[1][l], out[2][l], out[3][l]] = [i, f, g, o];
            out[4][l] = dc * gf[l];
        }
        for (dst, src) in [&mut *di, df, dg, d_o].into_iter().zip(&out) {
            put_lanes(dst, j0, n, src);
        }
        put_lanes(dh_carry, j0, n, &[0.0; LANES]);
        put_lanes(dc_carry, j0, n, &out[4]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::simd::{assert_same_bits_on_every_level, values};

    /// The cells give the same bits at every vector width, with odd widths (a vector tail),
    /// masked and not, forward and backward.
    #[test]
    fn cells_give_the_same_bits_at_every_vector_width() {
        for h_n in [1, 13, 64, 67] {
            for masked in [false, true] {
                assert_same_bits_on_every_level("lstm cell_row", || {
                    let (x, bias, z) = (values(1, 4 * h_n), values(2, 4 * h_n), values(3, 4 * h_n));
                    let mut cache = vec![0.0; 5 * h_n];
                    let (mut h, mut c) = (values(4, h_n), values(5, h_n));
                    cell_row(h_n, masked, [&x, &bias, &z], &mut cache, (&mut h, &mut c));
                    [cache, h, c].concat()
                });
            }
            assert_same_bits_on_every_level("lstm grad_row", || {
                let inputs = [
                    values(6, 5 * h_n),
                    values(7, h_n),
                    values(8, h_n),
                    values(9, h_n),
                ];
                let (mut dh, mut dc) = (values(10, h_n), values(11, h_n));
                let mut dz = vec![0.0; 4 * h_n];
                grad_row(
                    h_n,
                    [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
                    (&mut dh, &mut dc),
                    &mut dz,
                );
                [dz, dh, dc].concat()
            });
        }
    }
}
