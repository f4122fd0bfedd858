//! The GRU layer on the device (Keras's GRU, `reset_after = True`): one GEMM for the input
//! projection of every step and direction, one persistent dispatch for the recurrence
//! (shaders/gru.wgsl), and, backward, one persistent dispatch for backpropagation through time
//! followed by the weight-gradient GEMMs.
//!
//! Weights follow Keras's layout per direction, stacked on a leading direction axis D: kernel
//! (D, E, 3H), recurrent (D, H, 3H), bias (D, 2, 3H) (the input bias, then the recurrent one),
//! gates in the order z (update), r (reset), n (candidate). The initial state is h0 (D, B, H).

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::shape_str;
use crate::params::{GruParams, LstmParams, MatmulSpec, ReduceOp};
use crate::reference::{GruBackwardIn, GruBackwardOut, GruForwardOut, LstmRecurrence};
use crate::shaders::ShaderFamily;
use crate::{DType, Device, Error, LstmInputs, Result, Tensor};

/// One GRU layer's inputs: [`LstmInputs`]'s fields with the GRU's shapes (kernel (D, E, 3H),
/// recurrent (D, H, 3H), bias (D, 2, 3H), init h0 (D, B, H)).
pub type GruInputs<'a, T = Tensor> = LstmInputs<'a, T>;

/// What the forward pass keeps for the backward pass, and its outputs.
#[derive(Clone, Debug)]
pub struct GruState {
    /// (B, T, D*H): every step's hidden state, directions concatenated; only with
    /// `return_sequences`.
    pub y: Option<Tensor>,
    /// (B, D*H): each direction's state after its last processed step.
    pub h_last: Tensor,
    /// (D, B*T, 4H): gates z, r, n and the recurrent candidate part a_n, per step.
    pub cache: Tensor,
    /// (D, B*T, H): the hidden state each step started from.
    pub hprev: Tensor,
    /// The kernel parameters the forward ran with.
    pub params: GruParams,
}

/// Gradients of one GRU layer.
#[derive(Clone, Debug)]
pub struct GruGrads {
    /// (B, T, E), when asked for.
    pub dx: Option<Tensor>,
    /// (D, E, 3H).
    pub dkernel: Tensor,
    /// (D, H, 3H).
    pub drecurrent: Tensor,
    /// (D, 2, 3H).
    pub dbias: Tensor,
    /// (D, B, H): d(h0), when an initial state was given.
    pub dinit: Option<Tensor>,
}

/// Gradients reaching the layer's outputs; absent ones are zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct GruOutputGrads<'a> {
    /// (B, T, D*H): the gradient of the output sequence.
    pub dy: Option<&'a Tensor>,
    /// (B, D*H): the gradient of the last hidden states.
    pub dh_last: Option<&'a Tensor>,
}

/// Checks the shapes of a GRU call and derives the kernel params.
fn gru_params(
    op: &'static str,
    x: &[usize],
    kernel: &[usize],
    recurrent: &[usize],
    bias: &[usize],
) -> Result<GruParams> {
    let &[batch, steps, e] = x else {
        return Err(Error::shape(op, "x of shape [B, T, E]", shape_str(x)));
    };
    let (dirs, h3) = match *kernel {
        [dirs, ke, h3] if (1..=2).contains(&dirs) && ke == e && h3 % 3 == 0 && h3 > 0 => (dirs, h3),
        _ => {
            return Err(Error::shape(
                op,
                format!("kernel of shape [D, {e}, 3H] (D = 1, or 2 for bidirectional)"),
                shape_str(kernel),
            ))
        }
    };
    let hidden = h3 / 3;
    if recurrent != [dirs, hidden, h3] {
        return Err(Error::shape(
            op,
            format!("recurrent kernel of shape [{dirs}, {hidden}, {h3}]"),
            shape_str(recurrent),
        ));
    }
    if bias != [dirs, 2, h3] {
        return Err(Error::shape(
            op,
            format!("bias of shape [{dirs}, 2, {h3}] (input bias, then recurrent bias)"),
            shape_str(bias),
        ));
    }
    if batch == 0 || steps == 0 {
        return Err(Error::invalid(
            op,
            format!("empty input {x:?}: batch and steps must be at least 1"),
        ));
    }
    if hidden > GruParams::MAX_HIDDEN {
        return Err(Error::invalid(
            op,
            format!(
                "hidden size {hidden} is above the fused kernel's limit of {}; use the unfused \
                 GRU (kiln-graph's LstmPath::Unfused) for wider layers",
                GruParams::MAX_HIDDEN
            ),
        ));
    }
    // The saved buffer holds the cache (4H) and hprev (H) per row, the gradients 2 x 3H.
    if u32::try_from(dirs * batch * steps * 6 * hidden + 1024).is_err() {
        return Err(Error::invalid(
            op,
            format!("{x:?} with H = {hidden} is past u32 indexing"),
        ));
    }
    Ok(GruParams {
        batch: batch as u32,
        steps: steps as u32,
        hidden: hidden as u32,
        dirs: dirs as u32,
        rows: 1,
        ..Default::default()
    })
}

/// An element offset as the kernel's u32.
fn u32_at(op: &'static str, at: usize) -> Result<u32> {
    u32::try_from(at)
        .map_err(|_| Error::invalid(op, format!("an offset of {at} is past u32 indexing")))
}

impl Device {
    /// Whether the fused GRU kernels run here for `hidden` units: the LSTM's conditions (they
    /// need the same limits, WebGPU's defaults).
    pub fn gru_fused_supported(&self, hidden: usize) -> bool {
        self.lstm_fused_supported(hidden)
    }

    fn check_gru_extras(&self, op: &'static str, p: &GruParams, inputs: &GruInputs) -> Result<()> {
        let (b, t, h, d) = p.dims();
        let want = format!("initial state h0 of shape [{d}, {b}, {h}]");
        self.check_recurrent_extras(op, inputs, (&[d, b, h], &want), (b, t))
    }

    /// The recurrence alone, given the input projection xproj (D, B*T, 3H) without bias. The
    /// mask carries h through a masked step; its output is that h for one direction (Keras's
    /// GRU) and zero for two (Keras's Bidirectional, `zero_output_for_mask`).
    pub fn gru_recurrence(&self, xproj: &Tensor, inputs: &GruInputs) -> Result<GruState> {
        let op = "gru_recurrence";
        let (recurrent, bias) = (inputs.recurrent, inputs.bias);
        for t in [xproj, recurrent, bias] {
            self.check(op, t)?;
        }
        let h3 = recurrent.shape().last().copied().unwrap_or(0);
        if h3 / 3 <= GruParams::MAX_HIDDEN && !self.gru_fused_supported(h3 / 3) {
            return Err(Error::invalid(
                op,
                "this adapter lacks what the fused GRU needs (8 storage buffers per stage, 16 KiB \
                 of workgroup memory, 256 threads per workgroup); use the unfused GRU \
                 (LstmPath::Unfused)",
            ));
        }
        let (b, t) = match inputs.x.shape() {
            &[b, t, ..] => (b, t),
            other => return Err(Error::shape(op, "x of shape [B, T, E]", shape_str(other))),
        };
        let dirs = recurrent.shape().first().copied().unwrap_or(0);
        let mut p = gru_params(
            op,
            &[b, t, 1],
            &[dirs, 1, h3],
            recurrent.shape(),
            bias.shape(),
        )?;
        if xproj.shape() != [dirs, b * t, h3] {
            return Err(Error::shape(
                op,
                format!("xproj of shape [{dirs}, {}, {h3}]", b * t),
                shape_str(xproj.shape()),
            ));
        }
        self.check_gru_extras(op, &p, inputs)?;
        p.has_init = inputs.init.is_some() as u32;
        p.has_mask = inputs.mask.is_some() as u32;
        p.write_seq = inputs.return_sequences as u32;
        p.zero_masked = (inputs.mask.is_some() && inputs.return_sequences && dirs == 2) as u32;
        match self.backend() {
            Backend::Cpu => self.gru_recurrence_host(p, xproj, inputs),
            Backend::Gpu(g) => self.gru_recurrence_gpu(g, p, xproj, inputs),
        }
    }

    /// [`Device::gru_recurrence`] on the CPU device.
    fn gru_recurrence_host(
        &self,
        p: GruParams,
        xproj: &Tensor,
        inputs: &GruInputs,
    ) -> Result<GruState> {
        let _span = self.span("gru_forward");
        let (b, t, h, d) = p.dims();
        let mut cache = self.host_zeros(d * b * t * 4 * h);
        let mut hprev = self.host_zeros(d * b * t * h);
        let mut y = inputs
            .return_sequences
            .then(|| self.host_zeros(b * t * d * h));
        let mut hlast = self.host_zeros(b * d * h);
        let mask = inputs.mask.map(|i| self.host_u32(i));
        let run = host_kernel!(self, gru_forward);
        self.host_read_all(
            [xproj, inputs.bias, inputs.recurrent],
            [inputs.init],
            |[xproj, bias, recurrent], [init]| {
                run(
                    &p,
                    xproj,
                    bias,
                    LstmRecurrence {
                        recurrent,
                        init,
                        mask: mask.as_deref(),
                    },
                    GruForwardOut {
                        cache: &mut cache,
                        hprev: &mut hprev,
                        y: y.as_deref_mut(),
                        hlast: &mut hlast,
                    },
                )
            },
        );
        self.count_dispatch();
        Ok(GruState {
            y: y.map(|y| self.host_tensor(y, &[b, t, d * h])),
            h_last: self.host_tensor(hlast, &[b, d * h]),
            cache: self.host_tensor(cache, &[d, b * t, 4 * h]),
            hprev: self.host_tensor(hprev, &[d, b * t, h]),
            params: p,
        })
    }

    /// [`Device::gru_recurrence`] on an adapter: one persistent dispatch.
    fn gru_recurrence_gpu(
        &self,
        g: &crate::gpu::GpuContext,
        mut p: GruParams,
        xproj: &Tensor,
        inputs: &GruInputs,
    ) -> Result<GruState> {
        let op = "gru_recurrence";
        let (b, t, h, d) = p.dims();
        let (saved, views) = self.alloc_packed(op, &[&[d, b * t, 4 * h], &[d, b * t, h]])?;
        p.hprev_at = u32_at(op, views[1].offset - saved.offset)?;
        let y_shape = if inputs.return_sequences {
            vec![b, t, d * h]
        } else {
            // Never written (write_seq is 0); binding 7 needs a writable buffer.
            vec![1]
        };
        let y = self.alloc(op, DType::F32, &y_shape)?;
        let last = self.alloc(op, DType::F32, &[b, d * h])?;
        let overrides = gru_launch(g, &mut p);
        g.launch(Launch {
            family: ShaderFamily::Gru,
            entry: "gru_forward",
            overrides: &overrides,
            params: bytemuck::bytes_of(&p),
            bindings: &[
                (1, xproj),
                (2, inputs.recurrent),
                (3, inputs.bias),
                (4, inputs.init.unwrap_or(xproj)),
                (5, inputs.mask.unwrap_or(xproj)),
                (6, &saved),
                (7, &y),
                (8, &last),
            ],
            workgroups: p.workgroups(),
        })?;
        let [cache, hprev] = <[Tensor; 2]>::try_from(views).expect("two views");
        Ok(GruState {
            y: inputs.return_sequences.then_some(y),
            h_last: last,
            cache,
            hprev,
            params: p,
        })
    }

    /// Backpropagation through time over the recurrence: returns dx (D, B*T, 3H), the gradient
    /// of the input part (xproj plus the input bias), da (D, B*T, 3H), the gradient of the
    /// recurrent part (h . recurrent plus its bias), and d(h0) (D, B, H). `inputs` are the
    /// forward's.
    pub fn gru_recurrence_backward(
        &self,
        inputs: &GruInputs,
        state: &GruState,
        grads: GruOutputGrads<'_>,
    ) -> Result<[Tensor; 3]> {
        let op = "gru_recurrence_backward";
        let mut p = state.params;
        let (b, t, h, d) = p.dims();
        let recurrent = inputs.recurrent;
        self.check(op, recurrent)?;
        if recurrent.shape() != [d, h, 3 * h] {
            return Err(Error::shape(
                op,
                format!("recurrent kernel of shape [{d}, {h}, {}]", 3 * h),
                shape_str(recurrent.shape()),
            ));
        }
        self.check_gru_extras(op, &p, inputs)?;
        for (name, g, want) in [
            ("dy", grads.dy, vec![b, t, d * h]),
            ("dh_last", grads.dh_last, vec![b, d * h]),
        ] {
            if let Some(g) = g {
                self.check(op, g)?;
                if g.shape() != want.as_slice() {
                    return Err(Error::shape(
                        op,
                        format!("{name} of shape {want:?}"),
                        shape_str(g.shape()),
                    ));
                }
            }
        }
        p.has_mask = inputs.mask.is_some() as u32;
        p.has_dy = grads.dy.is_some() as u32;
        p.has_dh_last = grads.dh_last.is_some() as u32;
        match self.backend() {
            Backend::Cpu => self.gru_backward_host(p, inputs, state, grads),
            Backend::Gpu(g) => self.gru_backward_gpu(g, p, inputs, state, grads),
        }
    }

    /// [`Device::gru_recurrence_backward`] on the CPU device.
    fn gru_backward_host(
        &self,
        p: GruParams,
        inputs: &GruInputs,
        state: &GruState,
        grads: GruOutputGrads<'_>,
    ) -> Result<[Tensor; 3]> {
        let _span = self.span("gru_backward");
        let (b, t, h, d) = p.dims();
        let mut dx = self.host_zeros(d * b * t * 3 * h);
        let mut da = self.host_zeros(d * b * t * 3 * h);
        let mut carry = self.host_zeros(d * b * h);
        let mask = inputs.mask.map(|i| self.host_u32(i));
        let run = host_kernel!(self, gru_backward);
        self.host_read_all(
            [inputs.recurrent, &state.cache, &state.hprev],
            [grads.dy, grads.dh_last],
            |[recurrent, cache, hprev], [dy, dhlast]| {
                run(
                    &p,
                    LstmRecurrence {
                        recurrent,
                        init: None,
                        mask: mask.as_deref(),
                    },
                    GruBackwardIn {
                        cache,
                        hprev,
                        dy,
                        dhlast,
                    },
                    GruBackwardOut {
                        dx: &mut dx,
                        da: &mut da,
                        carry: &mut carry,
                    },
                )
            },
        );
        self.count_dispatch();
        Ok([
            self.host_tensor(dx, &[d, b * t, 3 * h]),
            self.host_tensor(da, &[d, b * t, 3 * h]),
            self.host_tensor(carry, &[d, b, h]),
        ])
    }

    /// [`Device::gru_recurrence_backward`] on an adapter: one persistent dispatch.
    fn gru_backward_gpu(
        &self,
        g: &crate::gpu::GpuContext,
        mut p: GruParams,
        inputs: &GruInputs,
        state: &GruState,
        grads: GruOutputGrads<'_>,
    ) -> Result<[Tensor; 3]> {
        let op = "gru_recurrence_backward";
        let (b, t, h, d) = p.dims();
        let gate_grads = [d, b * t, 3 * h];
        let (out, views) = self.alloc_packed(op, &[&gate_grads, &gate_grads, &[d, b, h]])?;
        p.da_at = u32_at(op, views[1].offset - out.offset)?;
        p.carry_at = u32_at(op, views[2].offset - out.offset)?;
        let stand_in = inputs.recurrent;
        let overrides = gru_launch(g, &mut p);
        g.launch(Launch {
            family: ShaderFamily::Gru,
            entry: "gru_backward",
            overrides: &overrides,
            params: bytemuck::bytes_of(&p),
            bindings: &[
                (2, inputs.recurrent),
                (5, inputs.mask.unwrap_or(stand_in)),
                (9, &state.cache),
                (10, grads.dy.unwrap_or(stand_in)),
                (11, grads.dh_last.unwrap_or(stand_in)),
                (12, &state.hprev),
                (13, &out),
            ],
            workgroups: p.workgroups(),
        })?;
        Ok(<[Tensor; 3]>::try_from(views).expect("three views"))
    }

    /// A whole GRU layer, forward: xproj = x . kernel (one batched GEMM over directions), then
    /// the fused recurrence. See the module doc for the weights.
    pub fn gru_forward(&self, inputs: GruInputs) -> Result<GruState> {
        let op = "gru_forward";
        let GruInputs {
            x,
            kernel,
            recurrent,
            bias,
            ..
        } = inputs;
        for t in [x, kernel, recurrent, bias] {
            self.check(op, t)?;
        }
        gru_params(
            op,
            x.shape(),
            kernel.shape(),
            recurrent.shape(),
            bias.shape(),
        )?;
        let (b, t, e) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let xproj = self.matmul(
            &x.reshape(&[b * t, e])?,
            kernel,
            None,
            MatmulSpec::default(),
        )?;
        self.gru_recurrence(&xproj, &inputs)
    }

    /// A whole GRU layer, backward: the fused BPTT dispatch, then dkernel = x^T dx_gates,
    /// drecurrent = hprev^T da (batched GEMMs over directions), dbias = the column sums of both,
    /// and, with `need_dx`, dx = the sum over directions of dx_gates . kernel^T.
    pub fn gru_backward(
        &self,
        inputs: GruInputs,
        state: &GruState,
        grads: GruOutputGrads<'_>,
        need_dx: bool,
    ) -> Result<GruGrads> {
        let op = "gru_backward";
        let (x, kernel) = (inputs.x, inputs.kernel);
        self.check(op, x)?;
        self.check(op, kernel)?;
        let (b, t, h, d) = state.params.dims();
        let e = x.shape().last().copied().unwrap_or(0);
        if x.shape() != [b, t, e] || kernel.shape() != [d, e, 3 * h] {
            return Err(Error::shape(
                op,
                format!(
                    "x [{b}, {t}, E] and kernel [{d}, E, {}] as in the forward pass",
                    3 * h
                ),
                format!("x {:?}, kernel {:?}", x.shape(), kernel.shape()),
            ));
        }
        let [dgates, da, carry] = self.gru_recurrence_backward(&inputs, state, grads)?;
        let (dkernel, dx) = self.input_side_grads(x, kernel, &dgates, need_dx)?;
        let ta = MatmulSpec {
            trans_a: true,
            ..Default::default()
        };
        let drecurrent = self.matmul(&state.hprev, &da, None, ta)?;
        let dbias = self.zeros(&[d, 2, 3 * h])?;
        for (part, g) in [&dgates, &da].into_iter().enumerate() {
            let sums = self.reduce(ReduceOp::Sum, g, 1)?;
            self.slice_assign(&dbias, 1, part, &sums.reshape(&[d, 1, 3 * h])?, false)?;
        }
        Ok(GruGrads {
            dx,
            dkernel,
            drecurrent,
            dbias,
            dinit: inputs.init.map(|_| carry),
        })
    }
}

/// Sets `p.rows` for this adapter and returns the override constants: the LSTM's rules for rows
/// per workgroup, hidden units per thread and threads (the same work split, not tuned apart).
fn gru_launch(g: &crate::gpu::GpuContext, p: &mut GruParams) -> [(&'static str, f64); 3] {
    let cpu_adapter = crate::adapter::is_software(&g.info);
    let (b, _, h, d) = p.dims();
    p.rows = LstmParams::rows_for(b, h, d, cpu_adapter) as u32;
    let units = LstmParams::units_for(h, cpu_adapter);
    [
        ("ROWS", p.rows as f64),
        ("UNITS", units as f64),
        ("WG", LstmParams::threads_for(h, units, cpu_adapter) as f64),
    ]
}
