// Batched matrix multiply: C[b] = act(op(A[b]) · op(B[b]) + bias).
//
// Dimension letters: B (batch), M (rows of C), N (columns of C), K (reduction).
// Logical A is (M, K), stored (K, M) when TRANS_A; logical B is (K, N), stored (N, K) when TRANS_B.
// A batch stride of 0 broadcasts that operand over the batch (shared weights).
// Entry points: `matmul_naive` (one thread per output, the baseline) and `matmul_tiled`
// (64x64 workgroup tiles, 4x4 register blocking, vec4 reads from workgroup memory).

struct MatmulParams {
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
// 0 identity, 1 relu, 2 sigmoid, 3 tanh, 4 step
override ACT: u32 = 0u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn epilogue(v: f32, col: u32) -> f32 {
    var x = v;
    if (HAS_BIAS) {
        x = x + bias[col];
    }
    switch ACT {
        case 1u: { return max(x, 0.0); }
        case 2u: { return sigmoid(x); }
        case 3u: { return tanh(clamp(x, -15.0, 15.0)); }
        case 4u: { return select(0.0, 1.0, x > 0.0); }
        default: { return x; }
    }
}

fn a_at(base: u32, row: u32, kk: u32) -> f32 {
    if (TRANS_A) {
        return a[base + kk * p.m + row];
    }
    return a[base + row * p.k + kk];
}

fn b_at(base: u32, kk: u32, col: u32) -> f32 {
    if (TRANS_B) {
        return b[base + col * p.k + kk];
    }
    return b[base + kk * p.n + col];
}

@compute @workgroup_size(64)
fn matmul_naive(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.y * nwg.x + wid.x) * 64u + lid;
    let per_batch = p.m * p.n;
    if (idx >= p.batch * per_batch) {
        return;
    }
    let bi = idx / per_batch;
    let rem = idx % per_batch;
    let row = rem / p.n;
    let col = rem % p.n;
    let a_base = bi * p.a_batch_stride;
    let b_base = bi * p.b_batch_stride;
    var acc = 0.0;
    for (var kk = 0u; kk < p.k; kk = kk + 1u) {
        acc = acc + a_at(a_base, row, kk) * b_at(b_base, kk, col);
    }
    c[idx] = epilogue(acc, col);
}

const TILE: u32 = 64u;
const TK: u32 = 16u;
// Workgroup tiles stored k-major as vec4 so that each thread reads four rows (or columns) at once.
var<workgroup> a_tile: array<vec4<f32>, 256>; // (TK, TILE / 4)
var<workgroup> b_tile: array<vec4<f32>, 256>; // (TK, TILE / 4)

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tiles_n = (p.n + TILE - 1u) / TILE;
    let tiles_m = (p.m + TILE - 1u) / TILE;
    let tile = wid.y * nwg.x + wid.x;
    // Uniform across the workgroup: the whole group leaves together, barriers stay uniform.
    if (tile >= tiles_n * tiles_m * p.batch) {
        return;
    }
    let bi = tile / (tiles_n * tiles_m);
    let t2 = tile % (tiles_n * tiles_m);
    let row0 = (t2 / tiles_n) * TILE;
    let col0 = (t2 % tiles_n) * TILE;
    let a_base = bi * p.a_batch_stride;
    let b_base = bi * p.b_batch_stride;
    let tx = lid3.x; // column group: columns col0 + 4*tx .. +4
    let ty = lid3.y; // row group: rows row0 + 4*ty .. +4

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var k0 = 0u; k0 < p.k; k0 = k0 + TK) {
        // Each of the 256 threads loads 4 elements of each tile, coalesced along the stored layout.
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = lid + 256u * i;
            var r: u32;
            var kk: u32;
            if (TRANS_A) {
                r = e % TILE;
                kk = e / TILE;
            } else {
                kk = e % TK;
                r = e / TK;
            }
            var v = 0.0;
            if (row0 + r < p.m && k0 + kk < p.k) {
                v = a_at(a_base, row0 + r, k0 + kk);
            }
            a_tile[kk * 16u + r / 4u][r % 4u] = v;

            var cc: u32;
            var kb: u32;
            if (TRANS_B) {
                kb = e % TK;
                cc = e / TK;
            } else {
                cc = e % TILE;
                kb = e / TILE;
            }
            var w = 0.0;
            if (col0 + cc < p.n && k0 + kb < p.k) {
                w = b_at(b_base, k0 + kb, col0 + cc);
            }
            b_tile[kb * 16u + cc / 4u][cc % 4u] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let av = a_tile[kk * 16u + ty];
            let bv = b_tile[kk * 16u + tx];
            acc[0] = acc[0] + av.x * bv;
            acc[1] = acc[1] + av.y * bv;
            acc[2] = acc[2] + av.z * bv;
            acc[3] = acc[3] + av.w * bv;
        }
        workgroupBarrier();
    }

    let c_base = bi * p.m * p.n;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + ty * 4u + i;
        if (row < p.m) {
            for (var j = 0u; j < 4u; j = j + 1u) {
                let col = col0 + tx * 4u + j;
                if (col < p.n) {
                    c[c_base + row * p.n + col] = epilogue(acc[i][j], col);
                }
            }
        }
    }
}
