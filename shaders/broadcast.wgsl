// Binary ops under NumPy broadcasting, and copies that broadcast one tensor to a larger shape.
//
// The host merges neighbouring dimensions that broadcast alike (BroadcastParams::plan), so most
// calls see rank 1 to 3. Output element i is split into coordinates over `shape` (row-major);
// each operand's element is the dot product of those with its strides, which are 0 along the
// dimensions it broadcasts over.
// `binary_broadcast`: out[i] = a[ia] OP b[ib]. `broadcast_copy`: out[i] = b[ib] (a unused).
// Bindings: 0 params, 1 a, 2 b, 3 out.

struct BroadcastParams {
    n: u32,
    rank: u32,
    _pad0: u32,
    _pad1: u32,
    shape: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
}

// binary: 0 add, 1 sub, 2 mul, 3 div
override OP: u32 = 0u;

@group(0) @binding(0) var<uniform> p: BroadcastParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// The operands' element indices for output element i.
fn operand_index(i: u32) -> vec2<u32> {
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var k = 0u; k < p.rank; k = k + 1u) {
        let d = p.rank - 1u - k;
        let size = p.shape[d / 4u][d % 4u];
        let c = rem % size;
        rem = rem / size;
        ia = ia + c * p.a_strides[d / 4u][d % 4u];
        ib = ib + c * p.b_strides[d / 4u][d % 4u];
    }
    return vec2<u32>(ia, ib);
}

@compute @workgroup_size(256)
fn binary_broadcast(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let at = operand_index(i);
    let u = a[at.x];
    let v = b[at.y];
    switch OP {
        case 1u: { out[i] = u - v; }
        case 2u: { out[i] = u * v; }
        case 3u: { out[i] = u / v; }
        default: { out[i] = u + v; }
    }
}

@compute @workgroup_size(256)
fn broadcast_copy(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = b[operand_index(i).y];
}
