// Fused optimizer updates over one flat parameter buffer: the graph crate packs every parameter
// of a model into one allocation (views at aligned offsets), so a whole step is one dispatch.
// Parameters and state are updated in place.
//
// Adam, as Keras computes it:  alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
//   m += (g - m) * (1 - beta1);  v += (g^2 - v) * (1 - beta2);  w -= alpha * m / (sqrt(v) + eps)
// SGD with momentum, as Keras computes it:  u = momentum * u - lr * g
//   w += u  (or, Nesterov, w += momentum * u - lr * g)
// RMSprop, as Keras computes it:  v = rho * v + (1 - rho) * g^2;  inc = lr * g / sqrt(v + eps)
//   w -= inc  (or, with momentum, m = momentum * m + inc;  w -= m)
// Decoupled weight decay (AdamW, RMSprop's weight_decay), before the update, as Keras:
//   w -= w * weight_decay * lr

// One params struct for all: Adam reads alpha, beta1, beta2, eps; SGD reads lr (in `alpha`),
// momentum (in `beta1`) and nesterov; RMSprop lr (in `alpha`), momentum (in `beta1`), rho (in
// `beta2`), eps and one_minus_rho.
struct OptimParams {
    n: u32,
    alpha: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    nesterov: u32,
    weight_decay: f32,
    lr: f32,
    one_minus_rho: f32,
    parts: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read_write> w: array<f32>; // parameters, updated in place
@group(0) @binding(2) var<storage, read> g: array<f32>;       // gradients
@group(0) @binding(3) var<storage, read_write> m: array<f32>; // Adam first moment / velocity
@group(0) @binding(4) var<storage, read_write> v: array<f32>; // Adam second moment / mean square

// Gradient clipping (Keras's clipvalue, global_clipnorm), in place on the gradients before the
// update: `clip_value` limits each to [-alpha, alpha]; `sumsq_partial` (NORM_PARTS workgroups)
// and `clip_scale` (one) compute scale = alpha * min(1 / norm, 1 / alpha), NaN when the norm
// is, as Keras; `scale_by` multiplies by it. Sums run in a fixed order.
@group(0) @binding(5) var<storage, read> gscale: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(0) @binding(7) var<storage, read_write> scale_out: array<f32>;

var<workgroup> clip_part: array<f32, 256>;

// The workgroup's sum of every thread's `v`, in a fixed tree order, to every thread.
fn clip_workgroup_sum(lid: u32, v: f32) -> f32 {
    clip_part[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (lid < s) {
            clip_part[lid] = clip_part[lid] + clip_part[lid + s];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&clip_part[0]);
}

@compute @workgroup_size(256)
fn clip_value(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    w[i] = clamp(w[i], -p.alpha, p.alpha);
}

@compute @workgroup_size(256)
fn sumsq_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    var acc = 0.0;
    for (var i = wid.x * 256u + lid; i < p.n; i += p.parts * 256u) {
        acc += g[i] * g[i];
    }
    let total = clip_workgroup_sum(lid, acc);
    if (lid == 0u) {
        partials[wid.x] = total;
    }
}

@compute @workgroup_size(256)
fn clip_scale(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    if (lid < p.parts) {
        acc = partials[lid];
    }
    let norm = sqrt(clip_workgroup_sum(lid, acc));
    if (lid == 0u) {
        // min(1 / norm, 1 / alpha) without dividing by a zero norm; an infinite or NaN norm
        // gives NaN (tested on the bits: compilers may assume arithmetic has no NaN; the NaN is
        // made at run time, since Tint refuses a constant one).
        let inv = select(1.0 / norm, 1.0 / p.alpha, norm <= p.alpha);
        let special = (bitcast<u32>(norm) & 0x7f800000u) == 0x7f800000u;
        let nan = bitcast<f32>(0x7fc00000u | (p.parts & 0u));
        scale_out[0] = select(p.alpha * inv, nan, special);
    }
}

@compute @workgroup_size(256)
fn scale_by(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    w[i] = w[i] * gscale[0];
}

// w after decoupled weight decay.
fn decayed(wi: f32) -> f32 {
    if (p.weight_decay == 0.0) {
        return wi;
    }
    return wi - wi * p.weight_decay * p.lr;
}

@compute @workgroup_size(256)
fn adam_update(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let gi = g[i];
    let mi = m[i] + (gi - m[i]) * (1.0 - p.beta1);
    let vi = v[i] + (gi * gi - v[i]) * (1.0 - p.beta2);
    m[i] = mi;
    v[i] = vi;
    w[i] = decayed(w[i]) - p.alpha * mi / (sqrt(vi) + p.eps);
}

@compute @workgroup_size(256)
fn sgd_update(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let gi = g[i];
    let u = p.beta1 * m[i] - p.alpha * gi;
    m[i] = u;
    if (p.nesterov != 0u) {
        w[i] = w[i] + p.beta1 * u - p.alpha * gi;
    } else {
        w[i] = w[i] + u;
    }
}

@compute @workgroup_size(256)
fn rmsprop_update(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let gi = g[i];
    let vi = p.beta2 * v[i] + p.one_minus_rho * (gi * gi);
    v[i] = vi;
    let inc = p.alpha * gi / sqrt(vi + p.eps);
    let wi = decayed(w[i]);
    if (p.beta1 > 0.0) {
        let mi = p.beta1 * m[i] + inc;
        m[i] = mi;
        w[i] = wi - mi;
    } else {
        w[i] = wi - inc;
    }
}
