//! The GRU recurrence on the CPU device, forward and backward: per step, the whole batch's
//! recurrent product is one sgemm (B x H times H x 3H forward, B x 3H times 3H x H backward) and
//! the gates are a vectorized loop over each row's units, with [`math`]'s sigmoid and tanh; the
//! two directions of a bidirectional layer run on two threads. Same buffers, layouts and cell
//! formulas as [`reference::gru_forward`] and [`reference::gru_backward`]; the order of the
//! recurrent sums (the recurrent bias added after the product) and the activations' last bits
//! differ, within the tests' tolerance.
//!
//! [`reference::gru_forward`]: crate::reference::gru_forward
//! [`reference::gru_backward`]: crate::reference::gru_backward

use super::lstm::per_direction;
use super::simd::simd_fn;
use super::{gemm, math};
use crate::params::GruParams;
use crate::reference::{
    gru_cell_backward, gru_cell_forward_with, is_masked, time_of, GruBackwardIn, GruBackwardOut,
    GruForwardOut, LstmRecurrence,
};

/// What one direction's forward pass reads, and its blocks of the cache and hprev.
struct DirForward<'a> {
    dir: usize,
    /// (B*T, 3H).
    xproj: &'a [f32],
    /// (H, 3H).
    recurrent: &'a [f32],
    /// (2, 3H): input bias, recurrent bias.
    bias: &'a [f32],
    /// (B*T, 4H), written.
    cache: &'a mut [f32],
    /// (B*T, H), written.
    hprev: &'a mut [f32],
}

/// The recurrence over every step and direction, as [`reference::gru_forward`].
///
/// [`reference::gru_forward`]: crate::reference::gru_forward
pub fn gru_forward(
    p: &GruParams,
    xproj: &[f32],
    bias: &[f32],
    r: LstmRecurrence<'_>,
    out: GruForwardOut<'_>,
) {
    let (b_n, t_n, h_n, d_n) = p.dims();
    let (rows, h3) = (b_n * t_n, 3 * h_n);
    let GruForwardOut {
        cache,
        hprev,
        y,
        hlast,
    } = out;
    let want_y = y.is_some();
    let args: Vec<_> = cache
        .chunks_mut(rows * 4 * h_n)
        .zip(hprev.chunks_mut(rows * h_n))
        .enumerate()
        .take(d_n)
        .map(|(dir, (cache, hprev))| DirForward {
            dir,
            xproj: &xproj[dir * rows * h3..(dir + 1) * rows * h3],
            recurrent: &r.recurrent[dir * h_n * h3..(dir + 1) * h_n * h3],
            bias: &bias[dir * 2 * h3..(dir + 1) * 2 * h3],
            cache,
            hprev,
        })
        .collect();
    let outs = per_direction(args, |mut f| forward_dir(p, &r, &mut f, want_y));
    // Interleave the directions: (B, T, D*H) and (B, D*H).
    let mut y = y;
    for (dir, (y_dir, hl)) in outs.into_iter().enumerate() {
        if let (Some(y), Some(y_dir)) = (y.as_deref_mut(), y_dir) {
            for (row, src) in y_dir.chunks_exact(h_n).enumerate() {
                y[(row * d_n + dir) * h_n..][..h_n].copy_from_slice(src);
            }
        }
        for b in 0..b_n {
            hlast[(b * d_n + dir) * h_n..][..h_n].copy_from_slice(&hl[b * h_n..(b + 1) * h_n]);
        }
    }
}

/// One direction's forward pass: its own (B*T, H) sequence (when wanted) and (B, H) last states.
fn forward_dir(
    p: &GruParams,
    r: &LstmRecurrence<'_>,
    f: &mut DirForward<'_>,
    want_y: bool,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let (b_n, t_n, h_n, _) = p.dims();
    let (dir, h3) = (f.dir, 3 * h_n);
    let mut h = vec![0.0f32; b_n * h_n];
    if let Some(init) = r.init {
        h.copy_from_slice(&init[dir * b_n * h_n..(dir + 1) * b_n * h_n]);
    }
    let mut y = want_y.then(|| vec![0.0f32; b_n * t_n * h_n]);
    let mut a = vec![0.0f32; b_n * h3];
    let (bias_in, bias_rec) = f.bias.split_at(h3);
    for s in 0..t_n {
        let t = time_of(p, s, dir);
        gemm(
            (b_n, h_n, h3),
            (&h, h_n, 1),
            (f.recurrent, h3, 1),
            0.0,
            &mut a,
        );
        for b in 0..b_n {
            let row = b * t_n + t;
            let hb = &mut h[b * h_n..(b + 1) * h_n];
            f.hprev[row * h_n..(row + 1) * h_n].copy_from_slice(hb);
            let masked = is_masked(p, r.mask, b, t);
            gru_row(
                h_n,
                masked,
                [
                    &f.xproj[row * h3..(row + 1) * h3],
                    bias_in,
                    bias_rec,
                    &a[b * h3..(b + 1) * h3],
                ],
                &mut f.cache[row * 4 * h_n..(row + 1) * 4 * h_n],
                hb,
            );
            if let Some(y) = y.as_deref_mut() {
                let y = &mut y[row * h_n..(row + 1) * h_n];
                if masked && p.zero_masked == 1 {
                    y.fill(0.0);
                } else {
                    y.copy_from_slice(hb);
                }
            }
        }
    }
    (y, h)
}

/// One row's cells for one step, from x, the input bias, the recurrent bias and the recurrent
/// product a (each (3H), gate-major): the gates and a_n go to the row's (4H) cache, and h (H)
/// advances in place unless the step is masked. Slices of exact length, so the loop vectorizes,
/// at the CPU's widest vector width ([`simd_fn`]).
#[inline(always)]
fn gru_row_lanes<const MASKED: bool>(
    h_n: usize,
    [x, bias_in, bias_rec, a]: [&[f32]; 4],
    cache: &mut [f32],
    h: &mut [f32],
) {
    fn thirds(v: &[f32], h_n: usize) -> (&[f32], &[f32], &[f32]) {
        (&v[..h_n], &v[h_n..2 * h_n], &v[2 * h_n..3 * h_n])
    }
    let (xz, xr, xn) = thirds(x, h_n);
    let (bz, br, bn) = thirds(bias_in, h_n);
    let (rz, rr, rn) = thirds(bias_rec, h_n);
    let (az, ar, an_in) = thirds(a, h_n);
    let (gz, rest) = cache[..4 * h_n].split_at_mut(h_n);
    let (gr, rest) = rest.split_at_mut(h_n);
    let (gn, an) = rest.split_at_mut(h_n);
    let h = &mut h[..h_n];
    for j in 0..h_n {
        let x3 = [xz[j] + bz[j], xr[j] + br[j], xn[j] + bn[j]];
        let a3 = [az[j] + rz[j], ar[j] + rr[j], an_in[j] + rn[j]];
        let ([z, r, n], h_new) = gru_cell_forward_with(x3, a3, h[j], math::sigmoid, math::tanh);
        (gz[j], gr[j], gn[j], an[j]) = (z, r, n, a3[2]);
        if !MASKED {
            h[j] = h_new;
        }
    }
}

simd_fn! {
    /// [`gru_row_lanes`], masked or not.
    fn gru_row(h_n: usize, masked: bool, inputs: [&[f32]; 4], cache: &mut [f32], h: &mut [f32]) {
        if masked {
            gru_row_lanes::<true>(h_n, inputs, cache, h)
        } else {
            gru_row_lanes::<false>(h_n, inputs, cache, h)
        }
    }
}

simd_fn! {
    /// [`grad_row_lanes`].
    fn grad_row(
        h_n: usize,
        inputs: [&[f32]; 4],
        dh_carry: &mut [f32],
        grads: (&mut [f32], &mut [f32]),
    ) {
        grad_row_lanes(h_n, inputs, dh_carry, grads)
    }
}

/// What one direction's backward pass reads and writes.
struct DirBackward<'a> {
    dir: usize,
    /// (B*T, 4H) and (B*T, H): this direction's blocks of the forward's cache and hprev.
    cache: &'a [f32],
    hprev: &'a [f32],
    /// (H, 3H).
    recurrent: &'a [f32],
    /// (B*T, 3H) each: this direction's blocks of dx and da, written.
    dx: &'a mut [f32],
    da: &'a mut [f32],
}

/// Backpropagation through time, as [`reference::gru_backward`].
///
/// [`reference::gru_backward`]: crate::reference::gru_backward
pub fn gru_backward(
    p: &GruParams,
    r: LstmRecurrence<'_>,
    grads: GruBackwardIn<'_>,
    out: GruBackwardOut<'_>,
) {
    let (b_n, t_n, h_n, d_n) = p.dims();
    let (rows, h3) = (b_n * t_n, 3 * h_n);
    let GruBackwardOut { dx, da, carry } = out;
    let args: Vec<_> = dx
        .chunks_mut(rows * h3)
        .zip(da.chunks_mut(rows * h3))
        .enumerate()
        .take(d_n)
        .map(|(dir, (dx, da))| DirBackward {
            dir,
            cache: &grads.cache[dir * rows * 4 * h_n..(dir + 1) * rows * 4 * h_n],
            hprev: &grads.hprev[dir * rows * h_n..(dir + 1) * rows * h_n],
            recurrent: &r.recurrent[dir * h_n * h3..(dir + 1) * h_n * h3],
            dx,
            da,
        })
        .collect();
    let grads = &grads;
    let carries = per_direction(args, |mut g| backward_dir(p, r.mask, grads, &mut g));
    for (dir, dh) in carries.into_iter().enumerate() {
        carry[dir * b_n * h_n..(dir + 1) * b_n * h_n].copy_from_slice(&dh);
    }
}

/// One direction's BPTT; returns its (B, H) d(h0).
fn backward_dir(
    p: &GruParams,
    mask: Option<&[u32]>,
    grads: &GruBackwardIn<'_>,
    g: &mut DirBackward<'_>,
) -> Vec<f32> {
    let (b_n, t_n, h_n, d_n) = p.dims();
    let (dir, h3) = (g.dir, 3 * h_n);
    let mut dh_carry = vec![0.0f32; b_n * h_n];
    if let Some(dhlast) = grads.dhlast {
        for b in 0..b_n {
            dh_carry[b * h_n..(b + 1) * h_n]
                .copy_from_slice(&dhlast[(b * d_n + dir) * h_n..][..h_n]);
        }
    }
    // da of the step processed after the current one, and its product with the recurrent
    // kernel's transpose: (B, 3H) x (3H, H).
    let mut da_next = vec![0.0f32; b_n * h3];
    let mut back = vec![0.0f32; b_n * h_n];
    let zeros = vec![0.0f32; h_n];
    let back_product = |da_next: &[f32], back: &mut [f32]| {
        gemm(
            (b_n, h3, h_n),
            (da_next, h3, 1),
            (g.recurrent, 1, h3),
            0.0,
            back,
        );
    };
    for s in 0..t_n {
        let t = time_of(p, t_n - 1 - s, dir);
        if s > 0 {
            back_product(&da_next, &mut back);
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
            let at = b * h_n..(b + 1) * h_n;
            let (dx_row, da_row) = (
                &mut g.dx[row * h3..(row + 1) * h3],
                &mut g.da[row * h3..(row + 1) * h3],
            );
            if masked {
                // The state passes the step unchanged: dh carries on, the gates get nothing.
                for ((c, y), r) in dh_carry[at.clone()].iter_mut().zip(dy).zip(&back[at]) {
                    *c = *c + y + r;
                }
                dx_row.fill(0.0);
                da_row.fill(0.0);
            } else {
                grad_row(
                    h_n,
                    [
                        &g.cache[row * 4 * h_n..(row + 1) * 4 * h_n],
                        &g.hprev[row * h_n..(row + 1) * h_n],
                        dy,
                        &back[at.clone()],
                    ],
                    &mut dh_carry[at],
                    (dx_row, da_row),
                );
            }
            da_next[b * h3..(b + 1) * h3].copy_from_slice(&g.da[row * h3..(row + 1) * h3]);
        }
    }
    back_product(&da_next, &mut back);
    for (c, v) in dh_carry.iter_mut().zip(&back) {
        *c += v;
    }
    dh_carry
}

/// One unmasked row's cells for one backward step, from the row's (4H) cache (z, r, n, a_n),
/// hprev, dy and the recurrent product `back` (each (H)): writes the row's (3H) dx and da and
/// sets dh_carry to the direct path dh z. Slices of exact length, so the loop vectorizes.
#[inline(always)]
fn grad_row_lanes(
    h_n: usize,
    [cache, hprev, dy, back]: [&[f32]; 4],
    dh_carry: &mut [f32],
    (dx, da): (&mut [f32], &mut [f32]),
) {
    let [gz, gr, gn, an] = [0, 1, 2, 3].map(|g| &cache[g * h_n..(g + 1) * h_n]);
    let (hprev, dy, back, dh_carry) = (
        &hprev[..h_n],
        &dy[..h_n],
        &back[..h_n],
        &mut dh_carry[..h_n],
    );
    let (dxz, rest) = dx[..3 * h_n].split_at_mut(h_n);
    let (dxr, dxn) = rest.split_at_mut(h_n);
    let (daz, rest) = da[..3 * h_n].split_at_mut(h_n);
    let (dar, dan) = rest.split_at_mut(h_n);
    for j in 0..h_n {
        let dh = dh_carry[j] + dy[j] + back[j];
        let (gx, ga, direct) = gru_cell_backward([gz[j], gr[j], gn[j]], an[j], hprev[j], dh);
        (dxz[j], dxr[j], dxn[j]) = (gx[0], gx[1], gx[2]);
        (daz[j], dar[j], dan[j]) = (ga[0], ga[1], ga[2]);
        dh_carry[j] = direct;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::simd::{assert_same_bits_on_every_level, values};

    /// The cells give the same bits at every vector width, masked and not, forward and backward.
    #[test]
    fn cells_give_the_same_bits_at_every_vector_width() {
        for h_n in [1, 13, 64, 67] {
            for masked in [false, true] {
                assert_same_bits_on_every_level("gru_row", || {
                    let inputs = [1, 2, 3, 4].map(|s| values(s, 3 * h_n));
                    let mut cache = vec![0.0; 4 * h_n];
                    let mut h = values(5, h_n);
                    gru_row(
                        h_n,
                        masked,
                        [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
                        &mut cache,
                        &mut h,
                    );
                    [cache, h].concat()
                });
            }
            assert_same_bits_on_every_level("gru grad_row", || {
                let inputs = [
                    values(6, 4 * h_n),
                    values(7, h_n),
                    values(8, h_n),
                    values(9, h_n),
                ];
                let mut dh = values(10, h_n);
                let (mut dx, mut da) = (vec![0.0; 3 * h_n], vec![0.0; 3 * h_n]);
                grad_row(
                    h_n,
                    [&inputs[0], &inputs[1], &inputs[2], &inputs[3]],
                    &mut dh,
                    (&mut dx, &mut da),
                );
                [dx, da, dh].concat()
            });
        }
    }
}
