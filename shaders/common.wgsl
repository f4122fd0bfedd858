// Shared by every kernel family: kiln prepends this file to each family's source before
// compiling (WGSL has no includes). Keep it to small pure functions.

// f32's lowest finite value (-3.4028235e38, Rust's f32::MIN), written so that every WGSL
// compiler reads it exactly: a decimal literal such as -3.4028235e38 is, as an abstract float,
// just past f32's range, which naga rounds and Tint (Chrome, Dawn) refuses.
const F32_LOWEST: f32 = -0x1.fffffep+127f;

// Linear workgroup index of a dispatch split over x and y (see dispatch_dims on the host).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Linear thread index for 256-thread workgroups.
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wid, nwg) * 256u + lid;
}

// Logistic function that never overflows: exp is only taken of a non-positive number.
fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn rotl(v: u32, r: u32) -> u32 {
    return (v << r) | (v >> (32u - r));
}

// One Threefry round: x0 += x1; x1 = rotl(x1, r) ^ x0.
fn mix(x: vec2<u32>, r: u32) -> vec2<u32> {
    let x0 = x.x + x.y;
    return vec2<u32>(x0, rotl(x.y, r) ^ x0);
}

// 20 rounds, unrolled with constant rotations (13 15 26 6 | 17 29 16 24) and a key injection
// every four rounds; no local arrays, which some backends would keep in memory.
fn threefry2x32(c0: u32, c1: u32, k0: u32, k1: u32) -> vec2<u32> {
    let k2 = 0x1BD11BDAu ^ k0 ^ k1;
    var x = vec2<u32>(c0 + k0, c1 + k1);
    x = mix(mix(mix(mix(x, 13u), 15u), 26u), 6u);
    x = x + vec2<u32>(k1, k2 + 1u);
    x = mix(mix(mix(mix(x, 17u), 29u), 16u), 24u);
    x = x + vec2<u32>(k2, k0 + 2u);
    x = mix(mix(mix(mix(x, 13u), 15u), 26u), 6u);
    x = x + vec2<u32>(k0, k1 + 3u);
    x = mix(mix(mix(mix(x, 17u), 29u), 16u), 24u);
    x = x + vec2<u32>(k1, k2 + 4u);
    x = mix(mix(mix(mix(x, 13u), 15u), 26u), 6u);
    x = x + vec2<u32>(k2, k0 + 5u);
    return x;
}
