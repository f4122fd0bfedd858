// Moving blocks between tensors: the copy behind narrow (slicing one axis), concat and their
// gradients.
//
// Both tensors are viewed as (outer, axis, inner) around the sliced axis. `slice_copy` copies
// `count` entries of the source's axis from src_start into the destination's axis at dst_start:
//   dst[o, dst_start + a, i] (=, or += when ACCUMULATE) src[o, src_start + a, i]
// one thread per copied element.

struct SliceParams {
    outer: u32,
    count: u32,
    inner: u32,
    src_axis: u32,
    src_start: u32,
    dst_axis: u32,
    dst_start: u32,
    _pad: u32,
}

override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> p: SliceParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn slice_copy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    let block = p.count * p.inner;
    if (idx >= p.outer * block) {
        return;
    }
    let o = idx / block;
    let a = (idx % block) / p.inner;
    let i = idx % p.inner;
    let s = (o * p.src_axis + p.src_start + a) * p.inner + i;
    let d = (o * p.dst_axis + p.dst_start + a) * p.inner + i;
    if (ACCUMULATE) {
        dst[d] += src[s];
    } else {
        dst[d] = src[s];
    }
}
