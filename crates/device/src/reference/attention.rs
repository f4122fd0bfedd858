//! Scaled dot-product attention over heads, the spec of shaders/attention.wgsl.
//!
//! For batch b, head h and query i, the scores are s_ij = scale * q_i . k_j over the keys j that
//! i may attend to: the query's id and the key's id are not 0 (when ids are given) and, when
//! causal, j <= i. The weights are softmax(s_i) over those keys, each multiplied by its dropout
//! factor, and o_i = sum_j w_ij v_j. A row with no key to attend to weighs every key 1 / Tk and
//! its scores get no gradient, which is what Keras gives (its masked scores are replaced by a
//! large negative number); its log-sum-exp is stored as `f32::MIN`, which tells the backward
//! pass so.
//!
//! Backward, from the log-sum-exp: p_ij = exp(s_ij - lse_i), D_i = dO_i . O_i,
//! dv_j += p f dO_i, ds_ij = p (f dO_i . v_j - D_i), dq_i = scale sum_j ds k_j,
//! dk_j = scale sum_i ds q_i, with f the dropout factor (ds = 0 in a row with no key). Sums run over j (dq) and i (dk, dv) in
//! order, as the kernels sum them.

use crate::params::AttentionParams;

/// The tensors attention reads, as host slices (ids as u32, the rest f32).
pub struct AttentionHost<'a> {
    /// (B, Tq, H, Dk).
    pub q: &'a [f32],
    /// (B, Tk, H, Dk).
    pub k: &'a [f32],
    /// (B, Tk, H, Dv).
    pub v: &'a [f32],
    /// (B, Tq) query ids, 0 for padding.
    pub qids: Option<&'a [u32]>,
    /// (B, Tk) key ids, 0 for padding.
    pub kids: Option<&'a [u32]>,
}

/// Where row (b, h, i) of a (B, T, H, D) tensor starts.
pub(crate) fn row_at(
    p: &AttentionParams,
    steps: u32,
    width: u32,
    b: usize,
    h: usize,
    i: usize,
) -> usize {
    ((b * steps as usize + i) * p.heads as usize + h) * width as usize
}

/// The mask of one batch row: which keys query i may attend to.
pub(crate) struct RowMask<'a> {
    pub p: &'a AttentionParams,
    pub kids: Option<&'a [u32]>,
    pub b: usize,
}

impl RowMask<'_> {
    pub fn key_ok(&self, j: usize) -> bool {
        self.kids
            .is_none_or(|ids| ids[self.b * self.p.tk as usize + j] != 0)
    }

    /// Whether query i (valid itself) may attend to key j.
    pub fn allowed(&self, i: usize, j: usize) -> bool {
        (self.p.causal == 0 || j <= i) && self.key_ok(j)
    }

    /// Whether query i has no key to attend to.
    pub fn full(&self, qids: Option<&[u32]>, i: usize) -> bool {
        let q_ok = qids.is_none_or(|ids| ids[self.b * self.p.tq as usize + i] != 0);
        !q_ok || !(0..self.p.tk as usize).any(|j| self.allowed(i, j))
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |s, (x, y)| s + x * y)
}

/// o (B, Tq, H, Dv) and lse (B, H, Tq), overwritten.
pub fn attention_forward(p: &AttentionParams, x: &AttentionHost, o: &mut [f32], lse: &mut [f32]) {
    let (tk, dk, dv) = (p.tk as usize, p.dk as usize, p.dv as usize);
    let mut s = vec![0.0f32; tk];
    for b in 0..p.batch as usize {
        let mask = RowMask { p, kids: x.kids, b };
        for h in 0..p.heads as usize {
            for i in 0..p.tq as usize {
                let full = mask.full(x.qids, i);
                let qi = &x.q[row_at(p, p.tq, p.dk, b, h, i)..][..dk];
                let mut m = f32::MIN;
                for j in 0..tk {
                    s[j] = if full {
                        0.0
                    } else if mask.allowed(i, j) {
                        dot(qi, &x.k[row_at(p, p.tk, p.dk, b, h, j)..][..dk]) * p.scale
                    } else {
                        f32::MIN
                    };
                    m = m.max(s[j]);
                }
                let row = ((b * p.heads as usize + h) * p.tq as usize + i) as u32;
                let oi = &mut o[row_at(p, p.tq, p.dv, b, h, i)..][..dv];
                oi.fill(0.0);
                let mut l = 0.0f32;
                for j in 0..tk {
                    if !full && !mask.allowed(i, j) {
                        continue;
                    }
                    let e = (s[j] - m).exp();
                    l += e;
                    let w = e * p.drop_factor(row, j as u32);
                    let vj = &x.v[row_at(p, p.tk, p.dv, b, h, j)..][..dv];
                    for (od, vd) in oi.iter_mut().zip(vj) {
                        *od += w * vd;
                    }
                }
                oi.iter_mut().for_each(|od| *od /= l);
                lse[row as usize] = if full { f32::MIN } else { m + l.ln() };
            }
        }
    }
}

/// The gradients attention's backward pass writes: (B, Tq, H, Dk), (B, Tk, H, Dk) and
/// (B, Tk, H, Dv), overwritten.
pub struct AttentionGrads<'a> {
    /// dL/dq.
    pub dq: &'a mut [f32],
    /// dL/dk.
    pub dk: &'a mut [f32],
    /// dL/dv.
    pub dv: &'a mut [f32],
}

/// The weight p_ij of a row from its log-sum-exp (see the module doc).
pub(crate) fn weight(p: &AttentionParams, lse: f32, score: f32) -> f32 {
    if lse == f32::MIN {
        1.0 / p.tk as f32
    } else {
        (score - lse).exp()
    }
}

/// dq, dk and dv from the forward pass's o and lse and the output's gradient `dout`. Query ids
/// are not needed: a row they mask has lse = f32::MIN.
pub fn attention_backward(
    p: &AttentionParams,
    x: &AttentionHost,
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    g: AttentionGrads,
) {
    let (dk, dv) = (p.dk as usize, p.dv as usize);
    g.dq.fill(0.0);
    g.dk.fill(0.0);
    g.dv.fill(0.0);
    for b in 0..p.batch as usize {
        let mask = RowMask { p, kids: x.kids, b };
        for h in 0..p.heads as usize {
            for i in 0..p.tq as usize {
                let row = (b * p.heads as usize + h) * p.tq as usize + i;
                let l = lse[row];
                let (qa, oa) = (
                    row_at(p, p.tq, p.dk, b, h, i),
                    row_at(p, p.tq, p.dv, b, h, i),
                );
                let doi = &dout[oa..][..dv];
                let di = dot(doi, &o[oa..][..dv]);
                for j in 0..p.tk as usize {
                    if l != f32::MIN && !mask.allowed(i, j) {
                        continue;
                    }
                    let (ka, va) = (
                        row_at(p, p.tk, p.dk, b, h, j),
                        row_at(p, p.tk, p.dv, b, h, j),
                    );
                    let (qi, kj) = (&x.q[qa..][..dk], &x.k[ka..][..dk]);
                    let pij = weight(p, l, dot(qi, kj) * p.scale);
                    let f = p.drop_factor(row as u32, j as u32);
                    for (dvd, dod) in g.dv[va..][..dv].iter_mut().zip(doi) {
                        *dvd += pij * f * dod;
                    }
                    if l == f32::MIN {
                        continue;
                    }
                    let ds = pij * (dot(doi, &x.v[va..][..dv]) * f - di);
                    for d in 0..dk {
                        g.dq[qa + d] += ds * kj[d];
                        g.dk[ka + d] += ds * qi[d];
                    }
                }
            }
        }
    }
    g.dq.iter_mut()
        .chain(g.dk.iter_mut())
        .for_each(|x| *x *= p.scale);
}
