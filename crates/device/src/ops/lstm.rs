//! The LSTM layer on the device: one GEMM for the input projection of every step and direction,
//! one persistent dispatch for the recurrence (shaders/lstm.wgsl), and, backward, one persistent
//! dispatch for backpropagation through time followed by the weight-gradient GEMMs.
//!
//! Weights follow Keras's layout per direction, stacked on a leading direction axis D (1, or 2 for
//! a bidirectional layer with 0 = forward, 1 = backward): kernel (D, E, 4H), recurrent (D, H, 4H),
//! bias (D, 4H), gates in the order i, f, g (candidate), o.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::shape_str;
use crate::params::{LstmParams, MatmulSpec, ReduceOp};
use crate::reference::{LstmBackwardIn, LstmBackwardOut, LstmForwardOut, LstmRecurrence};
use crate::shaders::ShaderFamily;
use crate::{DType, Device, Error, Result, Tensor};

/// What the forward pass keeps for the backward pass, and its outputs.
#[derive(Clone, Debug)]
pub struct LstmState {
    /// (B, T, D*H): every step's hidden state, directions concatenated; only with
    /// `return_sequences`.
    pub y: Option<Tensor>,
    /// (B, D*H): each direction's state after its last processed step (forward: t = T-1,
    /// backward: t = 0), as Keras's Bidirectional returns it.
    pub h_last: Tensor,
    /// (B, D*H): the matching cell states.
    pub c_last: Tensor,
    /// (D, B*T, 5H): activated gates i, f, g, o and the cell state, per step.
    pub cache: Tensor,
    /// (D, B*T, H): the hidden state each step started from.
    pub hprev: Tensor,
    /// The kernel parameters the forward ran with (the backward takes the same).
    pub params: LstmParams,
}

/// Gradients of one LSTM layer.
#[derive(Clone, Debug)]
pub struct LstmGrads {
    /// (B, T, E), when asked for.
    pub dx: Option<Tensor>,
    /// (D, E, 4H): the input kernel's gradient.
    pub dkernel: Tensor,
    /// (D, H, 4H): the recurrent kernel's gradient.
    pub drecurrent: Tensor,
    /// (D, 4H): the bias's gradient.
    pub dbias: Tensor,
    /// (2, D, B, H): d(h0) then d(c0), when an initial state was given.
    pub dinit: Option<Tensor>,
}

/// Gradients reaching the layer's outputs; absent ones are zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct LstmOutputGrads<'a> {
    /// (B, T, D*H): the gradient of the output sequence.
    pub dy: Option<&'a Tensor>,
    /// (B, D*H): the gradient of the last hidden states.
    pub dh_last: Option<&'a Tensor>,
    /// (B, D*H): the gradient of the last cell states.
    pub dc_last: Option<&'a Tensor>,
}

/// One LSTM layer's inputs, forward and backward: the input sequence, the weights (Keras's
/// layout stacked over directions D), the initial state and the mask. `T` is the device's
/// [`Tensor`] here, and kiln-graph's tape variable (`LstmVars`) above.
#[derive(Debug)]
pub struct LstmInputs<'a, T = Tensor> {
    /// (B, T, E): the input sequence.
    pub x: &'a T,
    /// (D, E, 4H): the input kernel.
    pub kernel: &'a T,
    /// (D, H, 4H): the recurrent kernel.
    pub recurrent: &'a T,
    /// (D, 4H): the bias.
    pub bias: &'a T,
    /// (2, D, B, H): h0 then c0; zeros when None.
    pub init: Option<&'a T>,
    /// (B, T) u32: the steps whose id is 0 are masked (Keras's `mask_zero`); none when None.
    pub mask: Option<&'a Tensor>,
    /// Whether the whole output sequence (B, T, D*H) is returned, or only the last states.
    pub return_sequences: bool,
}

impl<T> Clone for LstmInputs<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for LstmInputs<'_, T> {}

impl<'a, T> LstmInputs<'a, T> {
    /// The sequence and weights, from zero states, unmasked, returning the last states only.
    pub fn new(x: &'a T, kernel: &'a T, recurrent: &'a T, bias: &'a T) -> Self {
        LstmInputs {
            x,
            kernel,
            recurrent,
            bias,
            init: None,
            mask: None,
            return_sequences: false,
        }
    }

    /// Starts from `init` (2, D, B, H): h0 then c0.
    pub fn init(mut self, init: Option<&'a T>) -> Self {
        self.init = init;
        self
    }

    /// Masks the steps whose id in `mask` (B, T) is 0.
    pub fn mask(mut self, mask: Option<&'a Tensor>) -> Self {
        self.mask = mask;
        self
    }

    /// Returns the whole output sequence.
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }
}

/// How an LSTM layer runs: kiln-graph's `Tape::lstm` asks its tape, or the device's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LstmPath {
    /// The persistent WGSL kernels (hidden sizes up to [`LstmParams::MAX_HIDDEN`]; wider layers,
    /// and adapters short of what the kernels need, run unfused).
    #[default]
    Fused,
    /// One matmul and a dozen elementwise ops per timestep and direction.
    Unfused,
}

/// The shapes of the forward pass's outputs: cache (D, B*T, 5H), hprev (D, B*T, H), y (B, T, D*H)
/// and the last states (B, D*H).
fn state_shapes(p: &LstmParams) -> [Vec<usize>; 4] {
    let (b, t, h, d) = p.dims();
    [
        vec![d, b * t, 5 * h],
        vec![d, b * t, h],
        vec![b, t, d * h],
        vec![b, d * h],
    ]
}

/// Checks the shapes of an LSTM call and derives the kernel params.
fn lstm_params(
    op: &'static str,
    x: &[usize],
    kernel: &[usize],
    recurrent: &[usize],
    bias: &[usize],
) -> Result<LstmParams> {
    let &[batch, steps, e] = x else {
        return Err(Error::shape(op, "x of shape [B, T, E]", shape_str(x)));
    };
    let &[dirs, ke, h4] = kernel else {
        return Err(Error::shape(
            op,
            "kernel of shape [D, E, 4H] (D = 1, or 2 for bidirectional)",
            shape_str(kernel),
        ));
    };
    let hidden = h4 / 4;
    if !(1..=2).contains(&dirs) || ke != e || h4 % 4 != 0 || hidden == 0 {
        return Err(Error::shape(
            op,
            format!("kernel of shape [1 or 2, {e}, 4H]"),
            shape_str(kernel),
        ));
    }
    if recurrent != [dirs, hidden, h4] {
        return Err(Error::shape(
            op,
            format!("recurrent kernel of shape [{dirs}, {hidden}, {h4}]"),
            shape_str(recurrent),
        ));
    }
    if bias != [dirs, h4] {
        return Err(Error::shape(
            op,
            format!("bias of shape [{dirs}, {h4}]"),
            shape_str(bias),
        ));
    }
    if batch == 0 || steps == 0 {
        return Err(Error::invalid(
            op,
            format!("empty input {x:?}: batch and steps must be at least 1"),
        ));
    }
    if hidden > LstmParams::MAX_HIDDEN {
        return Err(Error::invalid(
            op,
            format!(
                "hidden size {hidden} is above the fused kernel's limit of {}; use the unfused \
                 LSTM (kiln-graph's LstmPath::Unfused) for wider layers",
                LstmParams::MAX_HIDDEN
            ),
        ));
    }
    let fits = |v: usize| u32::try_from(v).ok();
    // The saved buffer holds the cache (5H) and hprev (H) per row, plus alignment.
    let total = dirs * batch * steps * 6 * hidden + 1024;
    if fits(total).is_none() {
        return Err(Error::invalid(
            op,
            format!("{x:?} with H = {hidden} is past u32 indexing"),
        ));
    }
    Ok(LstmParams {
        batch: batch as u32,
        steps: steps as u32,
        hidden: hidden as u32,
        dirs: dirs as u32,
        // The GPU launcher picks the rows per workgroup for its adapter; the reference ignores it.
        rows: 1,
        ..Default::default()
    })
}

/// Storage buffers each fused kernel binds at once: WebGPU's guaranteed 8.
const LSTM_STORAGE_BUFFERS: u32 = 8;

/// An element offset as the kernel's u32.
fn u32_at(op: &'static str, at: usize) -> Result<u32> {
    u32::try_from(at)
        .map_err(|_| Error::invalid(op, format!("an offset of {at} is past u32 indexing")))
}

impl Device {
    /// Whether the fused LSTM kernels run here for `hidden` units: the width fits workgroup
    /// memory, and the device binds enough storage buffers (8) and workgroup memory (16 KiB):
    /// WebGPU's defaults, so on every adapter.
    pub fn lstm_fused_supported(&self, hidden: usize) -> bool {
        if hidden == 0 || hidden > LstmParams::MAX_HIDDEN {
            return false;
        }
        match self.backend() {
            Backend::Cpu => true,
            Backend::Gpu(g) => {
                g.limits.max_storage_buffers_per_shader_stage >= LSTM_STORAGE_BUFFERS
                    && g.limits.max_compute_workgroup_storage_size as usize
                        >= 4 * LstmParams::SHARED_FLOATS
                    && g.limits.max_compute_invocations_per_workgroup >= 256
            }
        }
    }

    fn check_lstm_extras(
        &self,
        op: &'static str,
        p: &LstmParams,
        inputs: &LstmInputs,
    ) -> Result<()> {
        let (b, t, h, d) = p.dims();
        let want = format!("initial state of shape [2, {d}, {b}, {h}] (h0 then c0)");
        self.check_recurrent_extras(op, inputs, (&[2, d, b, h], &want), (b, t))
    }

    /// Checks a recurrent layer's optional inputs: the initial state against `init` (its shape
    /// and how to name it) and the mask ids against (B, T).
    pub(crate) fn check_recurrent_extras(
        &self,
        op: &'static str,
        inputs: &LstmInputs,
        (init_shape, init_name): (&[usize], &str),
        (b, t): (usize, usize),
    ) -> Result<()> {
        if let Some(init) = inputs.init {
            self.check(op, init)?;
            if init.shape() != init_shape {
                return Err(Error::shape(op, init_name, shape_str(init.shape())));
            }
        }
        if let Some(mask) = inputs.mask {
            self.check_device(op, mask)?;
            if mask.dtype() != DType::U32 {
                return Err(Error::DType {
                    op,
                    arg: "mask ids",
                    expected: DType::U32,
                    got: mask.dtype(),
                });
            }
            if mask.shape() != [b, t] {
                return Err(Error::shape(
                    op,
                    format!("mask ids of shape [{b}, {t}]"),
                    shape_str(mask.shape()),
                ));
            }
        }
        Ok(())
    }

    /// The recurrence alone, given the input projection xproj (D, B*T, 4H) without bias, for
    /// `inputs` (whose x gives B and T; its kernel is not read). The mask carries h and c through
    /// a masked step unchanged; its output in the sequence is that carried h for one direction
    /// (Keras's LSTM) and zero for two (Keras's Bidirectional, `zero_output_for_mask`).
    pub fn lstm_recurrence(&self, xproj: &Tensor, inputs: &LstmInputs) -> Result<LstmState> {
        let op = "lstm_recurrence";
        let (recurrent, bias) = (inputs.recurrent, inputs.bias);
        for t in [xproj, recurrent, bias] {
            self.check(op, t)?;
        }
        let h4 = recurrent.shape().last().copied().unwrap_or(0);
        if h4 / 4 <= LstmParams::MAX_HIDDEN && !self.lstm_fused_supported(h4 / 4) {
            return Err(Error::invalid(
                op,
                format!(
                    "this adapter lacks what the fused LSTM needs ({LSTM_STORAGE_BUFFERS} storage \
                     buffers per stage, 16 KiB of workgroup memory, 256 threads per workgroup); \
                     use the unfused LSTM (LstmPath::Unfused)"
                ),
            ));
        }
        let (b, t) = match inputs.x.shape() {
            &[b, t, ..] => (b, t),
            other => return Err(Error::shape(op, "x of shape [B, T, E]", shape_str(other))),
        };
        let dirs = recurrent.shape().first().copied().unwrap_or(0);
        let kernel_shape = [dirs, 1, h4];
        let mut p = lstm_params(
            op,
            &[b, t, 1],
            &kernel_shape,
            recurrent.shape(),
            bias.shape(),
        )?;
        if xproj.shape() != [dirs, b * t, h4] {
            return Err(Error::shape(
                op,
                format!("xproj of shape [{dirs}, {}, {h4}]", b * t),
                shape_str(xproj.shape()),
            ));
        }
        self.check_lstm_extras(op, &p, inputs)?;
        p.has_init = inputs.init.is_some() as u32;
        p.has_mask = inputs.mask.is_some() as u32;
        p.write_seq = inputs.return_sequences as u32;
        // As Keras: Bidirectional sets zero_output_for_mask on its layers when it returns sequences.
        p.zero_masked = (inputs.mask.is_some() && inputs.return_sequences && dirs == 2) as u32;
        match self.backend() {
            Backend::Cpu => self.recurrence_host(p, xproj, inputs),
            Backend::Gpu(g) => self.recurrence_gpu(g, p, xproj, inputs),
        }
    }

    /// [`Device::lstm_recurrence`] on the CPU device: its fast kernel or the reference.
    fn recurrence_host(
        &self,
        p: LstmParams,
        xproj: &Tensor,
        inputs: &LstmInputs,
    ) -> Result<LstmState> {
        let _span = self.span("lstm_forward");
        let (b, t, h, d) = p.dims();
        let [cache_shape, hprev_shape, y_shape, last_shape] = state_shapes(&p);
        let mut cache = self.host_zeros(d * b * t * 5 * h);
        let mut hprev = self.host_zeros(d * b * t * h);
        let mut y = inputs
            .return_sequences
            .then(|| self.host_zeros(b * t * d * h));
        let mut hlast = self.host_zeros(b * d * h);
        let mut clast = self.host_zeros(b * d * h);
        let mask = inputs.mask.map(|i| self.host_u32(i));
        let run = host_kernel!(self, lstm_forward);
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
                    LstmForwardOut {
                        cache: &mut cache,
                        hprev: &mut hprev,
                        y: y.as_deref_mut(),
                        hlast: &mut hlast,
                        clast: &mut clast,
                    },
                )
            },
        );
        self.count_dispatch();
        Ok(LstmState {
            y: y.map(|y| self.host_tensor(y, &y_shape)),
            h_last: self.host_tensor(hlast, &last_shape),
            c_last: self.host_tensor(clast, &last_shape),
            cache: self.host_tensor(cache, &cache_shape),
            hprev: self.host_tensor(hprev, &hprev_shape),
            params: p,
        })
    }

    /// [`Device::lstm_recurrence`] on an adapter: one persistent dispatch.
    fn recurrence_gpu(
        &self,
        g: &crate::gpu::GpuContext,
        mut p: LstmParams,
        xproj: &Tensor,
        inputs: &LstmInputs,
    ) -> Result<LstmState> {
        let op = "lstm_recurrence";
        let [cache_shape, hprev_shape, y_shape, last_shape] = state_shapes(&p);
        // Two packed outputs keep the kernel at 8 storage buffers: (cache, hprev) and
        // (h_last, c_last), each pair one buffer.
        let (saved, cache_hprev) = self.alloc_packed(op, &[&cache_shape, &hprev_shape])?;
        let (last, hc_last) = self.alloc_packed(op, &[&last_shape, &last_shape])?;
        p.hprev_at = u32_at(op, cache_hprev[1].offset - saved.offset)?;
        p.clast_at = u32_at(op, hc_last[1].offset - last.offset)?;
        let y = if inputs.return_sequences {
            self.alloc(op, DType::F32, &y_shape)?
        } else {
            // Never written (WRITE_SEQ is 0); binding 7 needs a writable buffer.
            self.alloc(op, DType::F32, &[1])?
        };
        let bindings = [
            (1, xproj),
            (2, inputs.recurrent),
            (3, inputs.bias),
            (4, inputs.init.unwrap_or(xproj)),
            (5, inputs.mask.unwrap_or(xproj)),
            (6, &saved),
            (7, &y),
            (8, &last),
        ];
        p.rows = self.lstm_rows(g, &p, &bindings)?;
        launch_lstm_forward(g, &p, &lstm_overrides(g, &p), &bindings)?;
        let [cache, hprev] = <[Tensor; 2]>::try_from(cache_hprev).expect("two views");
        let [h_last, c_last] = <[Tensor; 2]>::try_from(hc_last).expect("two views");
        Ok(LstmState {
            y: inputs.return_sequences.then_some(y),
            h_last,
            c_last,
            cache,
            hprev,
            params: p,
        })
    }

    /// Backpropagation through time over the recurrence: returns dz (D, B*T, 4H), the gradient of
    /// the gates' pre-activations, and (2, D, B, H) = d(h0), d(c0). `inputs` are the forward's.
    pub fn lstm_recurrence_backward(
        &self,
        inputs: &LstmInputs,
        state: &LstmState,
        grads: LstmOutputGrads<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let op = "lstm_recurrence_backward";
        let mut p = state.params;
        let (b, t, h, d) = p.dims();
        let recurrent = inputs.recurrent;
        self.check(op, recurrent)?;
        if recurrent.shape() != [d, h, 4 * h] {
            return Err(Error::shape(
                op,
                format!("recurrent kernel of shape [{d}, {h}, {}]", 4 * h),
                shape_str(recurrent.shape()),
            ));
        }
        self.check_lstm_extras(op, &p, inputs)?;
        for (name, g, want) in [
            ("dy", grads.dy, vec![b, t, d * h]),
            ("dh_last", grads.dh_last, vec![b, d * h]),
            ("dc_last", grads.dc_last, vec![b, d * h]),
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
        p.has_init = inputs.init.is_some() as u32;
        p.has_mask = inputs.mask.is_some() as u32;
        p.has_dy = grads.dy.is_some() as u32;
        p.has_dh_last = grads.dh_last.is_some() as u32;
        p.has_dc_last = grads.dc_last.is_some() as u32;
        match self.backend() {
            Backend::Cpu => self.recurrence_backward_host(p, inputs, state, grads),
            Backend::Gpu(g) => self.recurrence_backward_gpu(g, p, inputs, state, grads),
        }
    }

    /// [`Device::lstm_recurrence_backward`] on the CPU device.
    fn recurrence_backward_host(
        &self,
        p: LstmParams,
        inputs: &LstmInputs,
        state: &LstmState,
        grads: LstmOutputGrads<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let _span = self.span("lstm_backward");
        let (b, t, h, d) = p.dims();
        let mut dz = self.host_zeros(d * b * t * 4 * h);
        let mut carry = self.host_zeros(2 * d * b * h);
        let mask = inputs.mask.map(|i| self.host_u32(i));
        let run = host_kernel!(self, lstm_backward);
        let optional = [inputs.init, grads.dy, grads.dh_last, grads.dc_last];
        self.host_read_all(
            [inputs.recurrent, &state.cache],
            optional,
            |[recurrent, cache], [init, dy, dhlast, dclast]| {
                run(
                    &p,
                    LstmRecurrence {
                        recurrent,
                        init,
                        mask: mask.as_deref(),
                    },
                    cache,
                    LstmBackwardIn { dy, dhlast, dclast },
                    LstmBackwardOut {
                        dz: &mut dz,
                        carry: &mut carry,
                    },
                )
            },
        );
        self.count_dispatch();
        Ok((
            self.host_tensor(dz, &[d, b * t, 4 * h]),
            self.host_tensor(carry, &[2, d, b, h]),
        ))
    }

    /// [`Device::lstm_recurrence_backward`] on an adapter: one persistent dispatch.
    fn recurrence_backward_gpu(
        &self,
        g: &crate::gpu::GpuContext,
        mut p: LstmParams,
        inputs: &LstmInputs,
        state: &LstmState,
        grads: LstmOutputGrads<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let op = "lstm_recurrence_backward";
        let (b, t, h, d) = p.dims();
        // dz and the carries in one buffer: the kernel binds 8 storage buffers.
        let (out, dz_carry) = self.alloc_packed(op, &[&[d, b * t, 4 * h], &[2, d, b, h]])?;
        p.carry_at = u32_at(op, dz_carry[1].offset - out.offset)?;
        let stand_in = inputs.recurrent;
        g.launch(Launch {
            family: ShaderFamily::Lstm,
            entry: "lstm_backward",
            overrides: &lstm_overrides(g, &p),
            params: bytemuck::bytes_of(&p),
            bindings: &[
                (2, inputs.recurrent),
                (4, inputs.init.unwrap_or(stand_in)),
                (5, inputs.mask.unwrap_or(stand_in)),
                (9, &state.cache),
                (10, grads.dy.unwrap_or(stand_in)),
                (11, grads.dh_last.unwrap_or(stand_in)),
                (12, grads.dc_last.unwrap_or(stand_in)),
                (13, &out),
            ],
            workgroups: p.workgroups(),
        })?;
        let [dz, carry] = <[Tensor; 2]>::try_from(dz_carry).expect("two views");
        Ok((dz, carry))
    }

    /// A whole LSTM layer, forward: xproj = x . kernel (one batched GEMM over directions), then
    /// the fused recurrence. See the module doc for the weights.
    pub fn lstm_forward(&self, inputs: LstmInputs) -> Result<LstmState> {
        let op = "lstm_forward";
        let LstmInputs {
            x,
            kernel,
            recurrent,
            bias,
            ..
        } = inputs;
        for t in [x, kernel, recurrent, bias] {
            self.check(op, t)?;
        }
        lstm_params(
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
        self.lstm_recurrence(&xproj, &inputs)
    }

    /// A whole LSTM layer, backward: the fused BPTT dispatch, then dkernel = x^T dz and
    /// drecurrent = hprev^T dz (batched GEMMs over directions, K = B*T), dbias = column sums of
    /// dz, and, with `need_dx`, dx = sum over directions of dz . kernel^T
    /// ([`Device::matmul_sum_batch`]). `inputs` are the forward's.
    pub fn lstm_backward(
        &self,
        inputs: LstmInputs,
        state: &LstmState,
        grads: LstmOutputGrads<'_>,
        need_dx: bool,
    ) -> Result<LstmGrads> {
        let op = "lstm_backward";
        let (x, kernel) = (inputs.x, inputs.kernel);
        self.check(op, x)?;
        self.check(op, kernel)?;
        let (b, t, h, d) = state.params.dims();
        let e = x.shape().last().copied().unwrap_or(0);
        if x.shape() != [b, t, e] || kernel.shape() != [d, e, 4 * h] {
            return Err(Error::shape(
                op,
                format!(
                    "x [{b}, {t}, E] and kernel [{d}, E, {}] as in the forward pass",
                    4 * h
                ),
                format!("x {:?}, kernel {:?}", x.shape(), kernel.shape()),
            ));
        }
        let (dz, carry) = self.lstm_recurrence_backward(&inputs, state, grads)?;
        let (dkernel, dx) = self.input_side_grads(x, kernel, &dz, need_dx)?;
        let ta = MatmulSpec {
            trans_a: true,
            ..Default::default()
        };
        let drecurrent = self.matmul(&state.hprev, &dz, None, ta)?;
        let dbias = self.reduce(ReduceOp::Sum, &dz, 1)?;
        Ok(LstmGrads {
            dx,
            dkernel,
            drecurrent,
            dbias,
            dinit: inputs.init.map(|_| carry),
        })
    }

    /// A recurrent layer's gradients on its input side, from the gates' pre-activation
    /// gradients `dgates` (D, B*T, G*H): dkernel = x^T dgates (batched over directions) and, with
    /// `need_dx`, dx = the sum over directions of dgates . kernel^T (B, T, E).
    pub(crate) fn input_side_grads(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        dgates: &Tensor,
        need_dx: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t, e) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let ta = MatmulSpec {
            trans_a: true,
            ..Default::default()
        };
        let dkernel = self.matmul(&x.reshape(&[b * t, e])?, dgates, None, ta)?;
        if !need_dx {
            return Ok((dkernel, None));
        }
        let tb = MatmulSpec {
            trans_b: true,
            ..Default::default()
        };
        // Summed over the directions in the GEMM (one launch when the product has tiles enough;
        // else per-direction partials and a reduction).
        let dx = if kernel.shape()[0] == 1 {
            self.matmul(dgates, kernel, None, tb)?
        } else {
            self.matmul_sum_batch(dgates, kernel, tb)?
        };
        Ok((dkernel, Some(dx.reshape(&[b, t, e])?)))
    }

    /// Batch rows per workgroup for this recurrence: the adapter's tuned choice for its class,
    /// else (when tuning measures) each candidate timed on the forward kernel with these buffers
    /// (the real launch overwrites what they wrote), else [`LstmParams::rows_for`]. Measuring is
    /// not counted and not profiled, as for the matmul tile.
    fn lstm_rows(
        &self,
        g: &crate::gpu::GpuContext,
        p: &LstmParams,
        bindings: &[(u32, &Tensor)],
    ) -> Result<u32> {
        let (b, _, h, d) = p.dims();
        let cpu_adapter = crate::adapter::is_software(&g.info);
        // The most rows that fit workgroup memory and the batch.
        let fit = LstmParams::rows_for(b, h, d, true) as u32;
        let class = crate::gpu::tune::lstm_class(p);
        if let Some(rows) = g.tuner.known_rows(&class) {
            // A choice for the class's largest batch can exceed a smaller one's rows or the fit.
            return Ok(rows.min(fit));
        }
        if !g.tuner.measures() {
            return Ok(LstmParams::rows_for(b, h, d, cpu_adapter) as u32);
        }
        // Only choices whose threads fit the device's limits (all fit WebGPU's defaults).
        let mut candidates = LstmParams::tune_candidates(b, h, d, cpu_adapter);
        let shared = 4 * LstmParams::SHARED_FLOATS as u32;
        candidates.retain(|&(_, units)| {
            g.fits(
                shared,
                LstmParams::threads_for(h, units as usize, cpu_adapter) as u32,
            )
        });
        let (rows, units) = crate::gpu::tune::unseen(g, || {
            for &(rows, units) in &candidates {
                let overrides = lstm_overrides_with(g, &LstmParams { rows, ..*p }, units as usize);
                self.compile(ShaderFamily::Lstm, "lstm_forward", &overrides)?;
            }
            crate::gpu::tune::fastest(g, &candidates, |(rows, units)| {
                let p = LstmParams { rows, ..*p };
                launch_lstm_forward(g, &p, &lstm_overrides_with(g, &p, units as usize), bindings)
            })
        })?;
        // The rule's units are left implicit, so that a later change of the rule reaches them.
        if units as usize == LstmParams::units_for(h, cpu_adapter) {
            g.tuner.record_rows(&class, rows);
        } else {
            g.tuner.record_lstm(&class, rows, units);
        }
        Ok(rows)
    }
}

/// Records the fused forward recurrence with `p.rows` rows per workgroup and `overrides`.
fn launch_lstm_forward(
    g: &crate::gpu::GpuContext,
    p: &LstmParams,
    overrides: &[(&'static str, f64)],
    bindings: &[(u32, &Tensor)],
) -> Result<()> {
    g.launch(Launch {
        family: ShaderFamily::Lstm,
        entry: "lstm_forward",
        overrides,
        params: bytemuck::bytes_of(p),
        bindings,
        workgroups: p.workgroups(),
    })
}

/// The fused LSTM kernels' override constants: `p.rows` rows per workgroup, and hidden units per
/// thread (pinned for the class, else [`LstmParams::units_for`] the adapter's kind) with the
/// threads they need.
fn lstm_overrides(g: &crate::gpu::GpuContext, p: &LstmParams) -> [(&'static str, f64); 3] {
    let cpu_adapter = crate::adapter::is_software(&g.info);
    let units = g
        .tuner
        .known_units(&crate::gpu::tune::lstm_class(p))
        .map_or_else(
            || LstmParams::units_for(p.hidden as usize, cpu_adapter),
            |u| u as usize,
        );
    lstm_overrides_with(g, p, units)
}

/// [`lstm_overrides`] with `units` hidden units per thread.
fn lstm_overrides_with(
    g: &crate::gpu::GpuContext,
    p: &LstmParams,
    units: usize,
) -> [(&'static str, f64); 3] {
    let cpu_adapter = crate::adapter::is_software(&g.info);
    let hidden = p.hidden as usize;
    [
        ("ROWS", p.rows as f64),
        ("UNITS", units as f64),
        (
            "WG",
            LstmParams::threads_for(hidden, units, cpu_adapter) as f64,
        ),
    ]
}
