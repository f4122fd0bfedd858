//! Attention on the CPU device: for each (batch, head), blocks of [`QB`] queries against the keys
//! through the GEMM, so that one block's scores (QB x Tk) are all that is held: memory linear in
//! T, as the kernels'. Heads are read in place (a head's rows are strided by H * D). Forward
//! blocks run in parallel; the backward runs one task per (batch, head), its blocks in order, so
//! dk and dv sum in a fixed order. The same results as [`crate::reference`] up to rounding.

use rayon::prelude::*;

use super::gemm;
use crate::params::AttentionParams;
use crate::reference::attention::{row_at, RowMask};
use crate::reference::{AttentionGrads, AttentionHost};

/// Queries per block.
const QB: usize = 128;

/// e^x for x = score - max or score - lse (at most about 0): the vectorizing exp, and 0 for a
/// masked score (-inf) or one too small to count.
#[inline(always)]
fn weight(x: f32) -> f32 {
    if x < -87.0 {
        0.0
    } else {
        super::math::exp(x)
    }
}

/// One (batch, head) of a call: where its rows start and how far apart they are.
struct Head<'a> {
    p: &'a AttentionParams,
    x: &'a AttentionHost<'a>,
    b: usize,
    h: usize,
}

impl Head<'_> {
    fn mask(&self) -> RowMask<'_> {
        RowMask {
            p: self.p,
            kids: self.x.kids,
            b: self.b,
        }
    }

    /// (offset of row 0, row stride) of a (B, T, H, width) tensor's head.
    fn rows(&self, steps: u32, width: u32) -> (usize, usize) {
        let p = self.p;
        (
            row_at(p, steps, width, self.b, self.h, 0),
            (p.heads * width) as usize,
        )
    }

    /// The (b, h, i) row index of query `i` (dropout counters, lse).
    fn row(&self, i: usize) -> usize {
        (self.b * self.p.heads as usize + self.h) * self.p.tq as usize + i
    }

    /// Weights of row `row` times their dropout factors, in place.
    fn drop(&self, row: usize, weights: &mut [f32]) {
        if self.p.keep_prob < 1.0 {
            for (j, w) in weights.iter_mut().enumerate() {
                *w *= self.p.drop_factor(row as u32, j as u32);
            }
        }
    }

    /// Which of the block's queries have no key, and how many keys the block needs.
    fn block(&self, i0: usize, rows: usize) -> (Vec<bool>, usize) {
        let mask = self.mask();
        let full: Vec<bool> = (i0..i0 + rows).map(|i| mask.full(self.x.qids, i)).collect();
        let tk = self.p.tk as usize;
        let keys = if self.p.causal != 0 && !full.contains(&true) {
            (i0 + rows).min(tk)
        } else {
            tk
        };
        (full, keys)
    }

    /// s (rows x keys) = scale * q[i0 .. i0 + rows] . k[0 .. keys]^T, with the masked scores at
    /// -inf and a row with no key all 0.
    fn scores(&self, i0: usize, rows: usize, keys: usize, full: &[bool], s: &mut [f32]) {
        let p = self.p;
        let (q0, rsq) = self.rows(p.tq, p.dk);
        let (k0, rsk) = self.rows(p.tk, p.dk);
        gemm(
            (rows, p.dk as usize, keys),
            (&self.x.q[q0 + i0 * rsq..], rsq, 1),
            (&self.x.k[k0..], 1, rsk),
            0.0,
            s,
        );
        let mask = self.mask();
        for (r, srow) in s.chunks_exact_mut(keys).take(rows).enumerate() {
            if full[r] {
                srow.fill(0.0);
                continue;
            }
            // Keys past the causal limit are masked; the rest are scaled, then padded keys masked.
            let open = if p.causal != 0 {
                (i0 + r + 1).min(keys)
            } else {
                keys
            };
            let (scored, past) = srow.split_at_mut(open);
            scored.iter_mut().for_each(|x| *x *= p.scale);
            past.fill(f32::NEG_INFINITY);
            if p.has_kmask != 0 {
                for (j, x) in scored.iter_mut().enumerate() {
                    if !mask.key_ok(j) {
                        *x = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }

    /// The block's output rows (rows x dv) and log-sum-exps.
    fn forward_block(&self, i0: usize) -> (Vec<f32>, Vec<f32>) {
        let p = self.p;
        let rows = QB.min(p.tq as usize - i0);
        let (full, keys) = self.block(i0, rows);
        let mut s = vec![0.0f32; rows * keys];
        self.scores(i0, rows, keys, &full, &mut s);
        let mut lse = vec![0.0f32; rows];
        let mut sums = vec![0.0f32; rows];
        for (r, srow) in s.chunks_exact_mut(keys).enumerate() {
            let m = srow.iter().fold(f32::MIN, |m, &x| m.max(x));
            let mut l = 0.0f32;
            for sj in srow.iter_mut() {
                let e = weight(*sj - m);
                l += e;
                *sj = e;
            }
            self.drop(self.row(i0 + r), srow);
            sums[r] = l;
            lse[r] = if full[r] { f32::MIN } else { m + l.ln() };
        }
        let dv = p.dv as usize;
        let (v0, rsv) = self.rows(p.tk, p.dv);
        let mut o = vec![0.0f32; rows * dv];
        gemm(
            (rows, keys, dv),
            (&s, keys, 1),
            (&self.x.v[v0..], rsv, 1),
            0.0,
            &mut o,
        );
        for (orow, l) in o.chunks_exact_mut(dv).zip(&sums) {
            orow.iter_mut().for_each(|x| *x /= l);
        }
        (o, lse)
    }
}

fn heads<'a>(p: &'a AttentionParams, x: &'a AttentionHost<'a>) -> Vec<Head<'a>> {
    (0..p.batch as usize)
        .flat_map(|b| (0..p.heads as usize).map(move |h| Head { p, x, b, h }))
        .collect()
}

/// Copies a head's contiguous rows (T x width) into a (B, T, H, width) tensor.
fn scatter(head: &Head, steps: u32, width: u32, i0: usize, rows: &[f32], out: &mut [f32]) {
    let (at, stride) = head.rows(steps, width);
    let w = width as usize;
    for (r, src) in rows.chunks_exact(w).enumerate() {
        out[at + (i0 + r) * stride..][..w].copy_from_slice(src);
    }
}

/// As [`crate::reference::attention_forward`].
pub fn attention_forward(p: &AttentionParams, x: &AttentionHost, o: &mut [f32], lse: &mut [f32]) {
    let heads = heads(p, x);
    let blocks: Vec<(usize, usize)> = (0..heads.len())
        .flat_map(|hd| (0..p.tq as usize).step_by(QB).map(move |i0| (hd, i0)))
        .collect();
    let done: Vec<(Vec<f32>, Vec<f32>)> = blocks
        .par_iter()
        .map(|&(hd, i0)| heads[hd].forward_block(i0))
        .collect();
    for (&(hd, i0), (ob, lb)) in blocks.iter().zip(&done) {
        let head = &heads[hd];
        scatter(head, p.tq, p.dv, i0, ob, o);
        let row = head.row(i0);
        lse[row..row + lb.len()].copy_from_slice(lb);
    }
}

/// A head's gradients, contiguous: dq (Tq x dk), dk (Tk x dk), dv (Tk x dv).
struct HeadGrads {
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

/// What the backward pass reads besides the inputs.
struct Saved<'a> {
    o: &'a [f32],
    lse: &'a [f32],
    dout: &'a [f32],
}

impl Head<'_> {
    fn backward(&self, saved: &Saved) -> HeadGrads {
        let p = self.p;
        let (tq, tk, dk, dv) = (p.tq as usize, p.tk as usize, p.dk as usize, p.dv as usize);
        let mut g = HeadGrads {
            dq: vec![0.0; tq * dk],
            dk: vec![0.0; tk * dk],
            dv: vec![0.0; tk * dv],
        };
        for i0 in (0..tq).step_by(QB) {
            self.backward_block(saved, i0, &mut g);
        }
        g.dk.iter_mut().for_each(|x| *x *= p.scale);
        g
    }

    fn backward_block(&self, saved: &Saved, i0: usize, g: &mut HeadGrads) {
        let p = self.p;
        let (tk, dk, dv) = (p.tk as usize, p.dk as usize, p.dv as usize);
        let rows = QB.min(p.tq as usize - i0);
        let (full, keys) = self.block(i0, rows);
        let mut s = vec![0.0f32; rows * keys];
        self.scores(i0, rows, keys, &full, &mut s);
        let (o0, rso) = self.rows(p.tq, p.dv);
        let (k0, rsk) = self.rows(p.tk, p.dk);
        let (v0, rsv) = self.rows(p.tk, p.dv);
        let (q0, rsq) = self.rows(p.tq, p.dk);
        let dout = &saved.dout[o0 + i0 * rso..];
        // dp (rows x keys) = dO . v^T
        let mut dp = vec![0.0f32; rows * keys];
        gemm(
            (rows, dv, keys),
            (dout, rso, 1),
            (&self.x.v[v0..], 1, rsv),
            0.0,
            &mut dp,
        );
        // s becomes p * f (for dv), dp becomes ds.
        for r in 0..rows {
            let row = self.row(i0 + r);
            let at = o0 + (i0 + r) * rso;
            let di: f32 = (0..dv).map(|d| saved.dout[at + d] * saved.o[at + d]).sum();
            let (srow, dprow) = (&mut s[r * keys..][..keys], &mut dp[r * keys..][..keys]);
            if full[r] {
                // Weights 1 / Tk for dv; no gradient to the scores.
                srow.fill(1.0 / tk as f32);
                dprow.fill(0.0);
                if p.keep_prob < 1.0 {
                    self.drop(row, srow);
                }
                continue;
            } else {
                let lse = saved.lse[row];
                srow.iter_mut().for_each(|x| *x = weight(*x - lse));
            }
            if p.keep_prob < 1.0 {
                for (j, (pj, dpj)) in srow.iter_mut().zip(dprow.iter_mut()).enumerate() {
                    let f = p.drop_factor(row as u32, j as u32);
                    *dpj = *pj * (*dpj * f - di);
                    *pj *= f;
                }
            } else {
                for (pj, dpj) in srow.iter().zip(dprow.iter_mut()) {
                    *dpj = *pj * (*dpj - di);
                }
            }
        }
        // dv[..keys] += (p f)^T dO; dk[..keys] += ds^T q; dq = ds k
        gemm(
            (keys, rows, dv),
            (&s, 1, keys),
            (dout, rso, 1),
            1.0,
            &mut g.dv,
        );
        let q = &self.x.q[q0 + i0 * rsq..];
        gemm(
            (keys, rows, dk),
            (&dp, 1, keys),
            (q, rsq, 1),
            1.0,
            &mut g.dk,
        );
        let dq = &mut g.dq[i0 * dk..(i0 + rows) * dk];
        gemm(
            (rows, keys, dk),
            (&dp, keys, 1),
            (&self.x.k[k0..], rsk, 1),
            0.0,
            dq,
        );
        dq.iter_mut().for_each(|x| *x *= p.scale);
    }
}

/// As [`crate::reference::attention_backward`].
pub fn attention_backward(
    p: &AttentionParams,
    x: &AttentionHost,
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    g: AttentionGrads,
) {
    let saved = Saved { o, lse, dout };
    let heads = heads(p, x);
    let grads: Vec<HeadGrads> = heads.par_iter().map(|h| h.backward(&saved)).collect();
    for (head, hg) in heads.iter().zip(&grads) {
        scatter(head, p.tq, p.dk, 0, &hg.dq, g.dq);
        scatter(head, p.tk, p.dk, 0, &hg.dk, g.dk);
        scatter(head, p.tk, p.dv, 0, &hg.dv, g.dv);
    }
}
