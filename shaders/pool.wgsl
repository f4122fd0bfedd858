// 2-D pooling over NCHW tensors: max, average, stochastic (Zeiler & Fergus 2013).
//
// Windows KH x KW at stride S, no padding; OH = (H - KH) / S + 1 rounded down (Keras "valid").
// Global average pooling is average pooling with the window the size of the image.
// Backward kernels are gathers: each input pixel sums over the windows that cover it, in a fixed
// order (deterministic, no atomics).
//
// `max_pool2d_forward` records the argmax (flat input index) of each window; the first maximum wins.
// `stochastic_pool2d_forward` (training) picks one activation per window with probability
// proportional to its value (activations are expected non-negative, e.g. after relu), from the
// Threefry generator (common.wgsl) keyed by (seed_lo, seed_hi) at counter offset + output index; a window of
// zeros yields 0. It records the pick like max pooling, and shares its backward.
// `stochastic_pool2d_eval` (inference) outputs the probability-weighted average sum(a^2) / sum(a).

struct PoolParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    oh: u32,
    ow: u32,
    seed_lo: u32,
    seed_hi: u32,
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // (N, C, H, W)
@group(0) @binding(2) var<storage, read_write> y: array<f32>;       // (N, C, OH, OW)
@group(0) @binding(3) var<storage, read_write> arg: array<u32>;     // (N, C, OH, OW)
@group(0) @binding(4) var<storage, read> dy: array<f32>;            // (N, C, OH, OW)
@group(0) @binding(5) var<storage, read> arg_in: array<u32>;        // (N, C, OH, OW); read in MODE 0 only
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;      // (N, C, H, W)

// Flat index of the window's top-left input pixel, for output `o`.
fn window_base(o: u32) -> u32 {
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let nc = o / (p.ow * p.oh);
    return (nc * p.h + oy * p.stride) * p.w + ox * p.stride;
}

@compute @workgroup_size(256)
fn max_pool2d_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = flat_index(wid, nwg, lid);
    if (o >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let base = window_base(o);
    var best = base;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            let i = base + ky * p.w + kx;
            if (x[i] > x[best]) {
                best = i;
            }
        }
    }
    y[o] = x[best];
    arg[o] = best;
}

@compute @workgroup_size(256)
fn avg_pool2d_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = flat_index(wid, nwg, lid);
    if (o >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let base = window_base(o);
    var acc = 0.0;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            acc = acc + x[base + ky * p.w + kx];
        }
    }
    y[o] = acc / f32(p.kh * p.kw);
}

@compute @workgroup_size(256)
fn stochastic_pool2d_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = flat_index(wid, nwg, lid);
    if (o >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let base = window_base(o);
    var total = 0.0;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            total = total + max(x[base + ky * p.w + kx], 0.0);
        }
    }
    let bits = threefry2x32(p.offset + o, 0u, p.seed_lo, p.seed_hi).x;
    let goal = f32(bits >> 8u) * (1.0 / 16777216.0) * total;
    var pick = base;
    var run = 0.0;
    var found = false;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            let i = base + ky * p.w + kx;
            let a = max(x[i], 0.0);
            run = run + a;
            if (!found && a > 0.0 && goal < run) {
                pick = i;
                found = true;
            }
        }
    }
    if (found) {
        y[o] = x[pick];
    } else {
        y[o] = 0.0;
    }
    // An empty window routes no gradient: point it past the input.
    arg[o] = select(0xffffffffu, pick, found);
}

@compute @workgroup_size(256)
fn stochastic_pool2d_eval(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = flat_index(wid, nwg, lid);
    if (o >= p.n * p.c * p.oh * p.ow) {
        return;
    }
    let base = window_base(o);
    var s = 0.0;
    var q = 0.0;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            let a = max(x[base + ky * p.w + kx], 0.0);
            s = s + a;
            q = q + a * a;
        }
    }
    y[o] = select(0.0, q / s, s > 0.0);
}

// The outputs whose window covers input pixel (iy, ix): oy in [first, last], likewise ox.
fn covering(i: u32, k: u32, out: u32) -> vec2<u32> {
    var first = 0u;
    if (i + 1u > k) {
        first = (i + 1u - k + p.stride - 1u) / p.stride;
    }
    let last = min(i / p.stride, out - 1u);
    return vec2<u32>(first, last + 1u);
}

// dx[i] = sum over the windows covering i of (MODE):
//   0: dy where the window's pick is i (max and training-time stochastic pooling);
//   1: dy / (kh * kw) (average pooling);
//   2: dy * (2 a_i S - Q) / S^2 with S = sum(a), Q = sum(a^2) over the window, a = max(x, 0)
//      (inference-time stochastic pooling, y = Q / S; 0 where a_i = 0 or S = 0).
override MODE: u32 = 0u;

// (S, Q) of the window of output o.
fn window_sums(o: u32) -> vec2<f32> {
    let base = window_base(o);
    var s = 0.0;
    var q = 0.0;
    for (var ky = 0u; ky < p.kh; ky = ky + 1u) {
        for (var kx = 0u; kx < p.kw; kx = kx + 1u) {
            let a = max(x[base + ky * p.w + kx], 0.0);
            s = s + a;
            q = q + a * a;
        }
    }
    return vec2<f32>(s, q);
}

@compute @workgroup_size(256)
fn pool2d_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n * p.c * p.h * p.w) {
        return;
    }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let nc = i / (p.w * p.h);
    let ry = covering(iy, p.kh, p.oh);
    let rx = covering(ix, p.kw, p.ow);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy = oy + 1u) {
        for (var ox = rx.x; ox < rx.y; ox = ox + 1u) {
            let o = (nc * p.oh + oy) * p.ow + ox;
            if (MODE == 0u) {
                if (arg_in[o] == i) {
                    acc = acc + dy[o];
                }
            } else if (MODE == 1u) {
                acc = acc + dy[o];
            } else {
                let a = max(x[i], 0.0);
                let sq = window_sums(o);
                if (a > 0.0 && sq.x > 0.0) {
                    acc = acc + dy[o] * (2.0 * a * sq.x - sq.y) / (sq.x * sq.x);
                }
            }
        }
    }
    if (MODE == 1u) {
        dx[i] = acc / f32(p.kh * p.kw);
    } else {
        dx[i] = acc;
    }
}
