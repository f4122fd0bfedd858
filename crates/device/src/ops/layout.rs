//! Slicing one axis and writing into a slice: the device side of narrow and concat.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::{groups, shape_str};
use crate::params::SliceParams;
use crate::shaders::ShaderFamily;
use crate::{reference, DType, Device, Error, Result, Tensor};

impl Device {
    fn slice_launch(
        &self,
        p: &SliceParams,
        accumulate: bool,
        src: &Tensor,
        dst: &Tensor,
    ) -> Result<()> {
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("slice_copy");
                let mut out = self.host_f32(dst);
                reference::slice_copy(p, accumulate, &self.host_f32(src), &mut out);
                self.count_dispatch();
                self.host_store(dst, &out);
                Ok(())
            }
            Backend::Gpu(g) => g.launch(Launch {
                family: ShaderFamily::Layout,
                entry: "slice_copy",
                overrides: &[("ACCUMULATE", accumulate as u32 as f64)],
                params: bytemuck::bytes_of(p),
                bindings: &[(1, src), (2, dst)],
                workgroups: groups(p.len(), 256),
            }),
        }
    }

    /// Entries start..start+len of `axis`; the other axes whole.
    pub fn narrow(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        let op = "narrow";
        self.check(op, x)?;
        let shape = x.shape();
        if axis >= shape.len() || len == 0 || start + len > shape[axis] {
            return Err(Error::invalid(
                op,
                format!(
                    "entries {start}..{} of axis {axis} do not fit in shape {}",
                    start + len,
                    shape_str(shape)
                ),
            ));
        }
        let mut out_shape = shape.to_vec();
        out_shape[axis] = len;
        let p = SliceParams {
            outer: shape[..axis].iter().product::<usize>() as u32,
            count: len as u32,
            inner: shape[axis + 1..].iter().product::<usize>() as u32,
            src_axis: shape[axis] as u32,
            src_start: start as u32,
            dst_axis: len as u32,
            dst_start: 0,
            _pad: 0,
        };
        let out = match self.backend() {
            Backend::Cpu => self.host_tensor(self.host_zeros(p.len()), &out_shape),
            Backend::Gpu(_) => self.alloc(op, DType::F32, &out_shape)?,
        };
        self.slice_launch(&p, false, x, &out)?;
        Ok(out)
    }

    /// Writes `src` into entries start.. of `dst`'s `axis`, in place; `accumulate` adds instead.
    /// `src` has `dst`'s shape except along `axis`.
    pub fn slice_assign(
        &self,
        dst: &Tensor,
        axis: usize,
        start: usize,
        src: &Tensor,
        accumulate: bool,
    ) -> Result<()> {
        let op = "slice_assign";
        self.check(op, dst)?;
        self.check(op, src)?;
        let (ds, ss) = (dst.shape(), src.shape());
        let fits = axis < ds.len()
            && ss.len() == ds.len()
            && (0..ds.len()).all(|a| a == axis || ds[a] == ss[a])
            && start + ss[axis] <= ds[axis];
        if !fits {
            return Err(Error::shape(
                op,
                format!(
                    "a block fitting {} at entry {start} of axis {axis}",
                    shape_str(ds)
                ),
                shape_str(ss),
            ));
        }
        if dst.same_storage(src) {
            return Err(Error::invalid(op, "dst and src must be separate buffers"));
        }
        let p = SliceParams {
            outer: ds[..axis].iter().product::<usize>() as u32,
            count: ss[axis] as u32,
            inner: ds[axis + 1..].iter().product::<usize>() as u32,
            src_axis: ss[axis] as u32,
            src_start: 0,
            dst_axis: ds[axis] as u32,
            dst_start: start as u32,
            _pad: 0,
        };
        self.slice_launch(&p, accumulate, src, dst)
    }
}
