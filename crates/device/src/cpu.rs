//! Fast kernels for the CPU device, run where a training step spends its time. The plain loops in
//! [`reference`](crate::reference) stay the spec and the test oracle: every function here is
//! tested against its reference (`tests/cpu_fast.rs`) and gives the same result run to run (work
//! is split over output blocks, never over a sum).

use crate::params::{MatmulParams, MatmulSpec};
use crate::reference::activation;

/// C = act(op(A) · op(B) + bias), as [`reference::matmul`](crate::reference::matmul), through
/// matrixmultiply's packed, SIMD and multi-threaded sgemm (transposes are strides, not copies).
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
    for bi in 0..p.batch as usize {
        let a0 = bi * p.a_batch_stride as usize;
        let b0 = bi * p.b_batch_stride as usize;
        assert!(
            a.len() >= a0 + m * k && b.len() >= b0 + k * n,
            "operands checked by matmul_params"
        );
        let cb = &mut c[bi * m * n..(bi + 1) * m * n];
        let beta = match bias {
            Some(bias) => {
                for row in cb.chunks_exact_mut(n) {
                    row.copy_from_slice(&bias[..n]);
                }
                1.0
            }
            None => 0.0,
        };
        // SAFETY: the pointers and strides address only elements of `a`, `b` (checked above) and
        // `cb` (m x n, row-major); the three do not alias.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a[a0..].as_ptr(),
                rsa as isize,
                csa as isize,
                b[b0..].as_ptr(),
                rsb as isize,
                csb as isize,
                beta,
                cb.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        if spec.activation != crate::params::Activation::Identity {
            for v in cb.iter_mut() {
                *v = activation(spec.activation, *v);
            }
        }
    }
}
