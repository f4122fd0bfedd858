// Elementwise kernels over flat f32 arrays of N elements.
//
// `binary`: out[i] = a[i] OP b[i % b_len]; b_len == N (same shape), the row length (row broadcast)
// or 1 (scalar). `unary`: out[i] = f(x[i]). `unary_backward`: dx[i] = dy[i] * f'(x[i]).
// `fill`: out[i] = scalar. `axpy`: out[i] += scalar * x[i] (in place).
// Bindings: 0 params, 1 x, 2 y, 3 out; each entry uses only the ones it names (`unary`: 1, 3;
// `fill`: 3), and the launcher binds by number.

struct ElementwiseParams {
    n: u32,
    b_len: u32,
    scalar: f32,
    scalar2: f32,
}

// binary: 0 add, 1 sub, 2 mul, 3 div
// unary: 0 identity, 1 step, 2 sigmoid, 3 tanh, 4 relu, 5 exp, 6 log, 7 scale (x * scalar), 8 abs,
// 9 affine (x * scalar + scalar2), 10 pow (x^scalar), 11 sqrt, 12 rsqrt, 13 clamp to
// [scalar, scalar2], 14 gelu (exact: x Phi(x)), 15 gelu with tanh's approximation
override OP: u32 = 0u;

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// x^e as Rust's f32::powf: WGSL's pow is undefined for x < 0 and for x = 0 with e <= 0.
fn pow_f(x: f32, e: f32) -> f32 {
    if (e == 0.0) {
        return 1.0;
    }
    if (x == 0.0) {
        return select(1.0 / x, 0.0, e > 0.0);
    }
    let m = pow(abs(x), e);
    if (x > 0.0) {
        return m;
    }
    if (fract(e) != 0.0) {
        return sqrt(x);
    }
    return select(m, -m, fract(e * 0.5) != 0.0);
}

// erf(x) within 1.2e-7 (Numerical Recipes' erfc, a Chebyshev fit; WGSL has no erf). Keep
// in step with reference::erf.
fn erf_f(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277)))))))));
    return select(r - 1.0, 1.0 - r, x >= 0.0);
}

// GELU's tanh approximation's inner term, sqrt(2 / pi) (x + 0.044715 x^3), as Keras.
fn gelu_inner(x: f32) -> f32 {
    return 0.7978845608028654 * (x + 0.044715 * x * x * x);
}

fn act(v: f32) -> f32 {
    switch OP {
        case 1u: { return select(0.0, 1.0, v > 0.0); }
        case 2u: { return sigmoid(v); }
        case 3u: { return tanh(clamp(v, -15.0, 15.0)); }
        case 4u: { return max(v, 0.0); }
        case 5u: { return exp(v); }
        case 6u: { return log(v); }
        case 7u: { return v * p.scalar; }
        case 8u: { return abs(v); }
        case 9u: { return v * p.scalar + p.scalar2; }
        case 10u: { return pow_f(v, p.scalar); }
        case 11u: { return sqrt(v); }
        case 12u: { return inverseSqrt(v); }
        case 13u: { return clamp(v, p.scalar, p.scalar2); }
        case 14u: { return 0.5 * v * (1.0 + erf_f(v * 0.7071067811865476)); }
        case 15u: { return 0.5 * v * (1.0 + tanh(clamp(gelu_inner(v), -15.0, 15.0))); }
        default: { return v; }
    }
}

fn act_grad(v: f32) -> f32 {
    switch OP {
        case 1u: { return 0.0; }
        case 2u: {
            let s = sigmoid(v);
            return s * (1.0 - s);
        }
        case 3u: {
            let t = tanh(clamp(v, -15.0, 15.0));
            return 1.0 - t * t;
        }
        case 4u: { return select(0.0, 1.0, v > 0.0); }
        case 5u: { return exp(v); }
        case 6u: { return 1.0 / v; }
        case 7u: { return p.scalar; }
        case 8u: { return sign(v); }
        case 9u: { return p.scalar; }
        case 10u: { return p.scalar * pow_f(v, p.scalar - 1.0); }
        case 11u: { return 0.5 / sqrt(v); }
        case 12u: { return -0.5 * inverseSqrt(v) / v; }
        case 13u: { return select(0.0, 1.0, v >= p.scalar && v <= p.scalar2); }
        case 14u: {
            let cdf = 0.5 * (1.0 + erf_f(v * 0.7071067811865476));
            return cdf + v * 0.3989422804014327 * exp(-0.5 * v * v);
        }
        case 15u: {
            let t = tanh(clamp(gelu_inner(v), -15.0, 15.0));
            let inner_grad = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * v * v);
            return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * inner_grad;
        }
        default: { return 1.0; }
    }
}

@compute @workgroup_size(256)
fn binary(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let u = x[i];
    let v = y[i % p.b_len];
    switch OP {
        case 1u: { out[i] = u - v; }
        case 2u: { out[i] = u * v; }
        case 3u: { out[i] = u / v; }
        default: { out[i] = u + v; }
    }
}

@compute @workgroup_size(256)
fn unary(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = act(x[i]);
}

// x: forward input, y: upstream gradient dy, out: dx
@compute @workgroup_size(256)
fn unary_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = y[i] * act_grad(x[i]);
}

@compute @workgroup_size(256)
fn fill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = p.scalar;
}

// out[i] += scalar * x[i], in place: gradient accumulation into a parameter's gradient view.
@compute @workgroup_size(256)
fn axpy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = out[i] + p.scalar * x[i];
}
