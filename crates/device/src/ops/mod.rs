//! Launchers: one public op per kernel on [`Device`](crate::Device), one file per shader family.
//! Each validates its arguments (typed errors naming op and shapes), allocates its output, then
//! either records a dispatch (wgpu) or runs on the host (CPU device: the fast kernel in
//! [`cpu`](crate::cpu) where there is one, the reference under [`Device::cpu_reference`]).
//! Launchers never submit.
//!
//! [`Device::cpu_reference`]: crate::Device::cpu_reference

/// The CPU device's kernel `f`: `crate::cpu::f`, or `reference::f` on the reference device.
macro_rules! host_kernel {
    ($device:expr, $f:ident) => {
        if $device.cpu_fast() {
            crate::cpu::$f
        } else {
            crate::reference::$f
        }
    };
}

pub(crate) mod attention;
mod broadcast;
pub(crate) mod conv;
mod dropout;
mod elementwise;
mod embedding;
pub(crate) mod gru;
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
