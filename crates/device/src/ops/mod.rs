//! Launchers: one public op per kernel on [`Device`](crate::Device), one file per shader family.
//! Each validates its arguments (typed errors naming op and shapes), allocates its output, then
//! either records a dispatch (wgpu) or runs the reference (CPU device). Launchers never submit.

pub(crate) mod conv;
mod dropout;
mod elementwise;
mod embedding;
mod layout;
pub(crate) mod loss;
pub(crate) mod lstm;
pub(crate) mod matmul;
mod optim;
pub(crate) mod pool;
mod reduce;

/// Workgroups for `n` threads at `size` threads each.
pub(crate) fn groups(n: usize, size: usize) -> u64 {
    n.div_ceil(size) as u64
}

pub(crate) fn shape_str(s: &[usize]) -> String {
    format!("{s:?}")
}
