//! Fused scaled dot-product attention (shaders/attention.wgsl): the forward pass in one dispatch,
//! the backward in two, and no Tq x Tk matrix stored by either. See the reference for the spec.
//! Two kernel families give the same bits: blocks (GPUs) and rows (CPU adapters); the tuner
//! picks per adapter (`Device::attention_kernels`).

use crate::device::Backend;
use crate::gpu::tune::{attention_class, AttentionKernels};
use crate::gpu::Launch;
use crate::params::AttentionParams;
use crate::reference::{AttentionGrads, AttentionHost};
use crate::shaders::ShaderFamily;
use crate::{DType, Device, Error, Result, Tensor};

use super::shape_str;

/// Scale, masks and dropout of an attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    /// Scores are `scale * q . k` (1 / sqrt(Dk) in the usual attention).
    pub scale: f32,
    /// Query i attends only to keys j <= i (Keras's `use_causal_mask`).
    pub causal: bool,
    /// The probability of dropping an attention weight (0 for none).
    pub dropout: f32,
    /// Dropout key.
    pub seed: u64,
    /// Dropout counter of the call's first row; a call uses B * H * Tq counters.
    pub offset: u32,
}

impl AttentionSpec {
    /// Non-causal attention with no dropout, scale 1 / sqrt(`head_dim`).
    pub fn for_head(head_dim: usize) -> AttentionSpec {
        AttentionSpec {
            scale: 1.0 / (head_dim.max(1) as f32).sqrt(),
            causal: false,
            dropout: 0.0,
            seed: 0,
            offset: 0,
        }
    }

    /// The same, causal or not.
    pub fn causal(self, causal: bool) -> AttentionSpec {
        AttentionSpec { causal, ..self }
    }

    /// The same, with attention dropout at `rate` from (seed, offset).
    pub fn dropout(self, rate: f32, seed: u64, offset: u32) -> AttentionSpec {
        AttentionSpec {
            dropout: rate,
            seed,
            offset,
            ..self
        }
    }
}

/// What attention reads: q (B, Tq, H, Dk), k (B, Tk, H, Dk), v (B, Tk, H, Dv), heads interleaved
/// as a projection (B, T, H * D) lays them out, and optional ids (u32; 0 is padding, as an
/// embedding's `mask_zero` takes it): a padded query attends to no key, a padded key is attended
/// by no query. A query left with no key weighs every key 1 / Tk, as Keras's masked softmax.
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a> {
    /// Queries (B, Tq, H, Dk).
    pub q: &'a Tensor,
    /// Keys (B, Tk, H, Dk).
    pub k: &'a Tensor,
    /// Values (B, Tk, H, Dv).
    pub v: &'a Tensor,
    /// Query ids (B, Tq).
    pub query_ids: Option<&'a Tensor>,
    /// Key ids (B, Tk).
    pub key_ids: Option<&'a Tensor>,
}

impl<'a> AttentionInputs<'a> {
    /// Unmasked attention of q over (k, v).
    pub fn new(q: &'a Tensor, k: &'a Tensor, v: &'a Tensor) -> Self {
        AttentionInputs {
            q,
            k,
            v,
            query_ids: None,
            key_ids: None,
        }
    }

    /// Masks the queries whose id is 0.
    pub fn query_ids(self, ids: Option<&'a Tensor>) -> Self {
        AttentionInputs {
            query_ids: ids,
            ..self
        }
    }

    /// Masks the keys whose id is 0.
    pub fn key_ids(self, ids: Option<&'a Tensor>) -> Self {
        AttentionInputs {
            key_ids: ids,
            ..self
        }
    }
}

/// Attention's forward results: the output (B, Tq, H, Dv) and the log-sum-exp of each row's
/// scores (B, H, Tq), which the backward pass recomputes the weights from (`f32::MIN` for a
/// query with no key to attend to).
#[derive(Clone, Debug)]
pub struct AttentionOut {
    /// (B, Tq, H, Dv).
    pub out: Tensor,
    /// (B, H, Tq).
    pub lse: Tensor,
}

/// Attention's gradients, shaped as q, k and v.
#[derive(Clone, Debug)]
pub struct AttentionGradients {
    /// dL/dq.
    pub dq: Tensor,
    /// dL/dk.
    pub dk: Tensor,
    /// dL/dv.
    pub dv: Tensor,
}

impl Device {
    /// Scaled dot-product attention over heads, fused: softmax(scale q k^T + mask) v with
    /// dropout on the weights, in one dispatch that keeps only the output and the log-sum-exp
    /// per row. Head widths up to [`AttentionParams::MAX_HEAD_DIM`].
    pub fn attention(&self, x: &AttentionInputs, spec: &AttentionSpec) -> Result<AttentionOut> {
        let op = "attention";
        let p = self.attention_params(op, x, spec)?;
        let [b, tq, h, dv] = [p.batch, p.tq, p.heads, p.dv].map(|n| n as usize);
        let o_shape = [b, tq, h, dv];
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("attention_forward");
                let (mut o, mut lse) = (
                    self.host_zeros(b * tq * h * dv),
                    self.host_zeros(b * h * tq),
                );
                let run = host_kernel!(self, attention_forward);
                self.with_host_inputs(x, |host| run(&p, host, &mut o, &mut lse));
                self.count_dispatch();
                Ok(AttentionOut {
                    out: self.host_tensor(o, &o_shape),
                    lse: self.host_tensor(lse, &[b, h, tq]),
                })
            }
            Backend::Gpu(g) => {
                let mut p = p;
                let (flat, views) = self.alloc_packed(op, &[&o_shape, &[b, h, tq]])?;
                p.second_at = packed_offset(op, &flat, &views[1])?;
                // o_in (8) and dout (10) are the backward's; the forward binds placeholders.
                let bindings = [
                    (1, x.q),
                    (2, x.k),
                    (3, x.v),
                    (4, x.query_ids.unwrap_or(x.q)),
                    (5, x.key_ids.unwrap_or(x.q)),
                    (6, &flat),
                    (8, x.q),
                    (10, x.q),
                ];
                let kernels = self.attention_kernels(g, &p, &bindings)?;
                launch_forward(g, &p, kernels, &bindings)?;
                let [out, lse] = <[Tensor; 2]>::try_from(views).expect("two views");
                Ok(AttentionOut { out, lse })
            }
        }
    }

    /// The gradients of [`Device::attention`] from its inputs, its results and the output's
    /// gradient `dout` (B, Tq, H, Dv): two dispatches (dq; dk and dv), each recomputing the
    /// weights from the log-sum-exp. `spec` must be the forward pass's (the same dropout).
    pub fn attention_backward(
        &self,
        x: &AttentionInputs,
        spec: &AttentionSpec,
        fwd: &AttentionOut,
        dout: &Tensor,
    ) -> Result<AttentionGradients> {
        let op = "attention_backward";
        let p = self.attention_params(op, x, spec)?;
        let [b, tq, h, dv] = [p.batch, p.tq, p.heads, p.dv].map(|n| n as usize);
        for (arg, t, want) in [
            ("output", &fwd.out, vec![b, tq, h, dv]),
            ("output gradient", dout, vec![b, tq, h, dv]),
            ("log-sum-exp", &fwd.lse, vec![b, h, tq]),
        ] {
            self.check(op, t)?;
            if t.shape() != want.as_slice() {
                return Err(Error::shape(
                    op,
                    format!("{arg} of shape {want:?}"),
                    shape_str(t.shape()),
                ));
            }
        }
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("attention_backward");
                let mut dq = self.host_zeros(x.q.len());
                let mut dk = self.host_zeros(x.k.len());
                let mut dvv = self.host_zeros(x.v.len());
                let (o, lse, dout_h) = (
                    self.host_f32(&fwd.out),
                    self.host_f32(&fwd.lse),
                    self.host_f32(dout),
                );
                let run = host_kernel!(self, attention_backward);
                self.with_host_inputs(x, |host| {
                    let grads = AttentionGrads {
                        dq: &mut dq,
                        dk: &mut dk,
                        dv: &mut dvv,
                    };
                    run(&p, host, &o, &lse, &dout_h, grads)
                });
                self.count_dispatch();
                Ok(AttentionGradients {
                    dq: self.host_tensor(dq, x.q.shape()),
                    dk: self.host_tensor(dk, x.k.shape()),
                    dv: self.host_tensor(dvv, x.v.shape()),
                })
            }
            Backend::Gpu(g) => {
                // dq, then D = dO . o per row (B, H, Tq), which attention_dkv reads in o's place.
                let (dq_flat, dq_views) = self.alloc_packed(op, &[x.q.shape(), &[b, h, tq]])?;
                let (flat, views) = self.alloc_packed(op, &[x.k.shape(), x.v.shape()])?;
                let kids = x.key_ids.unwrap_or(x.q);
                let kernels = g
                    .tuner
                    .known_attention(&attention_class(&p))
                    .unwrap_or_else(|| AttentionKernels::rule(g));
                let launch = |pass: Pass, out: &Tensor, second: &Tensor, o_or_d: &Tensor| {
                    let (entry, workgroups) = pass.launch(&p, kernels);
                    let mut p = p;
                    p.second_at = packed_offset(op, out, second)?;
                    g.launch(Launch {
                        family: ShaderFamily::Attention,
                        entry,
                        overrides: &[],
                        params: bytemuck::bytes_of(&p),
                        bindings: &[
                            (1, x.q),
                            (2, x.k),
                            (3, x.v),
                            (5, kids),
                            (6, out),
                            (8, o_or_d),
                            (9, &fwd.lse),
                            (10, dout),
                        ],
                        workgroups,
                    })
                };
                let d_rows = &dq_views[1];
                launch(Pass::Dq, &dq_flat, d_rows, &fwd.out)?;
                launch(Pass::Dkv, &flat, &views[1], d_rows)?;
                let dq = dq_views[0].clone();
                let [dk, dv] = <[Tensor; 2]>::try_from(views).expect("two views");
                Ok(AttentionGradients { dq, dk, dv })
            }
        }
    }

    /// The kernel family for this attention: the adapter's tuned choice for its class, else
    /// (when tuning measures) the faster forward pass of the two on these buffers (the real
    /// launch overwrites what they wrote), else the rule: rows on CPU adapters, blocks on GPUs.
    /// Both give the same bits. Measuring is not counted and not profiled, as for the matmul.
    fn attention_kernels(
        &self,
        g: &crate::gpu::GpuContext,
        p: &AttentionParams,
        bindings: &[(u32, &Tensor)],
    ) -> Result<AttentionKernels> {
        let class = attention_class(p);
        if let Some(k) = g.tuner.known_attention(&class) {
            return Ok(k);
        }
        if !g.tuner.measures() || !AttentionKernels::rows_fit(g) {
            return Ok(AttentionKernels::rule(g));
        }
        let candidates = [AttentionKernels::Blocks, AttentionKernels::Rows];
        let best = crate::gpu::tune::unseen(g, || {
            // A CPU adapter (llvmpipe) compiles a pipeline at its first dispatch: one run each
            // before timing.
            for k in candidates {
                let (entry, _) = Pass::Forward.launch(p, k);
                self.compile(ShaderFamily::Attention, entry, &[])?;
                launch_forward(g, p, k, bindings)?;
            }
            crate::gpu::tune::fastest(g, &candidates, |k| launch_forward(g, p, k, bindings))
        })?;
        g.tuner.record_attention(&class, best);
        Ok(best)
    }

    /// Runs `f` on host copies of attention's inputs (CPU device).
    fn with_host_inputs<R>(&self, x: &AttentionInputs, f: impl FnOnce(&AttentionHost) -> R) -> R {
        let (q, k, v) = (self.host_f32(x.q), self.host_f32(x.k), self.host_f32(x.v));
        let qids = x.query_ids.map(|t| self.host_u32(t));
        let kids = x.key_ids.map(|t| self.host_u32(t));
        f(&AttentionHost {
            q: &q,
            k: &k,
            v: &v,
            qids: qids.as_deref(),
            kids: kids.as_deref(),
        })
    }

    /// Checks attention's inputs and spec and gives the kernel's parameters.
    fn attention_params(
        &self,
        op: &'static str,
        x: &AttentionInputs,
        spec: &AttentionSpec,
    ) -> Result<AttentionParams> {
        for t in [x.q, x.k, x.v] {
            self.check(op, t)?;
            if t.shape().len() != 4 {
                return Err(Error::shape(
                    op,
                    "queries, keys and values of rank 4 (batch, steps, heads, head width)",
                    shape_str(t.shape()),
                ));
            }
        }
        let (qs, ks, vs) = (x.q.shape(), x.k.shape(), x.v.shape());
        let (b, tq, h, dk) = (qs[0], qs[1], qs[2], qs[3]);
        let (tk, dv) = (ks[1], vs[3]);
        if ks != [b, tk, h, dk] || vs != [b, tk, h, dv] {
            return Err(Error::shape(
                op,
                format!(
                    "keys [{b}, Tk, {h}, {dk}] and values [{b}, Tk, {h}, Dv] for queries {qs:?}"
                ),
                format!("keys {ks:?}, values {vs:?}"),
            ));
        }
        let max = AttentionParams::MAX_HEAD_DIM;
        if dk == 0 || dv == 0 || dk > max || dv > max {
            return Err(Error::invalid(
                op,
                format!("head widths {dk} (queries, keys) and {dv} (values) must be in 1..={max}; split the model into more heads"),
            ));
        }
        if b == 0 || tq == 0 || tk == 0 || h == 0 {
            return Err(Error::shape(
                op,
                "no empty axis",
                format!("queries {qs:?}, keys {ks:?}"),
            ));
        }
        for (arg, ids, steps) in [("query ids", x.query_ids, tq), ("key ids", x.key_ids, tk)] {
            let Some(ids) = ids else { continue };
            self.check_device(op, ids)?;
            if ids.dtype() != DType::U32 {
                return Err(Error::DType {
                    op,
                    arg,
                    expected: DType::U32,
                    got: ids.dtype(),
                });
            }
            if ids.shape() != [b, steps] {
                return Err(Error::shape(
                    op,
                    format!("{arg} of shape [{b}, {steps}]"),
                    shape_str(ids.shape()),
                ));
            }
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(Error::invalid(
                op,
                format!("dropout {} must be in [0, 1)", spec.dropout),
            ));
        }
        if !spec.scale.is_finite() {
            return Err(Error::invalid(
                op,
                format!("scale {} must be finite", spec.scale),
            ));
        }
        let too_big = [b * tq * h * dk.max(dv), b * tk * h * dk.max(dv)]
            .iter()
            .any(|&n| n >= u32::MAX as usize);
        if too_big {
            return Err(Error::invalid(op, "tensors past 2^32 elements"));
        }
        let keep = 1.0 - spec.dropout;
        Ok(AttentionParams {
            batch: b as u32,
            heads: h as u32,
            tq: tq as u32,
            tk: tk as u32,
            dk: dk as u32,
            dv: dv as u32,
            causal: spec.causal as u32,
            has_qmask: x.query_ids.is_some() as u32,
            has_kmask: x.key_ids.is_some() as u32,
            scale: spec.scale,
            keep_prob: keep,
            drop_scale: 1.0 / keep,
            seed_lo: spec.seed as u32,
            seed_hi: (spec.seed >> 32) as u32,
            offset: spec.offset,
            second_at: 0,
        })
    }
}

/// Where `second` starts in `flat`, its packed buffer, in elements (a kernel's `second_at`).
fn packed_offset(op: &'static str, flat: &Tensor, second: &Tensor) -> Result<u32> {
    u32::try_from(second.offset - flat.offset)
        .map_err(|_| Error::invalid(op, "outputs past 2^32 elements"))
}

/// The three attention passes.
#[derive(Clone, Copy)]
enum Pass {
    Forward,
    Dq,
    Dkv,
}

impl Pass {
    /// The entry point and workgroups of this pass in `kernels`' family.
    fn launch(self, p: &AttentionParams, kernels: AttentionKernels) -> (&'static str, u64) {
        match kernels {
            AttentionKernels::Blocks => match self {
                Pass::Forward => ("attention_forward", p.workgroups(p.tq, p.dv)),
                Pass::Dq => ("attention_dq", p.workgroups(p.tq, p.dk)),
                Pass::Dkv => ("attention_dkv", p.workgroups(p.tk, p.dk.max(p.dv))),
            },
            AttentionKernels::Rows => {
                let entries = match p.row_variant().0 {
                    32 => [
                        "attention_rows_forward_w32",
                        "attention_rows_dq_w32",
                        "attention_rows_dkv_w32",
                    ],
                    64 => [
                        "attention_rows_forward_w64",
                        "attention_rows_dq_w64",
                        "attention_rows_dkv_w64",
                    ],
                    _ => [
                        "attention_rows_forward_w128",
                        "attention_rows_dq_w128",
                        "attention_rows_dkv_w128",
                    ],
                };
                match self {
                    Pass::Forward => (entries[0], p.row_workgroups(0, p.tq)),
                    Pass::Dq => (entries[1], p.row_workgroups(1, p.tq)),
                    Pass::Dkv => (entries[2], p.row_workgroups(2, p.tk)),
                }
            }
        }
    }
}

impl AttentionKernels {
    /// Without a tuned choice: rows on CPU adapters, blocks on GPUs.
    fn rule(g: &crate::gpu::GpuContext) -> AttentionKernels {
        if crate::adapter::is_software(&g.info) && Self::rows_fit(g) {
            AttentionKernels::Rows
        } else {
            AttentionKernels::Blocks
        }
    }

    /// Whether the row kernels are worth trying here: not through wgpu's GL backend, where
    /// Mesa's GLSL compiler takes many minutes over their unrolled bodies (the adapter tests
    /// ran past 25 minutes on llvmpipe's GL against 6 on its Vulkan driver).
    fn rows_fit(g: &crate::gpu::GpuContext) -> bool {
        g.info.backend != wgpu::Backend::Gl
    }
}

/// Records the forward pass in `kernels`' family.
fn launch_forward(
    g: &crate::gpu::GpuContext,
    p: &AttentionParams,
    kernels: AttentionKernels,
    bindings: &[(u32, &Tensor)],
) -> Result<()> {
    let (entry, workgroups) = Pass::Forward.launch(p, kernels);
    g.launch(Launch {
        family: ShaderFamily::Attention,
        entry,
        overrides: &[],
        params: bytemuck::bytes_of(p),
        bindings,
        workgroups,
    })
}
