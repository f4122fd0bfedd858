//! Attention on the tape: the fused kernel ([`Tape::attention`]) and the same computation
//! composed of matmuls and a softmax ([`Tape::attention_unfused`]), the baseline that tests and
//! benchmarks compare it with.

use kiln_device::{AttentionInputs, AttentionParams, AttentionSpec, Tensor};

use crate::{Error, Result, Tape, Var};

/// Keras replaces the scores it masks by this.
const MASKED: f32 = -1e9;

/// Options of an attention call. Queries (B, Tq, H, Dk), keys (B, Tk, H, Dk) and values
/// (B, Tk, H, Dv), heads interleaved as a projection to H * D lays them out.
#[derive(Clone, Debug, Default)]
pub struct AttentionOptions {
    /// Scores are `scale * q . k`; 1 / sqrt(Dk) when None.
    pub scale: Option<f32>,
    /// Query i attends only to keys j <= i.
    pub causal: bool,
    /// The rate at which attention weights are dropped while training.
    pub dropout: f32,
    /// (B, Tq) u32 ids; a query whose id is 0 attends to no key (Keras's query mask).
    pub query_ids: Option<Tensor>,
    /// (B, Tk) u32 ids; a key whose id is 0 is attended by no query (Keras's value mask).
    pub key_ids: Option<Tensor>,
}

impl AttentionOptions {
    /// Non-causal, no dropout, no masks, scale 1 / sqrt(Dk).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same, causal or not.
    pub fn causal(self, causal: bool) -> Self {
        Self { causal, ..self }
    }

    /// The same, with dropout at `rate` while training.
    pub fn dropout(self, rate: f32) -> Self {
        Self {
            dropout: rate,
            ..self
        }
    }

    /// The same, masking the queries and keys whose ids are 0.
    pub fn ids(self, query_ids: Option<Tensor>, key_ids: Option<Tensor>) -> Self {
        Self {
            query_ids,
            key_ids,
            ..self
        }
    }
}

impl Tape {
    /// softmax(scale q k^T + mask) v over heads, through the fused kernel: one dispatch forward,
    /// two backward, memory linear in T. A query with no key to attend to (all padded, or
    /// causal before the first open key) weighs every key 1 / Tk and passes no gradient to its
    /// scores, as Keras does. Dropout on
    /// the weights applies while training, keyed by the tape's seed; the backward pass uses the
    /// same mask.
    pub fn attention(&self, q: &Var, k: &Var, v: &Var, opts: &AttentionOptions) -> Result<Var> {
        let spec = self.attention_spec(q, opts)?;
        let d = self.device();
        let inputs = |q, k, v| {
            AttentionInputs::new(q, k, v)
                .query_ids(opts.query_ids.as_ref())
                .key_ids(opts.key_ids.as_ref())
        };
        let fwd = d.attention(&inputs(q.value(), k.value(), v.value()), &spec)?;
        let vars = [q, k, v];
        if !self.needs_grad(&vars) {
            return Ok(self.record(fwd.out, &vars, |_, _| Ok(vec![])));
        }
        let (qv, kv, vv) = (q.value().clone(), k.value().clone(), v.value().clone());
        let (qids, kids) = (opts.query_ids.clone(), opts.key_ids.clone());
        Ok(self.record(fwd.out.clone(), &vars, move |d, dy| {
            let x = AttentionInputs::new(&qv, &kv, &vv)
                .query_ids(qids.as_ref())
                .key_ids(kids.as_ref());
            let g = d.attention_backward(&x, &spec, &fwd, dy)?;
            Ok(vec![Some(g.dq), Some(g.dk), Some(g.dv)])
        }))
    }

    /// The device spec of a call, taking B * H * Tq dropout counters from the tape while
    /// training.
    fn attention_spec(&self, q: &Var, opts: &AttentionOptions) -> Result<AttentionSpec> {
        let s = q.shape();
        if s.len() != 4 {
            return Err(Error::model(
                "attention",
                format!("queries of rank 4 (batch, steps, heads, head width) expected, got {s:?}"),
            ));
        }
        let mut spec = AttentionSpec::for_head(s[3]).causal(opts.causal);
        if let Some(scale) = opts.scale {
            spec.scale = scale;
        }
        if self.is_training() && opts.dropout > 0.0 {
            let offset = self.draw_offset("attention dropout", s[0] * s[1] * s[2])?;
            spec = spec.dropout(opts.dropout, self.seed, offset);
        }
        Ok(spec)
    }

    /// [`Tape::attention`] composed of tape ops, per batch row and head: scores by a matmul,
    /// Keras's mask (masked scores replaced by -1e9: times 0, plus -1e9), softmax, the same dropout mask as the fused kernel's, and a
    /// matmul with the values. It stores every (Tq, Tk) score and weight matrix: the baseline
    /// that the fused kernel is tested and benchmarked against.
    pub fn attention_unfused(
        &self,
        q: &Var,
        k: &Var,
        v: &Var,
        opts: &AttentionOptions,
    ) -> Result<Var> {
        let spec = self.attention_spec(q, opts)?;
        let (qs, ks, vs) = (q.shape().to_vec(), k.shape().to_vec(), v.shape().to_vec());
        if ks.len() != 4 || vs.len() != 4 || ks[2] != qs[2] || vs[1] != ks[1] {
            return Err(Error::model(
                "attention",
                format!("queries {qs:?}, keys {ks:?} and values {vs:?} do not match"),
            ));
        }
        let (b, tq, h, tk, dv) = (qs[0], qs[1], qs[2], ks[1], vs[3]);
        let d = self.device();
        let ids = |t: &Option<Tensor>| t.as_ref().map(|t| d.to_u32(t)).transpose();
        let (qids, kids) = (ids(&opts.query_ids)?, ids(&opts.key_ids)?);
        let head = |x: &Var, bi: usize, hi: usize| -> Result<Var> {
            let s = x.shape();
            let part = self.narrow(&self.narrow(x, 0, bi, 1)?, 2, hi, 1)?;
            self.reshape(&part, &[s[1], s[3]])
        };
        let drop = AttentionParams {
            heads: h as u32,
            tq: tq as u32,
            keep_prob: 1.0 - spec.dropout,
            drop_scale: 1.0 / (1.0 - spec.dropout),
            seed_lo: spec.seed as u32,
            seed_hi: (spec.seed >> 32) as u32,
            offset: spec.offset,
            ..Default::default()
        };
        let mut batches = Vec::with_capacity(b);
        for bi in 0..b {
            let mask = (0..tq * tk)
                .map(|e| {
                    let (i, j) = (e / tk, e % tk);
                    let open = |ids: &Option<Vec<u32>>, t: usize, at: usize| {
                        ids.as_ref().is_none_or(|ids| ids[bi * t + at] != 0)
                    };
                    let ok = open(&qids, tq, i) && open(&kids, tk, j) && (!spec.causal || j <= i);
                    if ok {
                        0.0
                    } else {
                        MASKED
                    }
                })
                .collect::<Vec<f32>>();
            let masked = mask.iter().any(|&m| m != 0.0);
            let keep: Vec<f32> = mask.iter().map(|&m| (m == 0.0) as u8 as f32).collect();
            let keep = self.constant(d.from_f32(&keep, &[tq, tk])?);
            let mask = self.constant(d.from_f32(&mask, &[tq, tk])?);
            let mut heads = Vec::with_capacity(h);
            for hi in 0..h {
                let qh = self.mul_scalar(&head(q, bi, hi)?, spec.scale)?;
                let mut s = self.matmul(&qh, &head(k, bi, hi)?, false, true)?;
                if masked {
                    s = self.add(&self.mul(&s, &keep)?, &mask)?;
                }
                let mut p = self.softmax(&s)?;
                if spec.dropout > 0.0 {
                    let row0 = ((bi * h + hi) * tq) as u32;
                    let f: Vec<f32> = (0..tq * tk)
                        .map(|e| drop.drop_factor(row0 + (e / tk) as u32, (e % tk) as u32))
                        .collect();
                    p = self.mul(&p, &self.constant(d.from_f32(&f, &[tq, tk])?))?;
                }
                let o = self.matmul(&p, &head(v, bi, hi)?, false, false)?;
                heads.push(self.reshape(&o, &[1, tq, 1, dv])?);
            }
            batches.push(self.concat(&heads.iter().collect::<Vec<_>>(), 2)?);
        }
        self.concat(&batches.iter().collect::<Vec<_>>(), 0)
    }
}
