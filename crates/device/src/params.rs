//! Kernel parameter structs, `#[repr(C)]` and `Pod`, each mirrored by a WGSL `struct` of the same
//! name, and the op enums whose numeric codes the shaders receive as `override` constants.
//! Size formulas live here, once.

use bytemuck::{Pod, Zeroable};

/// Activation functions, shared by the matmul epilogue and the unary kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Activation {
    #[default]
    /// y = x.
    Identity,
    /// max(x, 0).
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// 1 where x > 0, else 0.
    Step,
}

impl Activation {
    /// Code of the matmul epilogue's `ACT` constant.
    pub(crate) fn matmul_code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Sigmoid => 2,
            Activation::Tanh => 3,
            Activation::Step => 4,
        }
    }

    /// The same function as a unary op.
    pub fn as_unary(self) -> UnaryOp {
        match self {
            Activation::Identity => UnaryOp::Identity,
            Activation::Relu => UnaryOp::Relu,
            Activation::Sigmoid => UnaryOp::Sigmoid,
            Activation::Tanh => UnaryOp::Tanh,
            Activation::Step => UnaryOp::Step,
        }
    }
}

/// Elementwise binary ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
}

impl BinaryOp {
    /// Every op, for tests.
    pub const ALL: [BinaryOp; 4] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];

    pub(crate) fn code(self) -> u32 {
        self as u32
    }

    /// The op on two scalars (the reference).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// Unary functions; `Scale(s)` multiplies by a constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// y = x.
    Identity,
    /// 1 where x > 0, else 0.
    Step,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// max(x, 0).
    Relu,
    /// e^x.
    Exp,
    /// ln(x).
    Log,
    /// x times a constant.
    Scale(f32),
    /// |x|; derivative sign(x) (0 at 0).
    Abs,
    /// x * scale + shift (add a scalar, subtract from one, negate).
    Affine {
        /// The factor.
        scale: f32,
        /// The constant added.
        shift: f32,
    },
    /// x^p, as `f32::powf`: negative x only for whole p (else NaN); 0^p is 0 for p > 0, 1 for
    /// p = 0 and infinite for p < 0.
    Pow(f32),
    /// sqrt(x), for x >= 0.
    Sqrt,
    /// 1 / sqrt(x), for x > 0.
    Rsqrt,
    /// x limited to [min, max]; derivative 1 within (bounds included), 0 outside.
    Clamp {
        /// The lower bound.
        min: f32,
        /// The upper bound.
        max: f32,
    },
    /// GELU, exact: x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (Keras's `gelu`).
    Gelu,
    /// GELU with tanh's approximation: x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2
    /// (Keras's `gelu(x, approximate=True)`, keras-hub's `gelu_approximate`).
    GeluTanh,
}

impl UnaryOp {
    /// Every op, for tests.
    pub const ALL: [UnaryOp; 17] = [
        UnaryOp::Identity,
        UnaryOp::Step,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Relu,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Scale(0.5),
        UnaryOp::Abs,
        UnaryOp::Affine {
            scale: -1.5,
            shift: 0.25,
        },
        UnaryOp::Pow(3.0),
        UnaryOp::Pow(-1.5),
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Clamp {
            min: -0.3,
            max: 0.4,
        },
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
    ];

    /// Whether the op is defined (with its derivative) only for x > 0: tests draw its inputs
    /// there.
    pub fn positive_only(self) -> bool {
        match self {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt => true,
            UnaryOp::Pow(p) => p.fract() != 0.0,
            _ => false,
        }
    }

    pub(crate) fn code(self) -> u32 {
        match self {
            UnaryOp::Identity => 0,
            UnaryOp::Step => 1,
            UnaryOp::Sigmoid => 2,
            UnaryOp::Tanh => 3,
            UnaryOp::Relu => 4,
            UnaryOp::Exp => 5,
            UnaryOp::Log => 6,
            UnaryOp::Scale(_) => 7,
            UnaryOp::Abs => 8,
            UnaryOp::Affine { .. } => 9,
            UnaryOp::Pow(_) => 10,
            UnaryOp::Sqrt => 11,
            UnaryOp::Rsqrt => 12,
            UnaryOp::Clamp { .. } => 13,
            UnaryOp::Gelu => 14,
            UnaryOp::GeluTanh => 15,
        }
    }

    /// The op's constants, as the kernel's `scalar` and `scalar2`.
    pub(crate) fn scalars(self) -> (f32, f32) {
        match self {
            UnaryOp::Scale(s) | UnaryOp::Pow(s) => (s, 0.0),
            UnaryOp::Affine { scale, shift } => (scale, shift),
            UnaryOp::Clamp { min, max } => (min, max),
            _ => (0.0, 0.0),
        }
    }
}

/// Reductions along an axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// The sum.
    Sum,
    /// The mean.
    Mean,
    /// The maximum.
    Max,
}

impl ReduceOp {
    pub(crate) fn code(self) -> u32 {
        self as u32
    }
}

/// Which matmul kernel runs. `Tiled` is the default; `Naive` is the baseline benchmarks compare to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MatmulVariant {
    /// One thread per output element: the baseline.
    Naive,
    #[default]
    /// Workgroup tiles in shared memory with a register block per thread.
    Tiled,
}

/// The tile of C one workgroup of the tiled kernel computes (shaders/gen_matmul_tiled.py).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MatmulTile {
    /// The launcher picks: [`MatmulTile::for_shape`], or the adapter's measured choice when
    /// autotuning (`kiln tune`) has one for the shape's class.
    #[default]
    Auto,
    /// 128 x 64 (`matmul_tiled`, 16 x 8 outputs per thread): large products.
    Large,
    /// 64 x 64 (`matmul_tiled_medium`, 8 x 8 outputs per thread): products with 64 or so rows,
    /// such as a convolution's filters.
    Medium,
    /// 32 x 32 (`matmul_tiled_small`, 4 x 4 outputs per thread): products with few rows or
    /// columns, where a large tile would mostly compute padding.
    Small,
}

impl MatmulTile {
    /// Rows and columns of C per workgroup (None for Auto).
    pub fn dims(self) -> Option<(u32, u32)> {
        match self {
            MatmulTile::Auto => None,
            MatmulTile::Large => Some((128, 64)),
            MatmulTile::Medium => Some((64, 64)),
            MatmulTile::Small => Some((32, 32)),
        }
    }

    /// The kernel's entry point (Auto: the large one's).
    pub fn entry(self) -> &'static str {
        match self {
            MatmulTile::Small => "matmul_tiled_small",
            MatmulTile::Medium => "matmul_tiled_medium",
            MatmulTile::Large | MatmulTile::Auto => "matmul_tiled",
        }
    }

    /// The concrete tiles, largest first.
    pub const ALL: [MatmulTile; 3] = [MatmulTile::Large, MatmulTile::Medium, MatmulTile::Small];

    /// Workgroup memory the tile's kernel declares, in bytes (shaders/matmul.wgsl: 16 rows of K
    /// of A's and B's tiles), and its threads (8 x 8): what a device's limits must allow.
    pub fn footprint(self) -> (u32, u32) {
        let (tm, tn) = self.dims().unwrap_or((128, 64));
        (16 * (tm + tn) * 4, 64)
    }

    /// The default choice for an M x N product: the largest tile (the most reuse per loaded
    /// value) that computes less than twice the padded work of the small one; M or N well under
    /// a tile's side makes it mostly padding.
    pub fn for_shape(m: u32, n: u32) -> MatmulTile {
        let padded = |t: MatmulTile| {
            let (tm, tn) = t.dims().expect("a concrete tile");
            m.div_ceil(tm) as u64 * tm as u64 * n.div_ceil(tn) as u64 * tn as u64
        };
        let small = padded(MatmulTile::Small);
        Self::ALL
            .into_iter()
            .find(|&t| padded(t) < 2 * small)
            .unwrap_or(MatmulTile::Small)
    }
}

/// How to multiply: which operands are stored transposed, the epilogue, the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MatmulSpec {
    /// A is stored (K, M) instead of (M, K).
    pub trans_a: bool,
    /// B is stored (N, K) instead of (K, N).
    pub trans_b: bool,
    /// Applied to C in the epilogue.
    pub activation: Activation,
    /// Which kernel.
    pub variant: MatmulVariant,
    /// The tiled kernel's tile (ignored by Naive and on the CPU device).
    pub tile: MatmulTile,
}

/// Parameters of the matmul kernels: C (batch, M, N) = A (batch, M, K) B (batch, K, N).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MatmulParams {
    /// Batch entries.
    pub batch: u32,
    /// Rows of C.
    pub m: u32,
    /// Columns of C.
    pub n: u32,
    /// The reduced dimension.
    pub k: u32,
    /// Elements between consecutive batch entries of A; 0 broadcasts A.
    pub a_batch_stride: u32,
    /// Elements between consecutive batch entries of B; 0 broadcasts B.
    pub b_batch_stride: u32,
    /// Batch entries summed into each slice of C: 1 (or 0) for a batched product, C (batch, M,
    /// N); more for [`Device::matmul_sum_batch`](crate::Device::matmul_sum_batch), whose C holds
    /// [`MatmulParams::slices`] partial sums.
    pub chunk: u32,
    /// WGSL padding to 16 bytes.
    pub _pad: u32,
}

impl MatmulParams {
    /// Slices of C: the batch entries, or with `chunk` > 1 the partial sums of `chunk` entries.
    pub fn slices(&self) -> u32 {
        self.batch.div_ceil(self.chunk.max(1))
    }

    /// Elements of C.
    pub fn out_len(&self) -> usize {
        self.slices() as usize * self.m as usize * self.n as usize
    }

    /// Batch entries per partial sum for [`Device::matmul_sum_batch`](crate::Device::matmul_sum_batch):
    /// enough slices that `target_tiles` 32x32 output tiles run at once (an adapter's width), and
    /// no more, so that few partials are left to add; each slice at least
    /// [`Self::MIN_SUM_DEPTH`] products deep. A rule of the shape and the adapter's kind, never
    /// tuned: the chunk decides the order of the sum.
    pub fn sum_chunk(&self, target_tiles: u32) -> u32 {
        let batch = self.batch.max(1);
        let tiles = (self.m.div_ceil(32) * self.n.div_ceil(32)).max(1);
        let slices = target_tiles.div_ceil(tiles).clamp(1, batch);
        let chunk = batch.div_ceil(slices);
        chunk
            .max(Self::MIN_SUM_DEPTH.div_ceil(self.k.max(1)))
            .min(batch)
    }

    /// The least K summed by one slice of a batch sum (per-slice work below this is all overhead).
    pub const MIN_SUM_DEPTH: u32 = 256;

    /// Floating-point operations: 2 * batch * M * N * K.
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Workgroups of the tiled kernel with `tile` (Auto counts as Large).
    pub fn tiles_for(&self, tile: MatmulTile) -> u64 {
        let (tm, tn) = tile
            .dims()
            .or(MatmulTile::Large.dims())
            .expect("Large has dims");
        self.m.div_ceil(tm) as u64 * self.n.div_ceil(tn) as u64 * self.slices() as u64
    }
}

/// Parameters of the elementwise kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ElementwiseParams {
    /// Elements of the output.
    pub n: u32,
    /// Length of the second operand: n (same shape), a row length (row broadcast) or 1.
    pub b_len: u32,
    /// The constant of `UnaryOp::Scale` and `Pow`, `fill` and `axpy`; `Affine`'s scale,
    /// `Clamp`'s min.
    pub scalar: f32,
    /// `Affine`'s shift, `Clamp`'s max.
    pub scalar2: f32,
}

/// The most dimensions a broadcast kernel takes after merging neighbours that broadcast alike.
pub const MAX_BROADCAST_RANK: usize = 8;

/// NumPy's broadcast of two shapes: aligned at the right, each dimension equal or 1 in one of
/// them. None when they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        let pad = rank - s.len();
        if i < pad {
            1
        } else {
            s[i - pad]
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Parameters of the broadcast kernels: the output's shape and each operand's strides in it (0
/// along a dimension it broadcasts over), after merging neighbouring dimensions that broadcast
/// alike.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BroadcastParams {
    /// Elements of the output.
    pub n: u32,
    /// Dimensions used in `shape` and the strides.
    pub rank: u32,
    /// WGSL padding to 16 bytes.
    pub _pad: [u32; 2],
    /// The (merged) output shape.
    pub shape: [u32; MAX_BROADCAST_RANK],
    /// The first operand's element strides (0 where it broadcasts).
    pub a_strides: [u32; MAX_BROADCAST_RANK],
    /// The second operand's.
    pub b_strides: [u32; MAX_BROADCAST_RANK],
}

impl BroadcastParams {
    /// The plan for `a op b`: the output shape and the kernel's parameters; None when the shapes
    /// do not broadcast or need more than [`MAX_BROADCAST_RANK`] dimensions once merged.
    pub fn plan(a: &[usize], b: &[usize]) -> Option<(Vec<usize>, BroadcastParams)> {
        let out = broadcast_shape(a, b)?;
        let rank = out.len();
        let padded = |s: &[usize]| -> Vec<usize> {
            let mut v = vec![1; rank - s.len()];
            v.extend_from_slice(s);
            v
        };
        let (pa, pb) = (padded(a), padded(b));
        // Merge runs of dimensions in which each operand is either whole or broadcast alike;
        // dimensions of size 1 drop out.
        let mut dims: Vec<(usize, bool, bool)> = vec![];
        for i in 0..rank {
            if out[i] == 1 {
                continue;
            }
            let (full_a, full_b) = (pa[i] != 1, pb[i] != 1);
            match dims.last_mut() {
                Some(last) if last.1 == full_a && last.2 == full_b => last.0 *= out[i],
                _ => dims.push((out[i], full_a, full_b)),
            }
        }
        if dims.len() > MAX_BROADCAST_RANK {
            return None;
        }
        let mut p = BroadcastParams {
            n: out.iter().product::<usize>() as u32,
            rank: dims.len() as u32,
            ..Default::default()
        };
        let (mut sa, mut sb) = (1usize, 1usize);
        for (k, &(size, full_a, full_b)) in dims.iter().enumerate().rev() {
            p.shape[k] = size as u32;
            if full_a {
                p.a_strides[k] = sa as u32;
                sa *= size;
            }
            if full_b {
                p.b_strides[k] = sb as u32;
                sb *= size;
            }
        }
        Some((out, p))
    }

    /// The operands' element indices for output element `i`.
    #[inline]
    pub fn index(&self, i: usize) -> (usize, usize) {
        let (mut rem, mut ia, mut ib) = (i, 0usize, 0usize);
        for d in (0..self.rank as usize).rev() {
            let size = self.shape[d] as usize;
            let c = rem % size;
            rem /= size;
            ia += c * self.a_strides[d] as usize;
            ib += c * self.b_strides[d] as usize;
        }
        (ia, ib)
    }
}

/// The reduced axis splits a tensor into (outer, len, inner).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ReduceParams {
    /// Product of the dimensions before the axis.
    pub outer: u32,
    /// The axis's length.
    pub len: u32,
    /// Product of the dimensions after it.
    pub inner: u32,
    /// WGSL padding to 16 bytes.
    pub _pad: u32,
}

impl ReduceParams {
    /// The split of `shape` around `axis`.
    pub fn for_axis(shape: &[usize], axis: usize) -> ReduceParams {
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        ReduceParams {
            outer: outer as u32,
            len: shape[axis] as u32,
            inner: inner as u32,
            _pad: 0,
        }
    }

    /// Elements of the result (outer * inner).
    pub fn out_len(&self) -> usize {
        self.outer as usize * self.inner as usize
    }
}

/// Parameters of the embedding kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct EmbeddingParams {
    /// Number of ids (N).
    pub n: u32,
    /// Embedding width (E).
    pub dim: u32,
    /// Vocabulary size (V).
    pub vocab: u32,
    /// WGSL padding to 16 bytes.
    pub _pad: u32,
}

/// Parameters of the dropout kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct DropoutParams {
    /// Elements.
    pub n: u32,
    /// Low word of the Threefry key.
    pub seed_lo: u32,
    /// High word of the Threefry key.
    pub seed_hi: u32,
    /// Counter of element 0: advance it between calls so masks differ from step to step.
    pub offset: u32,
    /// Probability of keeping an element (1 - rate).
    pub keep_prob: f32,
    /// Scale of kept elements: 1 / keep_prob (0 when nothing is kept).
    pub scale: f32,
    /// WGSL padding to 16 bytes.
    pub _pad: [u32; 2],
}

impl DropoutParams {
    /// Dropping a fraction `rate` of `n` elements with key `seed`, counters from `offset`.
    pub fn new(n: u32, rate: f32, seed: u64, offset: u32) -> DropoutParams {
        let keep_prob = 1.0 - rate;
        DropoutParams {
            n,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            offset,
            keep_prob,
            scale: if keep_prob > 0.0 {
                1.0 / keep_prob
            } else {
                0.0
            },
            _pad: [0; 2],
        }
    }
}

/// Parameters of the optimizer kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct OptimParams {
    /// Elements of the packed parameter buffer.
    pub n: u32,
    /// Adam: the bias-corrected step size; SGD and RMSprop: the learning rate.
    pub alpha: f32,
    /// Adam: beta1; SGD and RMSprop: momentum.
    pub beta1: f32,
    /// Adam: the second-moment decay; RMSprop: rho.
    pub beta2: f32,
    /// Adam: added to the root of the second moment; RMSprop: added under the root.
    pub eps: f32,
    /// SGD: 1 for Nesterov momentum.
    pub nesterov: u32,
    /// Decoupled weight decay (0: none): w -= w * weight_decay * lr before the update, as Keras.
    pub weight_decay: f32,
    /// The learning rate weight decay scales by.
    pub lr: f32,
    /// RMSprop: 1 - rho, rounded from f64 as Keras's Python float is.
    pub one_minus_rho: f32,
    /// Gradient clipping: the partial sums of squares (`sumsq_partial`'s workgroups).
    pub parts: u32,
    /// WGSL padding to 16 bytes.
    pub _pad: [u32; 2],
}

impl OptimParams {
    /// Workgroups of `sumsq_partial`: each sums a strided share of the gradients.
    pub const NORM_PARTS: u32 = 256;

    /// Parameters of the clipping kernels over `n` gradients at `threshold` (the value or
    /// the norm), in `alpha`.
    pub fn clip(n: u32, threshold: f32) -> OptimParams {
        OptimParams {
            n,
            alpha: threshold,
            parts: Self::NORM_PARTS,
            ..OptimParams::default()
        }
    }
}

/// Adam's hyperparameters; `Default` is Keras's Adam (AdamW: [`AdamConfig::adamw`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the root of the second moment (Keras: 1e-7).
    pub eps: f32,
    /// Decoupled weight decay (0 for Adam; Keras's AdamW: 0.004).
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// Keras's AdamW: Adam's defaults with weight decay 0.004.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 0.004,
            ..AdamConfig::default()
        }
    }

    /// Parameters of update number `step` (1-based), with Keras's bias correction folded into alpha.
    pub fn params(&self, n: u32, step: u64) -> OptimParams {
        let t = step as f64;
        let alpha = self.lr as f64 * (1.0 - (self.beta2 as f64).powf(t)).sqrt()
            / (1.0 - (self.beta1 as f64).powf(t));
        OptimParams {
            n,
            alpha: alpha as f32,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            lr: self.lr,
            ..OptimParams::default()
        }
    }
}

/// SGD's hyperparameters; `Default` is Keras's (lr 0.01, no momentum).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum (0: plain SGD).
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    /// Parameters of an update over `n` elements.
    pub fn params(&self, n: u32) -> OptimParams {
        OptimParams {
            n,
            alpha: self.lr,
            beta1: self.momentum,
            nesterov: self.nesterov as u32,
            ..OptimParams::default()
        }
    }
}

/// RMSprop's hyperparameters; `Default` is Keras's (lr 0.001, rho 0.9, no momentum, eps 1e-7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmspropConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the mean square.
    pub rho: f32,
    /// Momentum (0: none).
    pub momentum: f32,
    /// Added to the mean square under the root.
    pub eps: f32,
    /// Decoupled weight decay (0: none).
    pub weight_decay: f32,
}

impl Default for RmspropConfig {
    fn default() -> Self {
        RmspropConfig {
            lr: 1e-3,
            rho: 0.9,
            momentum: 0.0,
            eps: 1e-7,
            weight_decay: 0.0,
        }
    }
}

impl RmspropConfig {
    /// Parameters of an update over `n` elements.
    pub fn params(&self, n: u32) -> OptimParams {
        OptimParams {
            n,
            alpha: self.lr,
            beta1: self.momentum,
            beta2: self.rho,
            eps: self.eps,
            weight_decay: self.weight_decay,
            lr: self.lr,
            one_minus_rho: (1.0 - self.rho as f64) as f32,
            ..OptimParams::default()
        }
    }
}

/// Parameters of the loss kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct LossParams {
    /// Elements (binary losses) or rows (categorical).
    pub n: u32,
    /// Classes per row (categorical losses).
    pub classes: u32,
    /// Gradient scale, e.g. 1/N for a mean loss.
    pub scale: f32,
    /// Huber's threshold between the quadratic and the linear part (other losses ignore it).
    pub delta: f32,
}

/// Keras's fuzz factor for cross-entropy on probabilities.
pub const BCE_EPS: f32 = 1e-7;

/// Stride, zero padding and dilation of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dSpec {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on each side.
    pub padding: usize,
    /// Spacing of the filter's taps.
    pub dilation: usize,
}

impl Default for Conv2dSpec {
    fn default() -> Self {
        Conv2dSpec {
            stride: 1,
            padding: 0,
            dilation: 1,
        }
    }
}

/// Which convolution kernel: im2col + tuned matmul (the default) or the direct loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConvVariant {
    #[default]
    /// Unfold patches (im2col), then one tuned matmul.
    Im2col,
    /// One thread per output: the baseline.
    Direct,
}

/// Parameters of the convolution kernels: x (N, C, H, W), weight (F, C, FH, FW), y (N, F, OH, OW).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConvParams {
    /// Batch (N).
    pub n: u32,
    /// Input channels (C).
    pub c: u32,
    /// Input height (H).
    pub h: u32,
    /// Input width (W).
    pub w: u32,
    /// Filters (F).
    pub f: u32,
    /// Filter height (FH).
    pub fh: u32,
    /// Filter width (FW).
    pub fw: u32,
    /// Stride.
    pub stride: u32,
    /// Zero padding on each side.
    pub pad: u32,
    /// Dilation.
    pub dil: u32,
    /// Output height (OH).
    pub oh: u32,
    /// Output width (OW).
    pub ow: u32,
}

/// One output size: (size + 2 * pad - dil * (k - 1) - 1) / stride + 1, which must be a positive
/// whole number.
fn conv_out(axis: &str, size: usize, k: usize, spec: &Conv2dSpec) -> Result<usize, String> {
    let span = spec.dilation * (k.max(1) - 1) + 1;
    let room = (size + 2 * spec.padding) as i64 - span as i64;
    if room < 0 {
        return Err(format!(
            "{axis}: input {size} + 2 x padding {} is smaller than the filter's span {span}: no output",
            spec.padding
        ));
    }
    if !(room as usize).is_multiple_of(spec.stride) {
        return Err(format!(
            "{axis}: ({size} + 2 x {} - {span}) / stride {} + 1 = {:.2} is not a whole number; change padding or stride",
            spec.padding,
            spec.stride,
            room as f64 / spec.stride as f64 + 1.0
        ));
    }
    Ok(room as usize / spec.stride + 1)
}

impl ConvParams {
    /// From x (N, C, H, W) and weight (F, C, FH, FW) shapes; checks channels and output sizes.
    pub fn new(x: &[usize], weight: &[usize], spec: &Conv2dSpec) -> Result<ConvParams, String> {
        let &[n, c, h, w] = x else {
            return Err(format!("input must be (N, C, H, W), got {x:?}"));
        };
        let &[f, wc, fh, fw] = weight else {
            return Err(format!("weight must be (F, C, FH, FW), got {weight:?}"));
        };
        if wc != c {
            return Err(format!("weight has {wc} input channels, the input {c}"));
        }
        if spec.stride == 0 || spec.dilation == 0 {
            return Err("stride and dilation must be at least 1".into());
        }
        let oh = conv_out("height", h, fh, spec)?;
        let ow = conv_out("width", w, fw, spec)?;
        let u = |v: usize| v as u32;
        Ok(ConvParams {
            n: u(n),
            c: u(c),
            h: u(h),
            w: u(w),
            f: u(f),
            fh: u(fh),
            fw: u(fw),
            stride: u(spec.stride),
            pad: u(spec.padding),
            dil: u(spec.dilation),
            oh: u(oh),
            ow: u(ow),
        })
    }

    /// Output height.
    pub fn out_h(&self) -> usize {
        self.oh as usize
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        self.ow as usize
    }

    /// Rows of the im2col matrix: C * FH * FW.
    pub fn k(&self) -> usize {
        (self.c * self.fh * self.fw) as usize
    }

    /// (N, F, OH, OW).
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n as usize, self.f as usize, self.out_h(), self.out_w()]
    }

    /// (N, C * FH * FW, OH * OW): the im2col matrix.
    pub fn cols_shape(&self) -> [usize; 3] {
        [self.n as usize, self.k(), self.out_h() * self.out_w()]
    }

    /// Floating-point operations of the forward: 2 * N * F * OH * OW * C * FH * FW.
    pub fn flops(&self) -> f64 {
        2.0 * self.n as f64 * self.f as f64 * (self.oh * self.ow) as f64 * self.k() as f64
    }
}

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// The window's largest value.
    Max,
    /// The window's mean.
    Avg,
    /// Zeiler & Fergus: sample by value while training, probability-weighted average otherwise.
    Stochastic,
}

/// Parameters of the pooling kernels: x (N, C, H, W), windows (KH, KW) at a stride, y (N, C, OH, OW).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PoolParams {
    /// Batch (N).
    pub n: u32,
    /// Channels (C).
    pub c: u32,
    /// Input height (H).
    pub h: u32,
    /// Input width (W).
    pub w: u32,
    /// Window height.
    pub kh: u32,
    /// Window width.
    pub kw: u32,
    /// Step between windows.
    pub stride: u32,
    /// Output height.
    pub oh: u32,
    /// Output width.
    pub ow: u32,
    /// Low word of the stochastic pooling key.
    pub seed_lo: u32,
    /// High word of the stochastic pooling key.
    pub seed_hi: u32,
    /// Counter offset of the stochastic pooling generator.
    pub offset: u32,
}

impl PoolParams {
    /// Window (kh, kw) at `stride` over x (N, C, H, W), no padding, sizes rounded down as Keras does.
    pub fn new(x: &[usize], kh: usize, kw: usize, stride: usize) -> Result<PoolParams, String> {
        let &[n, c, h, w] = x else {
            return Err(format!("input must be (N, C, H, W), got {x:?}"));
        };
        if kh == 0 || kw == 0 || stride == 0 {
            return Err("pool size and stride must be at least 1".into());
        }
        if kh > h || kw > w {
            return Err(format!("a {kh}x{kw} window does not fit a {h}x{w} input"));
        }
        let u = |v: usize| v as u32;
        Ok(PoolParams {
            n: u(n),
            c: u(c),
            h: u(h),
            w: u(w),
            kh: u(kh),
            kw: u(kw),
            stride: u(stride),
            oh: u((h - kh) / stride + 1),
            ow: u((w - kw) / stride + 1),
            seed_lo: 0,
            seed_hi: 0,
            offset: 0,
        })
    }

    /// (N, C, OH, OW).
    pub fn out_shape(&self) -> [usize; 4] {
        [
            self.n as usize,
            self.c as usize,
            self.oh as usize,
            self.ow as usize,
        ]
    }

    /// Elements of the output.
    pub fn out_len(&self) -> usize {
        self.out_shape().iter().product()
    }

    /// Elements of the input.
    pub fn in_len(&self) -> usize {
        (self.n * self.c * self.h * self.w) as usize
    }
}

/// The fused LSTM recurrence (shaders/lstm.wgsl). One struct for both passes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct LstmParams {
    /// Batch (B).
    pub batch: u32,
    /// Timesteps (T).
    pub steps: u32,
    /// Hidden units (H).
    pub hidden: u32,
    /// Directions (D): 1, or 2 for a bidirectional layer.
    pub dirs: u32,
    /// Batch rows per workgroup.
    pub rows: u32,
    /// 1 when an initial state (h0, c0) is given.
    pub has_init: u32,
    /// 1 when padding ids (0) mask steps.
    pub has_mask: u32,
    /// 1 when the whole output sequence is written.
    pub write_seq: u32,
    /// Backward: 1 when a gradient of the output sequence is given.
    pub has_dy: u32,
    /// Backward: 1 when the gradient of the last hidden state is given.
    pub has_dh_last: u32,
    /// 1 when masked steps output zeros instead of the carried h (Keras's Bidirectional with a
    /// mask and sequences; a unidirectional Keras LSTM repeats the carried h).
    pub zero_masked: u32,
    /// Backward: 1 when the gradient of the last cell state is given.
    pub has_dc_last: u32,
    /// Forward: where hprev starts in the saved buffer, after the cache (elements, aligned).
    pub hprev_at: u32,
    /// Forward: where the last cell states start in the last-states buffer, after h (elements).
    pub clast_at: u32,
    /// Backward: where the carries start in the gradients buffer, after dz (elements).
    pub carry_at: u32,
    /// Pads the struct to 16 bytes.
    pub _pad: u32,
}

impl LstmParams {
    /// (B, T, H, D) as sizes.
    pub fn dims(&self) -> (usize, usize, usize, usize) {
        (
            self.batch as usize,
            self.steps as usize,
            self.hidden as usize,
            self.dirs as usize,
        )
    }

    /// Workgroup memory of the fused kernels, in floats (16 KiB, WebGPU's guaranteed minimum).
    pub const SHARED_FLOATS: usize = 4096;

    /// Largest hidden size the fused kernels take: backward double-buffers one row's 4H gate
    /// gradients in workgroup memory.
    pub const MAX_HIDDEN: usize = Self::SHARED_FLOATS / 8;

    /// Most batch rows one workgroup takes (the kernels' register block).
    pub const MAX_ROWS: usize = 8;

    /// Batch rows per workgroup. Each recurrent weight a thread loads serves every row of its
    /// workgroup, so more rows mean fewer loads; fewer rows mean more workgroups. A CPU adapter
    /// (a few cores) takes the most rows that fit; a GPU keeps about 256 workgroups busy first.
    pub fn rows_for(batch: usize, hidden: usize, dirs: usize, cpu_adapter: bool) -> usize {
        let fit = (Self::SHARED_FLOATS / (8 * hidden.max(1))).clamp(1, Self::MAX_ROWS);
        let want = if cpu_adapter {
            Self::MAX_ROWS
        } else {
            (batch * dirs / 256).max(1)
        };
        want.min(fit).clamp(1, batch.max(1))
    }

    /// Most hidden units one thread takes (the kernels' second register block).
    pub const MAX_UNITS: usize = 8;

    /// SIMD lanes of a CPU adapter's workgroup (llvmpipe's 256-bit vectors hold 8 floats).
    const CPU_LANES: usize = 8;

    /// Hidden units per thread. Each gate gradient (backward) or hidden value (forward) a thread
    /// reads from workgroup memory serves every unit it owns, so more units mean fewer such reads
    /// per multiply-add: with one unit the backward reads one per 4 multiply-adds and row, the
    /// forward one per 16. A CPU adapter (llvmpipe), where such a read costs a loop over the SIMD
    /// lanes and a workgroup's threads run one after another anyway, takes the most units (a
    /// power of two, at most [`Self::MAX_UNITS`]) that still give each of its 8 lanes a unit:
    /// the seed model's backward recurrence ran 2.4x faster with 8 than with 1. A GPU keeps one
    /// unit per thread, for threads enough to hide latency. Every unit sums in the same order
    /// either way, so the results are the same bits.
    pub fn units_for(hidden: usize, cpu_adapter: bool) -> usize {
        if !cpu_adapter {
            return 1;
        }
        let most = (hidden / Self::CPU_LANES).clamp(1, Self::MAX_UNITS);
        1 << most.ilog2()
    }

    /// Threads per workgroup for `hidden` units at `units` a thread: a GPU takes whole warps of
    /// 32, a CPU adapter whole 8-lane vectors; at most 256.
    pub fn threads_for(hidden: usize, units: usize, cpu_adapter: bool) -> usize {
        let threads = hidden.div_ceil(units.max(1));
        let step = if cpu_adapter { Self::CPU_LANES } else { 32 };
        threads.next_multiple_of(step).clamp(step, 256)
    }

    /// The (rows per workgroup, units per thread) pairs autotuning times for a recurrence: rows
    /// 1, 2, 4, 8 that fit workgroup memory and the batch; on a CPU adapter the units of
    /// [`Self::units_for`] alone (its rule was measured there), on a GPU 1, 2 and 4 units where
    /// they still leave a warp of 32 threads a unit each.
    pub fn tune_candidates(
        batch: usize,
        hidden: usize,
        dirs: usize,
        cpu_adapter: bool,
    ) -> Vec<(u32, u32)> {
        let fit = Self::rows_for(batch, hidden, dirs, true);
        let units: Vec<usize> = if cpu_adapter {
            vec![Self::units_for(hidden, true)]
        } else {
            [1, 2, 4]
                .into_iter()
                .filter(|&u| u == 1 || hidden / u >= 32)
                .collect()
        };
        [1, 2, 4, 8]
            .into_iter()
            .filter(|&r| r <= fit)
            .flat_map(|r| units.iter().map(move |&u| (r as u32, u as u32)))
            .collect()
    }

    /// Workgroups: one per (direction, block of `rows` batch rows).
    pub fn workgroups(&self) -> u64 {
        self.batch.div_ceil(self.rows) as u64 * self.dirs as u64
    }
}

/// The fused GRU recurrence (shaders/gru.wgsl). One struct for both passes; the launch shape
/// (rows per workgroup, units per thread, threads) follows [`LstmParams`]'s rules, whose
/// workgroup-memory bound (two rows of 4H per batch row) covers the GRU's (two of 3H).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GruParams {
    /// Batch (B).
    pub batch: u32,
    /// Timesteps (T).
    pub steps: u32,
    /// Hidden units (H).
    pub hidden: u32,
    /// Directions (D): 1, or 2 for a bidirectional layer.
    pub dirs: u32,
    /// Batch rows per workgroup.
    pub rows: u32,
    /// 1 when an initial state h0 is given.
    pub has_init: u32,
    /// 1 when padding ids (0) mask steps.
    pub has_mask: u32,
    /// 1 when the whole output sequence is written.
    pub write_seq: u32,
    /// Backward: 1 when a gradient of the output sequence is given.
    pub has_dy: u32,
    /// Backward: 1 when the gradient of the last hidden state is given.
    pub has_dh_last: u32,
    /// 1 when masked steps output zeros instead of the carried h (Keras's Bidirectional).
    pub zero_masked: u32,
    /// Forward: where hprev starts in the saved buffer, after the cache (elements, aligned).
    pub hprev_at: u32,
    /// Backward: where the recurrent part's gradient starts in the gradients buffer.
    pub da_at: u32,
    /// Backward: where the carries start in the gradients buffer.
    pub carry_at: u32,
    /// Pads the struct to 16 bytes.
    pub _pad0: u32,
    /// Pads the struct to 16 bytes.
    pub _pad1: u32,
}

impl GruParams {
    /// (B, T, H, D) as sizes.
    pub fn dims(&self) -> (usize, usize, usize, usize) {
        (
            self.batch as usize,
            self.steps as usize,
            self.hidden as usize,
            self.dirs as usize,
        )
    }

    /// Largest hidden size the fused kernels take (the LSTM's).
    pub const MAX_HIDDEN: usize = LstmParams::MAX_HIDDEN;

    /// Workgroups: one per (direction, block of `rows` batch rows).
    pub fn workgroups(&self) -> u64 {
        self.batch.div_ceil(self.rows) as u64 * self.dirs as u64
    }
}

/// A block copy along one axis (shaders/layout.wgsl); both tensors viewed as (outer, axis, inner).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SliceParams {
    /// Product of the dimensions before the axis.
    pub outer: u32,
    /// Entries of the axis copied.
    pub count: u32,
    /// Product of the dimensions after the axis.
    pub inner: u32,
    /// The axis's length in the source.
    pub src_axis: u32,
    /// First entry copied from the source.
    pub src_start: u32,
    /// The axis's length in the destination.
    pub dst_axis: u32,
    /// First entry written in the destination.
    pub dst_start: u32,
    /// WGSL padding to 16 bytes.
    pub _pad: u32,
}

impl SliceParams {
    /// Elements copied.
    pub fn len(&self) -> usize {
        self.outer as usize * self.count as usize * self.inner as usize
    }

    /// Whether nothing is copied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::{LstmParams, MatmulParams};

    #[test]
    fn lstm_units_and_threads_follow_the_adapter_kind() {
        // A GPU: one unit a thread, whole warps of 32, at most 256 threads (a thread then loops).
        for h in [1, 33, 64, 300, 512] {
            assert_eq!(LstmParams::units_for(h, false), 1, "H {h}");
        }
        let gpu = |h| LstmParams::threads_for(h, 1, false);
        assert_eq!((gpu(1), gpu(33), gpu(64), gpu(300)), (32, 64, 64, 256));
        // A CPU adapter: the most units (a power of two up to 8) that leave each of 8 lanes one.
        let units = |h| LstmParams::units_for(h, true);
        let got: Vec<usize> = [1, 8, 15, 16, 24, 32, 64, 130, 512]
            .into_iter()
            .map(units)
            .collect();
        assert_eq!(got, [1, 1, 1, 2, 2, 4, 8, 8, 8]);
        let cpu = |h| LstmParams::threads_for(h, units(h), true);
        assert_eq!((cpu(1), cpu(32), cpu(64), cpu(130)), (8, 8, 8, 24));
        // Pinned past the rule: still at least one vector of lanes.
        assert_eq!(LstmParams::threads_for(64, 1, true), 64);
        assert_eq!(LstmParams::threads_for(8, 8, true), 8);
    }

    #[test]
    fn lstm_tuning_times_units_on_a_gpu_only() {
        // The seed model's first layer at batch 16: rows up to what fits, units 1 and 2 on a
        // GPU (64 / 4 would leave half a warp idle), the rule's 8 on a CPU adapter.
        let gpu = LstmParams::tune_candidates(16, 64, 2, false);
        let rows: Vec<u32> = gpu.iter().map(|&(r, _)| r).collect();
        assert_eq!(rows, [1, 1, 2, 2, 4, 4, 8, 8]);
        assert!(gpu.iter().all(|&(_, u)| u == 1 || u == 2), "{gpu:?}");
        let cpu = LstmParams::tune_candidates(16, 64, 2, true);
        assert_eq!(cpu, [(1, 8), (2, 8), (4, 8), (8, 8)]);
        // Small H: one unit a thread on a GPU; a batch of 2 caps the rows.
        assert_eq!(
            LstmParams::tune_candidates(2, 32, 1, false),
            [(1, 1), (2, 1)]
        );
        // Large H: 4 units, and the rows that fit 16 KiB of workgroup memory.
        let wide = LstmParams::tune_candidates(64, 256, 2, false);
        assert!(wide.contains(&(1, 4)), "{wide:?}");
        let fit = LstmParams::rows_for(64, 256, 2, true) as u32;
        assert!(wide.iter().all(|&(r, _)| r <= fit), "{wide:?}");
    }

    fn sum(batch: u32, m: u32, n: u32, k: u32, width: u32) -> (u32, u32) {
        let mut p = MatmulParams {
            batch,
            m,
            n,
            k,
            ..Default::default()
        };
        p.chunk = p.sum_chunk(width);
        (p.chunk, p.slices())
    }

    #[test]
    fn the_untuned_tile_is_the_largest_that_is_not_mostly_padding() {
        use super::MatmulTile::{self, Large, Medium, Small};
        let cases: [((u32, u32), MatmulTile); 5] = [
            ((1024, 1024), Large),
            ((64, 121), Medium), // a convolution's 64 filters
            ((288, 121), Large),
            ((6, 576), Small),
            ((16, 256), Small), // an LSTM step at batch 16
        ];
        for ((m, n), want) in cases {
            assert_eq!(MatmulTile::for_shape(m, n), want, "{m} x {n}");
        }
    }

    #[test]
    fn batch_sums_split_into_enough_slices_to_fill_the_adapter_and_no_more() {
        // LeNet's second convolution's weight gradient (64 images, 64 x 288, K = 121): 18 tiles,
        // so 4 slices on a CPU adapter (width 64) and 13 on a GPU (256).
        assert_eq!(sum(64, 64, 288, 121, 64), (16, 4));
        assert_eq!(sum(64, 64, 288, 121, 256), (5, 13));
        // A layer with tiles enough for any adapter: one slice, no partials to add.
        assert_eq!(sum(64, 256, 2304, 196, 256), (64, 1));
        // One tile and a short K: each slice at least MIN_SUM_DEPTH products deep.
        assert_eq!(sum(100, 1, 1, 2, 256), (100, 1));
        assert_eq!(sum(64, 32, 9, 676, 64), (1, 64));
        // An uneven last slice.
        assert_eq!(sum(10, 32, 32, 100, 4), (3, 4));
        assert_eq!(sum(1, 5, 5, 5, 256), (1, 1));
    }
}

/// Fused attention (shaders/attention.wgsl). Queries (B, Tq, H, Dk), keys (B, Tk, H, Dk) and
/// values (B, Tk, H, Dv), heads interleaved as a projection's output lays them out; the output
/// is (B, Tq, H, Dv) and the log-sum-exp per row (B, H, Tq).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct AttentionParams {
    /// Batch (B).
    pub batch: u32,
    /// Heads (H).
    pub heads: u32,
    /// Query steps (Tq).
    pub tq: u32,
    /// Key and value steps (Tk).
    pub tk: u32,
    /// Query and key width per head (Dk).
    pub dk: u32,
    /// Value width per head (Dv).
    pub dv: u32,
    /// 1: query i attends to keys j <= i (Keras's causal mask, aligned at the first step).
    pub causal: u32,
    /// 1 when query ids (B, Tq) are given: a query whose id is 0 attends to no key.
    pub has_qmask: u32,
    /// 1 when key ids (B, Tk) are given: a key whose id is 0 is attended by no query.
    pub has_kmask: u32,
    /// Scores are scale * q . k.
    pub scale: f32,
    /// Attention dropout: the probability of keeping a weight.
    pub keep_prob: f32,
    /// 1 / keep_prob (0 when everything is dropped).
    pub drop_scale: f32,
    /// Dropout key, low word.
    pub seed_lo: u32,
    /// Dropout key, high word.
    pub seed_hi: u32,
    /// Dropout counter of the first row.
    pub offset: u32,
    /// Where a kernel's second output starts in its packed output buffer, in elements: the
    /// log-sum-exp after the output (forward), dV after dK (backward).
    pub second_at: u32,
}

impl AttentionParams {
    /// The widest head the layers and launcher take.
    pub const MAX_HEAD_DIM: usize = 128;
    /// Rows a workgroup owns: query rows (forward, dQ) or key rows (dK, dV); shaders' TQ.
    pub const BLOCK_ROWS: u64 = 32;
    /// Output columns a workgroup computes; shaders' TW. Wider heads take more workgroups.
    pub const BLOCK_COLS: u64 = 64;
    /// Bit 31 of a dropout counter's second word: attention weights draw from counters
    /// (offset + row, TAG | key), apart from elementwise dropout's (offset + i, 0).
    pub const DROPOUT_TAG: u32 = 0x8000_0000;

    /// Threads per workgroup of the row kernels (shaders' LANES).
    pub const ROW_LANES: u64 = 8;
    /// The row kernels (`attention_rows_*_w<W>`): head widths up to W, and rows per thread of
    /// the forward pass, dQ's and dK's and dV's; keep in step with shaders/gen_attention_rows.py.
    pub const ROW_VARIANTS: [(u32, [u32; 3]); 3] =
        [(32, [16, 8, 8]), (64, [16, 8, 8]), (128, [8, 4, 4])];

    /// The row kernels' variant for these head widths: (W, rows per thread of each pass).
    pub fn row_variant(&self) -> (u32, [u32; 3]) {
        let width = self.dk.max(self.dv);
        Self::ROW_VARIANTS
            .into_iter()
            .find(|&(w, _)| width <= w)
            .unwrap_or(Self::ROW_VARIANTS[2])
    }

    /// Workgroups of row kernel `pass` (0 forward, 1 dQ, 2 dK and dV) for `steps` own rows of
    /// every (batch, head).
    pub fn row_workgroups(&self, pass: usize, steps: u32) -> u64 {
        let per_group = Self::ROW_LANES * self.row_variant().1[pass] as u64;
        (steps as u64).div_ceil(per_group) * self.batch as u64 * self.heads as u64
    }

    /// Workgroups for `steps` own rows of every (batch, head) and outputs `width` wide.
    pub fn workgroups(&self, steps: u32, width: u32) -> u64 {
        (steps as u64).div_ceil(Self::BLOCK_ROWS)
            * (width as u64).div_ceil(Self::BLOCK_COLS)
            * self.batch as u64
            * self.heads as u64
    }

    /// The dropout factor of weight (row, key): drop_scale or 0. `row` counts (b, h, i) rows.
    pub fn drop_factor(&self, row: u32, key: u32) -> f32 {
        if self.keep_prob >= 1.0 {
            return 1.0;
        }
        let bits = crate::reference::threefry2x32(
            [self.offset.wrapping_add(row), Self::DROPOUT_TAG | key],
            [self.seed_lo, self.seed_hi],
        )[0];
        let u = (bits >> 8) as f32 * (1.0 / 16_777_216.0);
        if u < self.keep_prob {
            self.drop_scale
        } else {
            0.0
        }
    }
}
