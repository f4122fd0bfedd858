// Inverted dropout driven by a counter-based generator (Threefry-2x32, 20 rounds, as in
// Random123 and JAX): element i draws from counter (offset + i, 0) under key (seed_lo, seed_hi),
// so the same seed and offset give the same mask on every device, and the CPU reference matches
// bit for bit. keep = u < keep_prob with u = (bits >> 8) / 2^24; kept values are scaled by
// 1 / keep_prob. `mask` holds that scale or 0, and backward is dy * mask.

struct DropoutParams {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    offset: u32,
    keep_prob: f32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: DropoutParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> mask: array<f32>;

@compute @workgroup_size(256)
fn dropout_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let bits = threefry2x32(p.offset + i, 0u, p.seed_lo, p.seed_hi).x;
    let u = f32(bits >> 8u) * (1.0 / 16777216.0);
    let m = select(0.0, p.scale, u < p.keep_prob);
    mask[i] = m;
    out[i] = x[i] * m;
}
