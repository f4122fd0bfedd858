// Shared by every kernel family: kiln prepends this file to each family's source before
// compiling (WGSL has no includes). Keep it to small pure functions.

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
