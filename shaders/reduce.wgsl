// Reductions along one axis and row-wise softmax.
//
// A tensor is viewed as (OUTER, LEN, INNER) around the reduced axis; the output is (OUTER, INNER).
// `reduce`: one workgroup of 64 threads per output element: strided partial results, then a
// tree in workgroup memory, so the order of summation is fixed and runs are deterministic.
// `reduce_serial`: one thread per output element, summing in index order; for short axes (a sum
// over two directions), where a workgroup per output would idle 62 of its 64 threads, and for
// many outputs over a moderate axis, where neighbouring threads read neighbouring addresses. The
// host's rule (`reduce_kernel` in ops/reduce.rs) picks by shape.
// `softmax` works on the last axis, (ROWS, LEN), one workgroup per row, max-subtracted.
// `softmax_backward`: from y = softmax(x) and dy, dx = y * (dy - sum(dy * y)); with LOG, y is
// log_softmax(x) and dx = dy - exp(y) * sum(dy).

struct ReduceParams {
    outer: u32,
    len: u32,
    inner: u32,
    _pad: u32,
}

// reduce: 0 sum, 1 mean, 2 max
override OP: u32 = 0u;
// softmax: false softmax, true log-softmax
override LOG: bool = false;

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_index: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;

const WG: u32 = 64u;
var<workgroup> part: array<f32, 64>;
var<workgroup> part_index: array<u32, 64>;

// Combines every thread's `v` over the workgroup, the maximum when `take_max` and the sum
// otherwise, in a fixed tree order, and returns it to every thread. Call from uniform control flow;
// it ends with a barrier, so `part` may be written again straight after.
fn workgroup_reduce(lid: u32, v: f32, take_max: bool) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            if (take_max) {
                part[lid] = max(part[lid], part[lid + s]);
            } else {
                part[lid] = part[lid] + part[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

fn combine(u: f32, v: f32) -> f32 {
    if (OP == 2u) {
        return max(u, v);
    }
    return u + v;
}

@compute @workgroup_size(256)
fn reduce_serial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = flat_index(wid, nwg, lid);
    if (o >= p.outer * p.inner) {
        return;
    }
    let base = (o / p.inner) * p.len * p.inner + o % p.inner;
    var acc = select(0.0, F32_LOWEST, OP == 2u);
    for (var l = 0u; l < p.len; l = l + 1u) {
        acc = combine(acc, x[base + l * p.inner]);
    }
    if (OP == 1u) {
        acc = acc / f32(p.len);
    }
    out[o] = acc;
}

@compute @workgroup_size(64)
fn reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = group_index(wid, nwg);
    if (o >= p.outer * p.inner) {
        return;
    }
    let base = (o / p.inner) * p.len * p.inner + o % p.inner;
    var acc = select(0.0, F32_LOWEST, OP == 2u);
    for (var l = lid; l < p.len; l = l + WG) {
        acc = combine(acc, x[base + l * p.inner]);
    }
    var r = workgroup_reduce(lid, acc, OP == 2u);
    if (lid == 0u) {
        if (OP == 1u) {
            r = r / f32(p.len);
        }
        out[o] = r;
    }
}

@compute @workgroup_size(64)
fn argmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = group_index(wid, nwg);
    if (o >= p.outer * p.inner) {
        return;
    }
    let base = (o / p.inner) * p.len * p.inner + o % p.inner;
    var best = F32_LOWEST;
    var best_l = 0xffffffffu;
    for (var l = lid; l < p.len; l = l + WG) {
        let v = x[base + l * p.inner];
        if (best_l == 0xffffffffu || v > best) {
            best = v;
            best_l = l;
        }
    }
    part[lid] = best;
    part_index[lid] = best_l;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            let v = part[lid + s];
            let vl = part_index[lid + s];
            let u = part[lid];
            let ul = part_index[lid];
            // Greater value wins; ties go to the smaller index (the first maximum), as numpy does.
            let take = vl != 0xffffffffu && (ul == 0xffffffffu || v > u || (v == u && vl < ul));
            if (take) {
                part[lid] = v;
                part_index[lid] = vl;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out_index[o] = part_index[0];
    }
}

@compute @workgroup_size(64)
fn softmax(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if (row >= p.outer) {
        return;
    }
    let base = row * p.len;
    var m = F32_LOWEST;
    for (var l = lid; l < p.len; l = l + WG) {
        m = max(m, x[base + l]);
    }
    let row_max = workgroup_reduce(lid, m, true);
    var acc = 0.0;
    for (var l = lid; l < p.len; l = l + WG) {
        acc = acc + exp(x[base + l] - row_max);
    }
    let total = workgroup_reduce(lid, acc, false);
    let log_total = log(total);
    for (var l = lid; l < p.len; l = l + WG) {
        let z = x[base + l] - row_max;
        if (LOG) {
            out[base + l] = z - log_total;
        } else {
            out[base + l] = exp(z) / total;
        }
    }
}

@compute @workgroup_size(64)
fn softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if (row >= p.outer) {
        return;
    }
    let base = row * p.len;
    var acc = 0.0;
    for (var l = lid; l < p.len; l = l + WG) {
        if (LOG) {
            acc = acc + dy[base + l];
        } else {
            acc = acc + dy[base + l] * x[base + l];
        }
    }
    let total = workgroup_reduce(lid, acc, false);
    for (var l = lid; l < p.len; l = l + WG) {
        let y = x[base + l];
        if (LOG) {
            out[base + l] = dy[base + l] - exp(y) * total;
        } else {
            out[base + l] = y * (dy[base + l] - total);
        }
    }
}
