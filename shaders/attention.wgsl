// Fused scaled dot-product attention, forward and backward, that never stores a Tq x Tk matrix
// (FlashAttention's scheme: an online softmax forward that keeps the log-sum-exp per row, and a
// backward that recomputes the weights from it).
//
// Layout: q (B, Tq, H, Dk), k (B, Tk, H, Dk), v (B, Tk, H, Dv), o (B, Tq, H, Dv): heads
// interleaved, as a projection's output lays them out; lse (B, H, Tq). A "row" (dropout
// counter, lse index) is (b * H + h) * Tq + i.
//
//   s_ij = scale * q_i . k_j over the keys i may attend to: qids[b, i] != 0, kids[b, j] != 0
//          (when given) and, when causal, j <= i
//   o_i  = sum_j f_ij softmax(s_i)_j v_j, f the dropout factor (Threefry counter
//          (offset + row, 0x80000000 | j), 1 / keep_prob or 0)
//   a row with no key to attend to weighs every key 1 / Tk, and its scores get no gradient
//   (Keras replaces masked scores by a large negative number); it stores lse = F32_LOWEST, which
//   tells the backward pass so.
//
// Work split: a workgroup of ROWS threads owns ROWS rows of one (b, h), one thread a row: query
// rows for the forward and dQ, key rows for dK and dV. The other operand streams through
// workgroup memory in tiles. Each thread sums its row over the streamed rows one at a time, in
// order, so the results do not depend on the tile size. The forward updates its running max and
// sum key by key (an online softmax): its arithmetic is the same whatever the tiling.
//
// The head widths are pipeline constants (DK, DV): rows are held as vec4s, and every loop over a
// row has a trip count known when the pipeline is built, which compilers unroll. That also keeps
// a thread's loop iterations to about one per streamed row: llvmpipe (Mesa before 24) stops every
// loop of an invocation after 65535 iterations in all, and T = 2048 with a loop per element of a
// 64-wide row would pass that.
//
// Backward, two dispatches with no atomics: attention_dq (dq_i = scale sum_j ds_ij k_j) and
// attention_dkv (dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij f_ij dO_i), each recomputing
// p_ij = exp(s_ij - lse_i), with D_i = dO_i . o_i and ds_ij = p_ij (f_ij dO_i . v_j - D_i).

struct AttentionParams {
    batch: u32,
    heads: u32,
    tq: u32,
    tk: u32,
    dk: u32,
    dv: u32,
    causal: u32,
    has_qmask: u32,
    has_kmask: u32,
    scale: f32,
    keep_prob: f32,
    drop_scale: f32,
    seed_lo: u32,
    seed_hi: u32,
    offset: u32,
    dv_at: u32,
}

const ROWS: u32 = 64u;
// Tile capacity in vec4s (15 KiB of WebGPU's 16).
const TILE4: u32 = 960u;
const MAXD4: u32 = 32u;

override DK: u32 = 64u;
override DV: u32 = 64u;
override DK4: u32 = (DK + 3u) / 4u;
override DV4: u32 = (DV + 3u) / 4u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> qids: array<u32>;
@group(0) @binding(5) var<storage, read> kids: array<u32>;
// forward's outputs
@group(0) @binding(6) var<storage, read_write> o_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> lse_out: array<f32>;
// backward's inputs
@group(0) @binding(8) var<storage, read> o_in: array<f32>;
@group(0) @binding(9) var<storage, read> lse_in: array<f32>;
@group(0) @binding(10) var<storage, read> dout: array<f32>;
// backward's outputs: dq; dk then, at dv_at, dv (one buffer: 8 storage buffers a pass)
@group(0) @binding(11) var<storage, read_write> dq: array<f32>;
@group(0) @binding(12) var<storage, read_write> dkv: array<f32>;

// The streamed tile: rows x DK4 vec4s, then rows x DV4.
var<workgroup> tile: array<vec4<f32>, 960>;
var<workgroup> key_ok: array<u32, 64>;
var<workgroup> tile_lse: array<f32, 64>;
var<workgroup> tile_di: array<f32, 64>;
var<workgroup> first_key: atomic<u32>;
var<workgroup> extent_max: atomic<u32>;
var<workgroup> extent: u32;

fn tile_rows() -> u32 {
    return min(TILE4 / (DK4 + DV4), ROWS);
}

fn drop_factor(row: u32, key: u32) -> f32 {
    if (p.keep_prob >= 1.0) {
        return 1.0;
    }
    let bits = threefry2x32(p.offset + row, 0x80000000u | key, p.seed_lo, p.seed_hi).x;
    let u = f32(bits >> 8u) * (1.0 / 16777216.0);
    return select(0.0, p.drop_scale, u < p.keep_prob);
}

// Start of row (b, t, h) of a (B, steps, H, width) tensor.
fn at(steps: u32, width: u32, b: u32, t: u32, h: u32) -> u32 {
    return ((b * steps + t) * p.heads + h) * width;
}

// Chunk c (4 floats from c * 4, zeros past the width) of the row at `base` of each input.
fn q4(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (c * 4u + e < DK) {
            r[e] = q[base + c * 4u + e];
        }
    }
    return r;
}

fn k4(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (c * 4u + e < DK) {
            r[e] = k[base + c * 4u + e];
        }
    }
    return r;
}

fn v4(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (c * 4u + e < DV) {
            r[e] = v[base + c * 4u + e];
        }
    }
    return r;
}

fn dout4(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (c * 4u + e < DV) {
            r[e] = dout[base + c * 4u + e];
        }
    }
    return r;
}

fn o4(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (c * 4u + e < DV) {
            r[e] = o_in[base + c * 4u + e];
        }
    }
    return r;
}

fn hsum(x: vec4<f32>) -> f32 {
    return (x.x + x.y) + (x.z + x.w);
}

fn key_allowed_by_ids(b: u32, j: u32) -> bool {
    return p.has_kmask == 0u || kids[b * p.tk + j] != 0u;
}

// The first key of batch row b that ids do not mask (tk when none); every thread calls it.
fn first_open_key(b: u32, lid: u32) -> u32 {
    if (lid == 0u) {
        atomicStore(&first_key, p.tk);
    }
    workgroupBarrier();
    for (var j = lid; j < p.tk; j += ROWS) {
        if (key_allowed_by_ids(b, j)) {
            atomicMin(&first_key, j);
            break;
        }
    }
    workgroupBarrier();
    return atomicLoad(&first_key);
}

// The keys the workgroup's query rows need, given each thread's need (0 for none); uniform.
fn keys_needed(need: u32, lid: u32) -> u32 {
    if (lid == 0u) {
        atomicStore(&extent_max, 0u);
    }
    workgroupBarrier();
    atomicMax(&extent_max, need);
    workgroupBarrier();
    if (lid == 0u) {
        extent = atomicLoad(&extent_max);
    }
    return workgroupUniformLoad(&extent);
}

// Keys j0 .. j0 + n into the tile (k rows, then v rows at rows * DK4) and their id flags.
fn load_keys(b: u32, h: u32, j0: u32, n: u32, rows: u32, lid: u32) {
    for (var e = lid; e < n * DK4; e += ROWS) {
        tile[e] = k4(at(p.tk, DK, b, j0 + e / DK4, h), e % DK4);
    }
    for (var e = lid; e < n * DV4; e += ROWS) {
        tile[rows * DK4 + e] = v4(at(p.tk, DV, b, j0 + e / DV4, h), e % DV4);
    }
    for (var jj = lid; jj < n; jj += ROWS) {
        key_ok[jj] = u32(key_allowed_by_ids(b, j0 + jj));
    }
}

// The last key query i may attend to when causal, else tk - 1.
fn last_key(i: u32) -> u32 {
    if (p.causal != 0u) {
        return min(i, p.tk - 1u);
    }
    return p.tk - 1u;
}

@compute @workgroup_size(64)
fn attention_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let blocks = (p.tq + ROWS - 1u) / ROWS;
    let bh = g / blocks;
    if (bh >= p.batch * p.heads) {
        return;
    }
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i = (g % blocks) * ROWS + lid;
    let live = i < p.tq;
    let open = first_open_key(b, lid);
    var q_ok = live;
    if (live && p.has_qmask != 0u) {
        q_ok = qids[b * p.tq + i] != 0u;
    }
    let limit = last_key(i);
    let full = !q_ok || open > limit;
    var need = 0u;
    if (live) {
        need = select(limit + 1u, p.tk, full);
    }
    let end = keys_needed(need, lid);
    let rows = tile_rows();
    let row = bh * p.tq + i;
    var qr: array<vec4<f32>, MAXD4>;
    var acc: array<vec4<f32>, MAXD4>;
    if (live) {
        let qa = at(p.tq, DK, b, i, h);
        for (var c = 0u; c < DK4; c++) {
            qr[c] = q4(qa, c);
        }
    }
    var m = F32_LOWEST;
    var l = 0.0;
    for (var j0 = 0u; j0 < end; j0 += rows) {
        let n = min(rows, end - j0);
        load_keys(b, h, j0, n, rows, lid);
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < n; jj++) {
                let j = j0 + jj;
                var s = 0.0;
                if (!full) {
                    if (j > limit || key_ok[jj] == 0u) {
                        continue;
                    }
                    var dot = vec4<f32>(0.0);
                    for (var c = 0u; c < DK4; c++) {
                        dot += qr[c] * tile[jj * DK4 + c];
                    }
                    s = hsum(dot) * p.scale;
                }
                if (s > m) {
                    let f = exp(m - s);
                    l *= f;
                    for (var c = 0u; c < DV4; c++) {
                        acc[c] *= f;
                    }
                    m = s;
                }
                let e = exp(s - m);
                l += e;
                let w = e * drop_factor(row, j);
                if (w != 0.0) {
                    let va = rows * DK4 + jj * DV4;
                    for (var c = 0u; c < DV4; c++) {
                        acc[c] += w * tile[va + c];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let oa = at(p.tq, DV, b, i, h);
        for (var c = 0u; c < DV4; c++) {
            let r = acc[c] / l;
            for (var e = 0u; e < 4u; e++) {
                if (c * 4u + e < DV) {
                    o_out[oa + c * 4u + e] = r[e];
                }
            }
        }
        lse_out[row] = select(m + log(l), F32_LOWEST, full);
    }
}

@compute @workgroup_size(64)
fn attention_dq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let blocks = (p.tq + ROWS - 1u) / ROWS;
    let bh = g / blocks;
    if (bh >= p.batch * p.heads) {
        return;
    }
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i = (g % blocks) * ROWS + lid;
    let live = i < p.tq;
    let row = bh * p.tq + i;
    let limit = last_key(i);
    var li = 0.0;
    var full = false;
    var need = 0u;
    var qr: array<vec4<f32>, MAXD4>;
    var dor: array<vec4<f32>, MAXD4>;
    var acc: array<vec4<f32>, MAXD4>;
    var di = 0.0;
    if (live) {
        li = lse_in[row];
        full = li == F32_LOWEST;
        // A row with no key passes no gradient to its scores: its dq is 0.
        need = select(limit + 1u, 0u, full);
        let qa = at(p.tq, DK, b, i, h);
        for (var c = 0u; c < DK4; c++) {
            qr[c] = q4(qa, c);
        }
        let oa = at(p.tq, DV, b, i, h);
        var d4 = vec4<f32>(0.0);
        for (var c = 0u; c < DV4; c++) {
            dor[c] = dout4(oa, c);
            d4 += dor[c] * o4(oa, c);
        }
        di = hsum(d4);
    }
    let end = keys_needed(need, lid);
    let rows = tile_rows();
    for (var j0 = 0u; j0 < end; j0 += rows) {
        let n = min(rows, end - j0);
        load_keys(b, h, j0, n, rows, lid);
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < n; jj++) {
                let j = j0 + jj;
                if (full || j > limit || key_ok[jj] == 0u) {
                    continue;
                }
                var dot = vec4<f32>(0.0);
                for (var c = 0u; c < DK4; c++) {
                    dot += qr[c] * tile[jj * DK4 + c];
                }
                let pij = exp(hsum(dot) * p.scale - li);
                let f = drop_factor(row, j);
                let va = rows * DK4 + jj * DV4;
                var dp = vec4<f32>(0.0);
                for (var c = 0u; c < DV4; c++) {
                    dp += dor[c] * tile[va + c];
                }
                let ds = pij * (hsum(dp) * f - di);
                for (var c = 0u; c < DK4; c++) {
                    acc[c] += ds * tile[jj * DK4 + c];
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let qa = at(p.tq, DK, b, i, h);
        for (var c = 0u; c < DK4; c++) {
            let r = acc[c] * p.scale;
            for (var e = 0u; e < 4u; e++) {
                if (c * 4u + e < DK) {
                    dq[qa + c * 4u + e] = r[e];
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn attention_dkv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let g = group_index(wid, nwg);
    let blocks = (p.tk + ROWS - 1u) / ROWS;
    let bh = g / blocks;
    if (bh >= p.batch * p.heads) {
        return;
    }
    let b = bh / p.heads;
    let h = bh % p.heads;
    let j = (g % blocks) * ROWS + lid;
    let live = j < p.tk;
    var kr: array<vec4<f32>, MAXD4>;
    var vr: array<vec4<f32>, MAXD4>;
    var dkr: array<vec4<f32>, MAXD4>;
    var dvr: array<vec4<f32>, MAXD4>;
    var k_ok = false;
    if (live) {
        k_ok = key_allowed_by_ids(b, j);
        let ka = at(p.tk, DK, b, j, h);
        for (var c = 0u; c < DK4; c++) {
            kr[c] = k4(ka, c);
        }
        let va = at(p.tk, DV, b, j, h);
        for (var c = 0u; c < DV4; c++) {
            vr[c] = v4(va, c);
        }
    }
    let rows = tile_rows();
    let uniform_p = 1.0 / f32(p.tk);
    for (var i0 = 0u; i0 < p.tq; i0 += rows) {
        let n = min(rows, p.tq - i0);
        for (var e = lid; e < n * DK4; e += ROWS) {
            tile[e] = q4(at(p.tq, DK, b, i0 + e / DK4, h), e % DK4);
        }
        for (var e = lid; e < n * DV4; e += ROWS) {
            tile[rows * DK4 + e] = dout4(at(p.tq, DV, b, i0 + e / DV4, h), e % DV4);
        }
        workgroupBarrier();
        if (lid < n) {
            let oa = at(p.tq, DV, b, i0 + lid, h);
            let da = rows * DK4 + lid * DV4;
            var d4 = vec4<f32>(0.0);
            for (var c = 0u; c < DV4; c++) {
                d4 += tile[da + c] * o4(oa, c);
            }
            tile_di[lid] = hsum(d4);
            tile_lse[lid] = lse_in[bh * p.tq + i0 + lid];
        }
        workgroupBarrier();
        if (live) {
            for (var ii = 0u; ii < n; ii++) {
                let i = i0 + ii;
                let li = tile_lse[ii];
                let full = li == F32_LOWEST;
                if (!full && (!k_ok || (p.causal != 0u && j > i))) {
                    continue;
                }
                var pij = uniform_p;
                if (!full) {
                    var dot = vec4<f32>(0.0);
                    for (var c = 0u; c < DK4; c++) {
                        dot += tile[ii * DK4 + c] * kr[c];
                    }
                    pij = exp(hsum(dot) * p.scale - li);
                }
                let f = drop_factor(bh * p.tq + i, j);
                let da = rows * DK4 + ii * DV4;
                var dp = vec4<f32>(0.0);
                for (var c = 0u; c < DV4; c++) {
                    dvr[c] += pij * f * tile[da + c];
                    dp += tile[da + c] * vr[c];
                }
                if (!full) {
                    let ds = pij * (hsum(dp) * f - tile_di[ii]);
                    for (var c = 0u; c < DK4; c++) {
                        dkr[c] += ds * tile[ii * DK4 + c];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let ka = at(p.tk, DK, b, j, h);
        for (var c = 0u; c < DK4; c++) {
            let r = dkr[c] * p.scale;
            for (var e = 0u; e < 4u; e++) {
                if (c * 4u + e < DK) {
                    dkv[ka + c * 4u + e] = r[e];
                }
            }
        }
        let va = p.dv_at + at(p.tk, DV, b, j, h);
        for (var c = 0u; c < DV4; c++) {
            for (var e = 0u; e < 4u; e++) {
                if (c * 4u + e < DV) {
                    dkv[va + c * 4u + e] = dvr[c][e];
                }
            }
        }
    }
}
