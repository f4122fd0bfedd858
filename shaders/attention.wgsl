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
//   a row with no key to attend to weighs every key 1 / Tk (Keras's masked softmax) and stores
//   lse = F32_LOWEST, which tells the backward pass so.
//
// Work split: a workgroup of ROWS threads owns ROWS rows of one (b, h), one thread a row: query
// rows for the forward and dQ, key rows for dK and dV. The other operand streams through
// workgroup memory in tiles. Each thread sums its row over the streamed rows one at a time, in
// order, so the results do not depend on the tile size. The forward updates its running max and
// sum key by key (an online softmax): its arithmetic is the same whatever the tiling.
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
const TILE: u32 = 3840u;
const MAXD: u32 = 128u;

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

// The streamed tile: rows x dk floats, then rows x dv.
var<workgroup> tile: array<f32, 3840>;
var<workgroup> key_ok: array<u32, 64>;
var<workgroup> tile_lse: array<f32, 64>;
var<workgroup> tile_di: array<f32, 64>;
var<workgroup> first_key: atomic<u32>;
var<workgroup> extent_max: atomic<u32>;
var<workgroup> extent: u32;

fn tile_rows() -> u32 {
    return min(TILE / (p.dk + p.dv), ROWS);
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

// Keys j0 .. j0 + n into the tile (k rows, then v rows at rows * dk) and their id flags.
fn load_keys(b: u32, h: u32, j0: u32, n: u32, rows: u32, lid: u32) {
    for (var e = lid; e < n * p.dk; e += ROWS) {
        let jj = e / p.dk;
        tile[e] = k[at(p.tk, p.dk, b, j0 + jj, h) + e % p.dk];
    }
    for (var e = lid; e < n * p.dv; e += ROWS) {
        let jj = e / p.dv;
        tile[rows * p.dk + e] = v[at(p.tk, p.dv, b, j0 + jj, h) + e % p.dv];
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
    var qr: array<f32, MAXD>;
    var acc: array<f32, MAXD>;
    if (live) {
        let qa = at(p.tq, p.dk, b, i, h);
        for (var d = 0u; d < p.dk; d++) {
            qr[d] = q[qa + d];
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
                    var dot = 0.0;
                    for (var d = 0u; d < p.dk; d++) {
                        dot += qr[d] * tile[jj * p.dk + d];
                    }
                    s = dot * p.scale;
                }
                if (s > m) {
                    let c = exp(m - s);
                    l *= c;
                    for (var d = 0u; d < p.dv; d++) {
                        acc[d] *= c;
                    }
                    m = s;
                }
                let e = exp(s - m);
                l += e;
                let w = e * drop_factor(row, j);
                if (w != 0.0) {
                    let va = rows * p.dk + jj * p.dv;
                    for (var d = 0u; d < p.dv; d++) {
                        acc[d] += w * tile[va + d];
                    }
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let oa = at(p.tq, p.dv, b, i, h);
        for (var d = 0u; d < p.dv; d++) {
            o_out[oa + d] = acc[d] / l;
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
    var qr: array<f32, MAXD>;
    var dor: array<f32, MAXD>;
    var acc: array<f32, MAXD>;
    var di = 0.0;
    if (live) {
        li = lse_in[row];
        full = li == F32_LOWEST;
        need = select(limit + 1u, p.tk, full);
        let qa = at(p.tq, p.dk, b, i, h);
        for (var d = 0u; d < p.dk; d++) {
            qr[d] = q[qa + d];
        }
        let oa = at(p.tq, p.dv, b, i, h);
        for (var d = 0u; d < p.dv; d++) {
            dor[d] = dout[oa + d];
            di += dor[d] * o_in[oa + d];
        }
    }
    let end = keys_needed(need, lid);
    let rows = tile_rows();
    let uniform_p = 1.0 / f32(p.tk);
    for (var j0 = 0u; j0 < end; j0 += rows) {
        let n = min(rows, end - j0);
        load_keys(b, h, j0, n, rows, lid);
        workgroupBarrier();
        if (live) {
            for (var jj = 0u; jj < n; jj++) {
                let j = j0 + jj;
                if (!full && (j > limit || key_ok[jj] == 0u)) {
                    continue;
                }
                var pij = uniform_p;
                if (!full) {
                    var dot = 0.0;
                    for (var d = 0u; d < p.dk; d++) {
                        dot += qr[d] * tile[jj * p.dk + d];
                    }
                    pij = exp(dot * p.scale - li);
                }
                let f = drop_factor(row, j);
                let va = rows * p.dk + jj * p.dv;
                var dp = 0.0;
                for (var d = 0u; d < p.dv; d++) {
                    dp += dor[d] * tile[va + d];
                }
                let ds = pij * (dp * f - di);
                for (var d = 0u; d < p.dk; d++) {
                    acc[d] += ds * tile[jj * p.dk + d];
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let qa = at(p.tq, p.dk, b, i, h);
        for (var d = 0u; d < p.dk; d++) {
            dq[qa + d] = acc[d] * p.scale;
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
    var kr: array<f32, MAXD>;
    var vr: array<f32, MAXD>;
    var dkr: array<f32, MAXD>;
    var dvr: array<f32, MAXD>;
    var k_ok = false;
    if (live) {
        k_ok = key_allowed_by_ids(b, j);
        let ka = at(p.tk, p.dk, b, j, h);
        for (var d = 0u; d < p.dk; d++) {
            kr[d] = k[ka + d];
        }
        let va = at(p.tk, p.dv, b, j, h);
        for (var d = 0u; d < p.dv; d++) {
            vr[d] = v[va + d];
        }
    }
    let rows = tile_rows();
    let uniform_p = 1.0 / f32(p.tk);
    for (var i0 = 0u; i0 < p.tq; i0 += rows) {
        let n = min(rows, p.tq - i0);
        for (var e = lid; e < n * p.dk; e += ROWS) {
            tile[e] = q[at(p.tq, p.dk, b, i0 + e / p.dk, h) + e % p.dk];
        }
        for (var e = lid; e < n * p.dv; e += ROWS) {
            tile[rows * p.dk + e] = dout[at(p.tq, p.dv, b, i0 + e / p.dv, h) + e % p.dv];
        }
        workgroupBarrier();
        if (lid < n) {
            let oa = at(p.tq, p.dv, b, i0 + lid, h);
            let da = rows * p.dk + lid * p.dv;
            var di = 0.0;
            for (var d = 0u; d < p.dv; d++) {
                di += tile[da + d] * o_in[oa + d];
            }
            tile_di[lid] = di;
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
                    var dot = 0.0;
                    for (var d = 0u; d < p.dk; d++) {
                        dot += tile[ii * p.dk + d] * kr[d];
                    }
                    pij = exp(dot * p.scale - li);
                }
                let f = drop_factor(bh * p.tq + i, j);
                let da = rows * p.dk + ii * p.dv;
                var dp = 0.0;
                for (var d = 0u; d < p.dv; d++) {
                    dvr[d] += pij * f * tile[da + d];
                    dp += tile[da + d] * vr[d];
                }
                let ds = pij * (dp * f - tile_di[ii]);
                for (var d = 0u; d < p.dk; d++) {
                    dkr[d] += ds * tile[ii * p.dk + d];
                }
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let ka = at(p.tk, p.dk, b, j, h);
        for (var d = 0u; d < p.dk; d++) {
            dkv[ka + d] = dkr[d] * p.scale;
        }
        let va = p.dv_at + at(p.tk, p.dv, b, j, h);
        for (var d = 0u; d < p.dv; d++) {
            dkv[va + d] = dvr[d];
        }
    }
}
