//! Batched matmul with transposes and a bias/activation epilogue.

use crate::device::Backend;
use crate::gpu::tune::{self, matmul_class};
use crate::gpu::GpuContext;
use crate::ops::{groups, shape_str};
use crate::params::{Activation, MatmulParams, MatmulSpec, MatmulTile, MatmulVariant, ReduceOp};
use crate::shaders::ShaderFamily;
use crate::{Device, Error, Result, Tensor};

/// Checks operand shapes and derives the kernel's params.
pub fn matmul_params(
    a: &[usize],
    b: &[usize],
    bias: Option<&[usize]>,
    spec: &MatmulSpec,
) -> Result<MatmulParams> {
    params_for("matmul", a, b, bias, spec)
}

/// [`matmul_params`], its errors naming `op`.
fn params_for(
    op: &'static str,
    a: &[usize],
    b: &[usize],
    bias: Option<&[usize]>,
    spec: &MatmulSpec,
) -> Result<MatmulParams> {
    let dims = |s: &[usize]| match *s {
        [r, c] => Ok((1, r, c)),
        [b, r, c] => Ok((b, r, c)),
        _ => Err(Error::shape(op, "a rank-2 or rank-3 tensor", shape_str(s))),
    };
    let (ba, ra, ca) = dims(a)?;
    let (bb, rb, cb) = dims(b)?;
    let (m, k) = if spec.trans_a { (ca, ra) } else { (ra, ca) };
    let (kb, n) = if spec.trans_b { (cb, rb) } else { (rb, cb) };
    if k != kb {
        return Err(Error::shape(
            op,
            format!("inner dimensions to agree (A gives K = {k})"),
            format!(
                "B with K = {kb} (A {a:?}, B {b:?}, trans_a {}, trans_b {})",
                spec.trans_a, spec.trans_b
            ),
        ));
    }
    let batch = ba.max(bb);
    if (ba != batch && ba != 1) || (bb != batch && bb != 1) {
        return Err(Error::shape(
            op,
            "equal batch sizes, or 1 to broadcast",
            format!("A {a:?}, B {b:?}"),
        ));
    }
    if let Some(bias) = bias {
        if bias != [n] {
            return Err(Error::shape(
                op,
                format!("bias of shape [{n}]"),
                shape_str(bias),
            ));
        }
    }
    if k == 0 {
        return Err(Error::invalid(op, "K = 0: nothing to multiply"));
    }
    let fits = |v: usize| u32::try_from(v).ok();
    let too_big = || Error::invalid(op, format!("dimensions past u32 (A {a:?}, B {b:?})"));
    let stride = |bt: usize, r: usize, c: usize| {
        if bt == 1 && batch > 1 {
            Some(0)
        } else {
            fits(r * c)
        }
    };
    Ok(MatmulParams {
        batch: fits(batch).ok_or_else(too_big)?,
        m: fits(m).ok_or_else(too_big)?,
        n: fits(n).ok_or_else(too_big)?,
        k: fits(k).ok_or_else(too_big)?,
        a_batch_stride: stride(ba, ra, ca).ok_or_else(too_big)?,
        b_batch_stride: stride(bb, rb, cb).ok_or_else(too_big)?,
        chunk: 1,
        _pad: 0,
    })
}

impl Device {
    /// C = act(op(A) · op(B) + bias). A: (M, K) or (B, M, K); B: (K, N) or (B, K, N); stored
    /// transposed when the spec says so; a batch of 1 broadcasts. C: (M, N), or (B, M, N) when either
    /// operand is batched.
    pub fn matmul(
        &self,
        a: &Tensor,
        b: &Tensor,
        bias: Option<&Tensor>,
        spec: MatmulSpec,
    ) -> Result<Tensor> {
        let op = "matmul";
        self.check(op, a)?;
        self.check(op, b)?;
        if let Some(bias) = bias {
            self.check(op, bias)?;
        }
        let p = matmul_params(a.shape(), b.shape(), bias.map(Tensor::shape), &spec)?;
        let batched = a.rank() == 3 || b.rank() == 3;
        let shape = if batched {
            vec![p.batch as usize, p.m as usize, p.n as usize]
        } else {
            vec![p.m as usize, p.n as usize]
        };
        self.matmul_p(&p, &spec, (a, b, bias), &shape)
    }

    /// C (M, N) = Σ_b op(A_b) · op(B_b): a batched product summed over its batch in one GEMM,
    /// as a convolution's weight gradient sums its images. Operands as for [`Device::matmul`]
    /// (a batch of 1 broadcasts); `spec.activation` must be the identity (activate the sum).
    ///
    /// The batch is split into [`MatmulParams::slices`] chunks of
    /// [`MatmulParams::sum_chunk`] entries, each summed by one workgroup per output tile, so that
    /// a GPU has tiles enough to fill it; a reduction then adds the chunks' partial sums (skipped
    /// when there is one chunk). A rule of the shape and the adapter's kind fixes the chunks, so
    /// results never depend on tuning.
    pub fn matmul_sum_batch(&self, a: &Tensor, b: &Tensor, spec: MatmulSpec) -> Result<Tensor> {
        let op = "matmul_sum_batch";
        self.check(op, a)?;
        self.check(op, b)?;
        if spec.activation != Activation::Identity {
            return Err(Error::invalid(
                op,
                format!(
                    "activation {:?} on a sum over the batch: sum with the identity, then apply it",
                    spec.activation
                ),
            ));
        }
        let mut p = params_for(op, a.shape(), b.shape(), None, &spec)?;
        p.chunk = match self.backend() {
            // Up to 16 slices, run in parallel: the same split on every machine.
            Backend::Cpu => p.batch.div_ceil(16),
            Backend::Gpu(g) => p.sum_chunk(sum_width(g)),
        };
        let (m, n) = (p.m as usize, p.n as usize);
        let partials = self.matmul_p(&p, &spec, (a, b, None), &[p.slices() as usize, m, n])?;
        if p.slices() == 1 {
            partials.reshape(&[m, n])
        } else {
            self.reduce(ReduceOp::Sum, &partials, 0)
        }
    }

    /// Runs a checked matmul into a fresh C of `shape` (p.out_len() elements).
    fn matmul_p(
        &self,
        p: &MatmulParams,
        spec: &MatmulSpec,
        (a, b, bias): (&Tensor, &Tensor, Option<&Tensor>),
        shape: &[usize],
    ) -> Result<Tensor> {
        let op = "matmul";
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("matmul");
                // Every kernel writes all of C (sgemm with beta 0 or over the bias it copies in).
                let mut c = self.host_out(p.out_len());
                let bias_h = bias.map(|t| self.host_f32(t));
                // Naive is the baseline here too: the reference loops; Tiled the fast sgemm.
                let run = match spec.variant {
                    MatmulVariant::Tiled if self.cpu_fast() => crate::cpu::matmul,
                    _ => crate::reference::matmul,
                };
                self.host_read_pair(a, b, |a, b| run(p, spec, a, b, bias_h.as_deref(), &mut c));
                Ok(self.host_tensor(c, shape))
            }
            Backend::Gpu(g) => {
                let c = self.alloc(op, crate::DType::F32, shape)?;
                let tile = match (spec.variant, spec.tile) {
                    (MatmulVariant::Naive, _) => None,
                    (MatmulVariant::Tiled, MatmulTile::Auto) => {
                        Some(self.matmul_tile(g, p, spec, (a, b, bias), shape)?)
                    }
                    (MatmulVariant::Tiled, t) => Some(t),
                };
                if let Some(t) = tile.filter(|t| !fits(g, *t)) {
                    let (bytes, threads) = t.footprint();
                    return Err(Error::invalid(
                        op,
                        format!(
                            "the {t:?} tile needs {bytes} bytes of workgroup memory and {threads} threads; this device was opened with {} and {}",
                            g.limits.max_compute_workgroup_storage_size,
                            g.limits.max_compute_invocations_per_workgroup
                        ),
                    ));
                }
                launch_matmul(g, p, spec, tile, (a, b, bias), &c)?;
                Ok(c)
            }
        }
    }

    /// The tile for an Auto matmul on this adapter: the tuned choice for the shape's class, else
    /// (when tuning measures) each tile timed on these operands, the fastest kept; else
    /// [`MatmulTile::for_shape`]. What measuring launches and submits is not counted.
    fn matmul_tile(
        &self,
        g: &GpuContext,
        p: &MatmulParams,
        spec: &MatmulSpec,
        operands: (&Tensor, &Tensor, Option<&Tensor>),
        shape: &[usize],
    ) -> Result<MatmulTile> {
        let class = matmul_class(p, spec);
        // Only tiles that fit the device's limits (every one fits WebGPU's defaults).
        let tiles: Vec<MatmulTile> = MatmulTile::ALL
            .into_iter()
            .filter(|&t| fits(g, t))
            .collect();
        if let Some(t) = g.tuner.known(&class).filter(|t| tiles.contains(t)) {
            return Ok(t);
        }
        let rule = MatmulTile::for_shape(p.m, p.n);
        if !g.tuner.measures() || tiles.len() < 2 {
            return Ok(if tiles.contains(&rule) {
                rule
            } else {
                MatmulTile::Small
            });
        }
        let best = tune::unseen(g, || {
            let scratch = self.alloc("matmul autotune", crate::DType::F32, shape)?;
            let overrides = matmul_overrides(spec, operands.2.is_some());
            for &tile in &tiles {
                self.compile(ShaderFamily::Matmul, tile.entry(), &overrides)?;
            }
            tune::fastest(g, &tiles, |tile| {
                launch_matmul(g, p, spec, Some(tile), operands, &scratch)
            })
        })?;
        g.tuner.record(&class, best);
        Ok(best)
    }
}

/// Whether `tile`'s kernel fits the device's limits.
fn fits(g: &GpuContext, tile: MatmulTile) -> bool {
    let (bytes, threads) = tile.footprint();
    g.fits(bytes, threads)
}

/// Records one matmul: the naive kernel (tile None) or the tiled one with `tile`.
fn launch_matmul(
    g: &GpuContext,
    p: &MatmulParams,
    spec: &MatmulSpec,
    tile: Option<MatmulTile>,
    (a, b, bias): (&Tensor, &Tensor, Option<&Tensor>),
    c: &Tensor,
) -> Result<()> {
    let (entry, workgroups) = match tile {
        None => ("matmul_naive", groups(p.out_len(), 64)),
        Some(t) => (t.entry(), p.tiles_for(t)),
    };
    // The shader references `bias` behind HAS_BIAS, so binding 4 is in its layout either way;
    // without a bias, A stands in (read-only, never read).
    let bindings = [(1, a), (2, b), (3, c), (4, bias.unwrap_or(a))];
    g.launch(crate::gpu::Launch {
        family: ShaderFamily::Matmul,
        entry,
        overrides: &matmul_overrides(spec, bias.is_some()),
        params: bytemuck::bytes_of(p),
        bindings: &bindings,
        workgroups,
    })
}

/// The 32x32 output tiles a batch sum aims to run at once on this adapter
/// ([`MatmulParams::sum_chunk`]): a few per core on a CPU adapter, enough to fill a GPU's
/// compute units several times over.
fn sum_width(g: &GpuContext) -> u32 {
    if crate::adapter::is_software(&g.info) {
        64
    } else {
        256
    }
}

/// The matmul kernels' override constants for `spec`.
fn matmul_overrides(spec: &MatmulSpec, has_bias: bool) -> [(&'static str, f64); 4] {
    [
        ("TRANS_A", spec.trans_a as u32 as f64),
        ("TRANS_B", spec.trans_b as u32 as f64),
        ("HAS_BIAS", has_bias as u32 as f64),
        ("ACT", spec.activation.matmul_code() as f64),
    ]
}
