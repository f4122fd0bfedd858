//! Fast kernels for the CPU device, run where a training step spends its time. The plain loops in
//! [`reference`](mod@crate::reference) stay the spec and the test oracle: every function here is
//! tested against its reference (`tests/cpu_fast.rs`) and gives the same result run to run (work
//! is split over output blocks, never over a sum).

mod attention;
mod conv;
mod gru;
mod lstm;
mod math;
mod simd;

pub use attention::{attention_backward, attention_forward};
pub use conv::{bias_channels, col2im, im2col, max_pool2d_forward, pool2d_route_backward};
pub use gru::{gru_backward, gru_forward};
pub use lstm::{lstm_backward, lstm_forward};

use rayon::prelude::*;

use crate::params::{
    Activation, BinaryOp, BroadcastParams, ElementwiseParams, EmbeddingParams, MatmulParams,
    MatmulSpec, OptimParams, ReduceOp, ReduceParams, UnaryOp,
};
use crate::reference;

/// C = act(op(A) · op(B) + bias), as [`reference::matmul`], through matrixmultiply's packed,
/// SIMD sgemm (transposes are strides, not copies), on rayon's threads.
pub fn matmul(
    p: &MatmulParams,
    spec: &MatmulSpec,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    // (row stride, column stride) of op(A) (M x K) and op(B) (K x N) in their stored layouts.
    let (rsa, csa) = if spec.trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if spec.trans_b { (1, k) } else { (n, 1) };
    // Batches of small products run one per rayon task, each sgemm on its own thread; a single
    // product, or large ones, split their rows over the threads (`par_gemm`).
    // A slice of C: one batch entry's product, or the sum of `chunk` entries' products.
    let chunk = p.chunk.max(1) as usize;
    let per_slice = p.slices() > 1 && m * n * k * chunk < SMALL_GEMM;
    let one = |(slice, cb): (usize, &mut [f32])| {
        let mut beta = match bias {
            Some(bias) => {
                for row in cb.chunks_exact_mut(n) {
                    row.copy_from_slice(&bias[..n]);
                }
                1.0
            }
            None => 0.0,
        };
        for bi in slice * chunk..(slice * chunk + chunk).min(p.batch as usize) {
            let a0 = bi * p.a_batch_stride as usize;
            let b0 = bi * p.b_batch_stride as usize;
            assert!(
                a.len() >= a0 + m * k && b.len() >= b0 + k * n,
                "operands checked by matmul_params"
            );
            let run = if per_slice { gemm } else { par_gemm };
            run(
                (m, k, n),
                (&a[a0..], rsa, csa),
                (&b[b0..], rsb, csb),
                beta,
                cb,
            );
            beta = 1.0;
        }
        activate(spec.activation, cb);
    };
    if per_slice {
        c.par_chunks_mut(m * n).enumerate().for_each(one);
    } else {
        c.chunks_mut(m * n).enumerate().for_each(one);
    }
}

/// Multiply-adds under which one product of a batch is left to a single thread.
const SMALL_GEMM: usize = 1 << 24;

/// Multiply-adds from which one product is split over rayon's threads.
const PAR_GEMM: usize = 1 << 20;

/// [`gemm`] split into blocks of C on rayon's threads, for products of [`PAR_GEMM`]
/// multiply-adds or more. The blocks depend on the shape alone ([`gemm_blocks`]), never on the
/// thread count, so neither do the bits (tested below).
/// (matrixmultiply's own threads, inside rayon's tasks, oversubscribed the cores: per-image
/// convolution GEMMs ran at one core's speed on two.)
fn par_gemm(
    dims: (usize, usize, usize),
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    let (m, _, n) = dims;
    let (rows, cols) = gemm_blocks(dims);
    if rows >= m && cols >= n {
        gemm(dims, a, b, beta, c)
    } else if cols >= n {
        gemm_rows(rows, dims, a, b, beta, c)
    } else {
        gemm_cols(cols, dims, a, b, beta, c)
    }
}

/// The blocks of C, (rows, columns), that a product of shape (m, k, n) splits into: one block
/// under [`PAR_GEMM`] multiply-adds; else a power of two from 2 to 8 (one per 4 [`PAR_GEMM`]),
/// as row blocks of at least 64 rows, or, where C has too few rows, column blocks of at least 64
/// columns (the backward products of weights: few rows, long sums). Each block packs the other
/// operand again, hence the minimum sizes and the cap: on two cores, 1024^3 ran at 210 GFLOP/s
/// in 2 blocks, 200 in 8, 192 in 16. A machine with more than 8 cores leaves some idle on one
/// product; batches of products (one per image) and the recurrences' directions use them.
fn gemm_blocks((m, k, n): (usize, usize, usize)) -> (usize, usize) {
    let work = m * k * n;
    if work < PAR_GEMM {
        return (m, n);
    }
    let blocks = (work / (4 * PAR_GEMM)).clamp(2, 8);
    let blocks = 1 << blocks.ilog2();
    let row_blocks = blocks.min(m / 64);
    if row_blocks >= 2 {
        return (m.div_ceil(row_blocks), n);
    }
    let col_blocks = blocks.min(n / 64).max(1);
    (m, n.div_ceil(col_blocks))
}

/// [`gemm`] over blocks of `rows` rows of C, on rayon's threads.
fn gemm_rows(
    rows: usize,
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    c[..m * n]
        .par_chunks_mut(rows * n)
        .enumerate()
        .for_each(|(i, cb)| {
            let a = &a[i * rows * rsa..];
            gemm((cb.len() / n, k, n), (a, rsa, csa), b, beta, cb)
        });
}

/// [`gemm`] over blocks of `cols` columns of C, on rayon's threads: each block is computed
/// into a contiguous buffer (C's columns are strided) and copied into place.
fn gemm_cols(
    cols: usize,
    (m, k, n): (usize, usize, usize),
    a: (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    let blocks: Vec<Vec<f32>> = (0..n.div_ceil(cols))
        .into_par_iter()
        .map(|j| {
            let (c0, w) = (j * cols, cols.min(n - j * cols));
            let mut block = vec![0.0; m * w];
            if beta != 0.0 {
                for (row, out) in c.chunks_exact(n).zip(block.chunks_exact_mut(w)) {
                    out.copy_from_slice(&row[c0..c0 + w]);
                }
            }
            gemm((m, k, w), a, (&b[c0 * csb..], rsb, csb), beta, &mut block);
            block
        })
        .collect();
    for (j, block) in blocks.iter().enumerate() {
        let w = block.len() / m;
        for (row, out) in block.chunks_exact(w).zip(c.chunks_exact_mut(n)) {
            out[j * cols..j * cols + w].copy_from_slice(row);
        }
    }
}

/// C (m x n, row-major, contiguous) = A · B + beta · C, where A (m x k) and B (k x n) are given as
/// (slice, row stride, column stride): transposes are strides, not copies. One thread.
///
/// Two packed sgemms, chosen by the operands' layout as measured on an AVX-512 machine
/// (`benches/results/cpu-vs-torch/README.md`): the `gemm` crate's kernels (AVX-512, AVX2/FMA or
/// NEON, picked at run time), 1.1 to 2x matrixmultiply's (AVX-512 or AVX2/FMA) on most shapes, except where
/// B is stored transposed with a column stride that is a multiple of 256 floats (1 KiB: the
/// LSTM's and Dense's backward products at power-of-two widths). There `gemm` packs B through
/// addresses that share one set of the L1 cache and runs at 0.3 to 0.8x matrixmultiply's speed
/// unless C has enough rows (512) to amortise the packing: 1984x512x64 runs 1.45x faster on
/// `gemm` all the same. Each is deterministic for a given shape.
fn gemm(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows > 0 && cols > 0).then(|| (rows - 1) * rs + (cols - 1) * cs + 1)
    };
    assert!(
        last(m, k, rsa, csa).is_none_or(|l| l <= a.len())
            && last(k, n, rsb, csb).is_none_or(|l| l <= b.len())
            && c.len() >= m * n,
        "gemm operands out of bounds"
    );
    if csb != 1 && csb % 256 == 0 && m < 512 {
        // SAFETY: the assert above keeps every address of A, B and C (m x n, row-major) inside
        // its slice; C is borrowed mutably, so it aliases neither A nor B.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                rsa as isize,
                csa as isize,
                b.as_ptr(),
                rsb as isize,
                csb as isize,
                beta,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        return;
    }
    // SAFETY: as above. `gemm` computes dst = alpha · dst + beta · lhs · rhs, reading dst only
    // when asked to.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Elements per task of the elementwise kernels: large enough that a task outweighs its
/// scheduling, small enough to spread a layer's parameters over every core.
const CHUNK: usize = 1 << 14;

/// Adam in place, as [`reference::adam_update`], over chunks on rayon's threads (each element's
/// update is independent, so the bits are the reference's).
pub fn adam_update(p: &OptimParams, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    par_two_slots(p, w, g, m, v, reference::adam_update);
}

/// RMSprop in place, as [`reference::rmsprop_update`], over chunks on rayon's threads.
pub fn rmsprop_update(p: &OptimParams, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    par_two_slots(p, w, g, m, v, reference::rmsprop_update);
}

/// An optimizer update with two state slots: (params, w, g, m, v), as the reference's.
type TwoSlotUpdate = fn(&OptimParams, &mut [f32], &[f32], &mut [f32], &mut [f32]);

/// An elementwise update with two state slots, chunk by chunk on rayon's threads.
fn par_two_slots(
    p: &OptimParams,
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    update: TwoSlotUpdate,
) {
    let n = p.n as usize;
    w[..n]
        .par_chunks_mut(CHUNK)
        .zip(g[..n].par_chunks(CHUNK))
        .zip(m[..n].par_chunks_mut(CHUNK))
        .zip(v[..n].par_chunks_mut(CHUNK))
        .for_each(|(((w, g), m), v)| {
            let p = OptimParams {
                n: w.len() as u32,
                ..*p
            };
            update(&p, w, g, m, v);
        });
}

/// SGD in place, as [`reference::sgd_update`], over chunks on rayon's threads.
pub fn sgd_update(p: &OptimParams, w: &mut [f32], g: &[f32], u: &mut [f32]) {
    let n = p.n as usize;
    w[..n]
        .par_chunks_mut(CHUNK)
        .zip(g[..n].par_chunks(CHUNK))
        .zip(u[..n].par_chunks_mut(CHUNK))
        .for_each(|((w, g), u)| {
            let p = OptimParams {
                n: w.len() as u32,
                ..*p
            };
            reference::sgd_update(&p, w, g, u);
        });
}

/// dtable += the rows of dout summed by id, as [`reference::embedding_backward`], in
/// O(N log N + N E) instead of O(N^2 E): positions are grouped by id (a stable sort keeps each
/// id's positions in order), so every row's sum runs in the reference's order and gives its bits.
pub fn embedding_backward(p: &EmbeddingParams, dout: &[f32], ids: &[u32], dtable: &mut [f32]) {
    let (dim, n) = (p.dim as usize, p.n as usize);
    let mut order: Vec<usize> = (0..n).filter(|&i| ids[i] < p.vocab).collect();
    order.sort_by_key(|&i| ids[i]);
    let mut acc = vec![0.0f32; dim];
    for group in order.chunk_by(|&a, &b| ids[a] == ids[b]) {
        acc.fill(0.0);
        for &i in group {
            for (a, d) in acc.iter_mut().zip(&dout[i * dim..(i + 1) * dim]) {
                *a += d;
            }
        }
        let row = ids[group[0]] as usize * dim;
        for (t, a) in dtable[row..row + dim].iter_mut().zip(&acc) {
            *t += a;
        }
    }
}

/// Reduces the axis of (outer, len, inner), as [`reference::reduce`]: each output accumulates the
/// axis in the same order as the reference (so the bits match), but row by row over contiguous
/// memory instead of one strided column at a time, on rayon's threads over outer and inner blocks.
pub fn reduce(p: &ReduceParams, op: ReduceOp, x: &[f32], out: &mut [f32]) {
    let (len, inner) = (p.len as usize, p.inner as usize);
    if inner == 0 || len == 0 {
        return reference::reduce(p, op, x, out);
    }
    if inner == 1 {
        // Contiguous rows: each output is one row's fold, many rows per task.
        let rows = (CHUNK / len).max(1);
        return out[..p.out_len()]
            .par_chunks_mut(rows)
            .enumerate()
            .for_each(|(blk, out)| {
                for (r, o) in out.iter_mut().enumerate() {
                    let row = x[(blk * rows + r) * len..][..len].iter().copied();
                    *o = match op {
                        ReduceOp::Sum => row.sum(),
                        ReduceOp::Mean => row.sum::<f32>() / len as f32,
                        ReduceOp::Max => row.fold(f32::MIN, f32::max),
                    };
                }
            });
    }
    // Outputs per task: about CHUNK elements of x each.
    let block = (CHUNK / len).clamp(64, inner.max(64));
    out[..p.out_len()]
        .par_chunks_mut(inner)
        .enumerate()
        .for_each(|(o, acc)| {
            acc.par_chunks_mut(block)
                .enumerate()
                .for_each(|(blk, acc)| {
                    let first = o * len * inner + blk * block;
                    // Iterator::sum for f32 starts from -0.0, so a sum of negative zeros stays
                    // negative; start where it does.
                    acc.fill(match op {
                        ReduceOp::Max => f32::MIN,
                        ReduceOp::Sum | ReduceOp::Mean => -0.0,
                    });
                    for l in 0..len {
                        let row = &x[first + l * inner..][..acc.len()];
                        match op {
                            ReduceOp::Max => {
                                for (a, v) in acc.iter_mut().zip(row) {
                                    *a = a.max(*v);
                                }
                            }
                            ReduceOp::Sum | ReduceOp::Mean => {
                                for (a, v) in acc.iter_mut().zip(row) {
                                    *a += v;
                                }
                            }
                        }
                    }
                    if op == ReduceOp::Mean {
                        for a in acc.iter_mut() {
                            *a /= len as f32;
                        }
                    }
                });
        });
}

/// Runs `f` on matching chunks of an output and one or two inputs on rayon's threads: for
/// elementwise kernels whose reference takes (params with n = the chunk's length, inputs, output).
fn par_elementwise<'a>(
    n: usize,
    out: &mut [f32],
    ins: [&'a [f32]; 2],
    f: impl Fn(usize, [&[f32]; 2], &mut [f32]) + Sync,
) {
    out[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, out)| {
            let at = |x: &'a [f32]| -> &'a [f32] {
                if x.len() >= n {
                    &x[i * CHUNK..i * CHUNK + out.len()]
                } else {
                    x
                }
            };
            f(out.len(), [at(ins[0]), at(ins[1])], out)
        });
}

/// A binary op with b broadcast, as [`reference::binary`], over chunks on rayon's threads.
pub fn binary(p: &ElementwiseParams, op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        BinaryOp::Add => binary_rows(p, a, b, out, |x, y| x + y),
        BinaryOp::Sub => binary_rows(p, a, b, out, |x, y| x - y),
        BinaryOp::Mul => binary_rows(p, a, b, out, |x, y| x * y),
        BinaryOp::Div => binary_rows(p, a, b, out, |x, y| x / y),
    }
}

/// [`binary`] with the op fixed: b is walked in runs up to the end of each of its repeats (the
/// whole of it, a row, or one scalar), so that the loops vectorize; the bits are the
/// reference's.
fn binary_rows(
    p: &ElementwiseParams,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    let (n, b_len) = (p.n as usize, (p.b_len as usize).max(1));
    out[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, out)| {
            let start = c * CHUNK;
            let a = &a[start..start + out.len()];
            if b_len == 1 {
                let y = b[0];
                for (o, &x) in out.iter_mut().zip(a) {
                    *o = f(x, y);
                }
                return;
            }
            let mut j = 0;
            while j < out.len() {
                let ib = (start + j) % b_len;
                let run = (b_len - ib).min(out.len() - j);
                let (o, x, y) = (&mut out[j..j + run], &a[j..j + run], &b[ib..ib + run]);
                for k in 0..run {
                    o[k] = f(x[k], y[k]);
                }
                j += run;
            }
        });
}

/// A binary op (or, with none, a copy of b) under NumPy broadcasting, as
/// [`reference::binary_broadcast`], over chunks on rayon's threads (each element's value is the
/// reference's).
pub fn binary_broadcast(
    p: &BroadcastParams,
    op: Option<BinaryOp>,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    match op {
        Some(BinaryOp::Add) => broadcast_runs(p, a, b, out, |x, y| x + y),
        Some(BinaryOp::Sub) => broadcast_runs(p, a, b, out, |x, y| x - y),
        Some(BinaryOp::Mul) => broadcast_runs(p, a, b, out, |x, y| x * y),
        Some(BinaryOp::Div) => broadcast_runs(p, a, b, out, |x, y| x / y),
        // A copy of b: a (whatever the caller passed) is not read.
        None => broadcast_runs(p, &[], b, out, |_, y| y),
    }
}

/// [`binary_broadcast`] with the op fixed: each chunk walks the output in runs along the last
/// (merged) dimension, the operands' indices computed once per run and the run's loop
/// specialised by its strides (1 or 0), so that it vectorizes. Every element is `f` of the same
/// two operands as the reference's, so the bits are its.
fn broadcast_runs(
    p: &BroadcastParams,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    let last = (p.rank as usize).max(1) - 1;
    let inner = (p.shape[last] as usize).max(1);
    // Without a (a copy) its stride is 0 and its value never read.
    let sa = if a.is_empty() {
        0
    } else {
        p.a_strides[last] as usize
    };
    let sb = p.b_strides[last] as usize;
    out[..p.n as usize]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, out)| {
            let start = c * CHUNK;
            let mut j = 0;
            while j < out.len() {
                let i = start + j;
                let run = (inner - i % inner).min(out.len() - j);
                let (ia, ib) = p.index(i);
                let o = &mut out[j..j + run];
                match (sa, sb) {
                    (1, 1) => {
                        let (x, y) = (&a[ia..ia + run], &b[ib..ib + run]);
                        for k in 0..run {
                            o[k] = f(x[k], y[k]);
                        }
                    }
                    (1, 0) => {
                        let (x, y) = (&a[ia..ia + run], b[ib]);
                        for k in 0..run {
                            o[k] = f(x[k], y);
                        }
                    }
                    (0, 1) => {
                        let (x, y) = (a.get(ia).copied().unwrap_or(0.0), &b[ib..ib + run]);
                        for k in 0..run {
                            o[k] = f(x, y[k]);
                        }
                    }
                    _ => {
                        for (k, o) in o.iter_mut().enumerate() {
                            let x = if sa == 0 {
                                a.get(ia).copied().unwrap_or(0.0)
                            } else {
                                a[ia + k * sa]
                            };
                            *o = f(x, b[ib + k * sb]);
                        }
                    }
                }
                j += run;
            }
        });
}

/// `act` in place over a matmul's output, as [`reference::activation`] with `cpu::math`'s
/// sigmoid and tanh (within a few ulp of the reference's libm; the other activations give its
/// bits). Each arm fixes the activation, so that its loop vectorizes.
fn activate(act: Activation, v: &mut [f32]) {
    #[inline(always)]
    fn each(act: Activation, v: &mut [f32]) {
        for x in v {
            *x = reference::activation_with(act, *x, math::sigmoid, math::tanh);
        }
    }
    match act {
        Activation::Identity => {}
        Activation::Sigmoid => each(Activation::Sigmoid, v),
        Activation::Tanh => each(Activation::Tanh, v),
        Activation::Relu => each(Activation::Relu, v),
        Activation::Step => each(Activation::Step, v),
    }
}

/// out = f(x) for `op` with `cpu::math`'s sigmoid and tanh; inlined where the op is fixed, so
/// that the loop vectorizes.
#[inline(always)]
fn map_unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = reference::unary_value_with(op, v, math::sigmoid, math::tanh);
    }
}

/// dx = dy * f'(x), as [`map_unary`].
#[inline(always)]
fn map_unary_backward(op: UnaryOp, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
        *d = g * reference::unary_derivative_with(op, v, math::sigmoid, math::tanh);
    }
}

/// A unary op, as [`reference::unary`], over chunks on rayon's threads. Relu, sigmoid and tanh
/// run in vectorized loops with the op fixed: Relu gives the reference's bits, sigmoid and tanh
/// are `cpu::math`'s (a few ulp from the reference's libm); the others call the reference per
/// element.
pub fn unary(p: &ElementwiseParams, op: UnaryOp, x: &[f32], out: &mut [f32]) {
    par_elementwise(p.n as usize, out, [x, &[]], |n, [x, _], out| {
        let (x, out) = (&x[..n], &mut out[..n]);
        match op {
            UnaryOp::Relu => map_unary(UnaryOp::Relu, x, out),
            UnaryOp::Sigmoid => map_unary(UnaryOp::Sigmoid, x, out),
            UnaryOp::Tanh => map_unary(UnaryOp::Tanh, x, out),
            _ => {
                let p = ElementwiseParams { n: n as u32, ..*p };
                reference::unary(&p, op, x, out)
            }
        }
    });
}

/// dx = dy * f'(x), as [`reference::unary_backward`], over chunks on rayon's threads (Relu,
/// sigmoid and tanh vectorized, as in [`unary`]).
pub fn unary_backward(p: &ElementwiseParams, op: UnaryOp, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    par_elementwise(p.n as usize, dx, [x, dy], |n, [x, dy], dx| {
        let (x, dy, dx) = (&x[..n], &dy[..n], &mut dx[..n]);
        match op {
            UnaryOp::Relu => map_unary_backward(UnaryOp::Relu, x, dy, dx),
            UnaryOp::Sigmoid => map_unary_backward(UnaryOp::Sigmoid, x, dy, dx),
            UnaryOp::Tanh => map_unary_backward(UnaryOp::Tanh, x, dy, dx),
            _ => {
                let p = ElementwiseParams { n: n as u32, ..*p };
                reference::unary_backward(&p, op, x, dy, dx)
            }
        }
    });
}

/// out += scalar * x, as [`reference::axpy`], over chunks on rayon's threads.
pub fn axpy(p: &ElementwiseParams, x: &[f32], out: &mut [f32]) {
    par_elementwise(p.n as usize, out, [x, &[]], |n, [x, _], out| {
        let p = ElementwiseParams { n: n as u32, ..*p };
        reference::axpy(&p, x, out)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A split product's bits do not depend on rayon's thread count, for either kernel, row
    /// and column blocks, either operand transposed and beta 1: the blocks are the shape's alone.
    #[test]
    fn split_products_give_the_same_bits_on_any_thread_count() {
        for ((m, k, n), trans_a, trans_b, beta) in [
            ((277, 300, 45), false, false, 0.0),
            ((277, 300, 45), true, false, 1.0),
            ((277, 300, 45), false, true, 1.0),
            ((1030, 300, 45), false, true, 0.0),
            ((40, 2000, 333), true, false, 1.0),
            ((40, 2000, 333), false, true, 0.0),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 53 % 97) as f32 - 48.0) / 9.0)
                .collect();
            let c0: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32 - 6.0).collect();
            let sa = if trans_a { (1, m) } else { (k, 1) };
            let sb = if trans_b { (1, k) } else { (n, 1) };
            let (rows, cols) = gemm_blocks((m, k, n));
            assert!(rows < m || cols < n, "{m} {k} {n} is split");
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut c = c0.clone();
                pool.install(|| {
                    par_gemm((m, k, n), (&a, sa.0, sa.1), (&b, sb.0, sb.1), beta, &mut c)
                });
                c.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            let one = run(1);
            for threads in [2, 3, 5] {
                assert_eq!(
                    run(threads),
                    one,
                    "m {m}, {trans_a} {trans_b}, {threads} threads"
                );
            }
        }
    }
}
