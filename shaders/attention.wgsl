// Fused scaled dot-product attention, forward and backward, that never stores a Tq x Tk matrix
// (FlashAttention-2's scheme: an online softmax forward that keeps the log-sum-exp per row, and a
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
// Work split: every kernel is a chain of small matrix products done by a workgroup of 64
// threads (8 x 8) on a 32 x 64 block: a workgroup owns 32 rows (query rows for the forward and
// dQ, key rows for dK and dV) and 64 columns of its output, and streams the other operand in
// blocks of 64 rows. A thread holds a 4 x 8 piece of each block product in registers (struct
// Blk: rows 4ty..4ty+3, columns 4tx..4tx+3 and 32+4tx..32+4tx+3), and the operands pass
// through workgroup memory 16 steps of the contraction at a time, as in matmul_tiled. The
// 32 x 64 score block goes through workgroup memory (s_tile) between its two products, never
// to global memory.
//
// Order of sums: every product sums its contraction one index at a time, in order; the
// forward's online softmax rescales once per block of 64 keys (TN, a constant of the algorithm,
// not a tuning knob). Results therefore depend on no choice a launcher makes, only on these
// constants. Head widths past 64 take more workgroups (one per 64 output columns), each
// recomputing its scores.
//
// Backward, two dispatches with no atomics: attention_dq (dq_i = scale sum_j ds_ij k_j) and
// attention_dkv (dk_j = scale sum_i ds_ij q_i, dv_j = sum_i p_ij f_ij dO_i), each recomputing
// p_ij = exp(s_ij - lse_i), with D_i = dO_i . o_i and ds_ij = p_ij (f_ij dO_i . v_j - D_i).
//
// Loop counts stay far below llvmpipe's (Mesa before 24) 65535 iterations per invocation, past
// which it quietly ends every loop: about 40 per streamed block of 64 rows.

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
    // Where the second output starts in a packed output buffer: lse after o (forward), dv
    // after dk (attention_dkv).
    second_at: u32,
}

// A workgroup's own rows, the streamed block's rows, the contraction chunk, output columns.
const TQ: u32 = 32u;
const TN: u32 = 64u;
const TC: u32 = 16u;
const TW: u32 = 64u;
// Marks a masked score; a row code for a row that attends to every key (no key open to it).
const MASKED: f32 = F32_LOWEST;
const FULL: u32 = 0xffffffffu;

// Operand sources (ld).
const SRC_Q: u32 = 0u;
const SRC_K: u32 = 1u;
const SRC_V: u32 = 2u;
const SRC_DO: u32 = 3u;
const SRC_O: u32 = 4u;

@group(0) @binding(0) var<uniform> p: AttentionParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> qids: array<u32>;
@group(0) @binding(5) var<storage, read> kids: array<u32>;
// The kernel's output: o then, at second_at, lse (forward); dq then, at second_at, D
// (attention_dq); dk then, at second_at, dv (attention_dkv). At most 8 storage buffers a pass.
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
// backward's inputs (the forward binds placeholders: its loads share ld4). o_in is the
// forward's output for attention_dq, and D (B, H, Tq), which attention_dq writes, for
// attention_dkv.
@group(0) @binding(8) var<storage, read> o_in: array<f32>;
@group(0) @binding(9) var<storage, read> lse_in: array<f32>;
@group(0) @binding(10) var<storage, read> dout: array<f32>;

// Contraction chunks, k-major: op_a[kk * 8 + r4] holds rows 4 r4..4 r4+3 of the workgroup's
// block at step kk; op_b[kk * 16 + c4] columns 4 c4..4 c4+3 of the other operand. s_tile
// holds a 32 x 64 block column-major by vec4 of rows: s_tile[n * 8 + r4].
var<workgroup> op_a: array<vec4<f32>, 128>;
var<workgroup> op_b: array<vec4<f32>, 256>;
var<workgroup> s_tile: array<vec4<f32>, 512>;
// Per streamed row: key flags (forward, dQ); query codes, lse and D (dK, dV).
var<workgroup> n_flag: array<u32, 64>;
var<workgroup> n_lse: array<f32, 64>;
var<workgroup> n_d: array<f32, 64>;
// Per own row: limit codes (forward) or D (dQ).
var<workgroup> r_code: array<u32, 32>;
var<workgroup> r_d: array<f32, 32>;
var<workgroup> first_key: atomic<u32>;
var<workgroup> extent_max: atomic<u32>;
var<workgroup> extent: u32;

// A thread's 4 x 8 piece of a 32 x 64 block: xR holds row R at columns 4tx..4tx+3, yR at
// columns 32+4tx..32+4tx+3.
struct Blk {
    x0: vec4<f32>,
    y0: vec4<f32>,
    x1: vec4<f32>,
    y1: vec4<f32>,
    x2: vec4<f32>,
    y2: vec4<f32>,
    x3: vec4<f32>,
    y3: vec4<f32>,
}

fn blk_zero() -> Blk {
    let z = vec4<f32>(0.0);
    return Blk(z, z, z, z, z, z, z, z);
}

// t + a (4 rows) outer (cx, cy) (8 columns).
fn blk_fma(t: Blk, a: vec4<f32>, cx: vec4<f32>, cy: vec4<f32>) -> Blk {
    return Blk(
        t.x0 + a.x * cx, t.y0 + a.x * cy,
        t.x1 + a.y * cx, t.y1 + a.y * cy,
        t.x2 + a.z * cx, t.y2 + a.z * cy,
        t.x3 + a.w * cx, t.y3 + a.w * cy,
    );
}

// Every row scaled by its factor.
fn blk_scale(t: Blk, f: vec4<f32>) -> Blk {
    return Blk(t.x0 * f.x, t.y0 * f.x, t.x1 * f.y, t.y1 * f.y,
               t.x2 * f.z, t.y2 * f.z, t.x3 * f.w, t.y3 * f.w);
}

// One contraction chunk: op_a (own rows) by op_b (columns).
fn blk_step(t: Blk, tx: u32, ty: u32) -> Blk {
    var r = t;
    for (var kk = 0u; kk < TC; kk++) {
        r = blk_fma(r, op_a[kk * 8u + ty], op_b[kk * 16u + tx], op_b[kk * 16u + 8u + tx]);
    }
    return r;
}

// One contraction chunk over streamed rows n0..n0+15: s_tile (own rows) by op_b (columns).
fn blk_step_s(t: Blk, n0: u32, tx: u32, ty: u32) -> Blk {
    var r = t;
    for (var kk = 0u; kk < TC; kk++) {
        r = blk_fma(r, s_tile[(n0 + kk) * 8u + ty], op_b[kk * 16u + tx], op_b[kk * 16u + 8u + tx]);
    }
    return r;
}

// The block into s_tile, column-major (each thread writes whole vec4s: no two share one).
fn blk_to_tile(t: Blk, tx: u32, ty: u32) {
    for (var e = 0u; e < 4u; e++) {
        s_tile[(4u * tx + e) * 8u + ty] = vec4<f32>(t.x0[e], t.x1[e], t.x2[e], t.x3[e]);
        s_tile[(32u + 4u * tx + e) * 8u + ty] = vec4<f32>(t.y0[e], t.y1[e], t.y2[e], t.y3[e]);
    }
}

// Element i of an operand.
fn ld_at(src: u32, i: u32) -> f32 {
    switch src {
        case 0u: {
            return q[i];
        }
        case 1u: {
            return k[i];
        }
        case 2u: {
            return v[i];
        }
        case 3u: {
            return dout[i];
        }
        default: {
            return o_in[i];
        }
    }
}

// Four elements of an operand from (t, c) of head h of batch row b: down the steps (`down`)
// or along the row; zeros past the tensor.
fn ld4(src: u32, b: u32, h: u32, t: u32, c: u32, down: bool) -> vec4<f32> {
    let steps = select(p.tk, p.tq, src == SRC_Q || src >= SRC_DO);
    let width = select(p.dv, p.dk, src <= SRC_K);
    let base = ((b * steps + t) * p.heads + h) * width + c;
    let stride = select(1u, p.heads * width, down);
    let last_t = t + select(0u, 3u, down);
    let last_c = c + select(3u, 0u, down);
    if (last_t < steps && last_c < width) {
        return vec4<f32>(ld_at(src, base), ld_at(src, base + stride),
                         ld_at(src, base + 2u * stride), ld_at(src, base + 3u * stride));
    }
    var r = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        let te = t + select(0u, e, down);
        let ce = c + select(e, 0u, down);
        if (te < steps && ce < width) {
            r[e] = ld_at(src, base + e * stride);
        }
    }
    return r;
}

// op_a: rows r0..r0+31 of src at columns c0..c0+15.
fn fill_a(src: u32, b: u32, h: u32, r0: u32, c0: u32, lid: u32) {
    for (var e = lid; e < 128u; e += 64u) {
        let kk = e % TC;
        let r4 = e / TC;
        op_a[kk * 8u + r4] = ld4(src, b, h, r0 + 4u * r4, c0 + kk, true);
    }
}

// op_b: rows n0..n0+63 of src, as columns, at columns c0..c0+15 of src.
fn fill_b_rows(src: u32, b: u32, h: u32, n0: u32, c0: u32, lid: u32) {
    for (var e = lid; e < 256u; e += 64u) {
        let kk = e % TC;
        let n4 = e / TC;
        op_b[kk * 16u + n4] = ld4(src, b, h, n0 + 4u * n4, c0 + kk, true);
    }
}

// op_b: columns c0..c0+63 of src, rows n0..n0+15.
fn fill_b_cols(src: u32, b: u32, h: u32, n0: u32, c0: u32, lid: u32) {
    for (var e = lid; e < 256u; e += 64u) {
        op_b[e] = ld4(src, b, h, n0 + e / 16u, c0 + 4u * (e % 16u), false);
    }
}

// acc += (rows r0.. of a_src) (rows n0.. of b_src)^T, contracted over `width` columns.
fn blk_scores(acc: Blk, a_src: u32, b_src: u32, width: u32, b: u32, h: u32, r0: u32, n0: u32,
              lid: u32) -> Blk {
    let tx = lid % 8u;
    let ty = lid / 8u;
    var s = acc;
    for (var c0 = 0u; c0 < width; c0 += TC) {
        fill_a(a_src, b, h, r0, c0, lid);
        fill_b_rows(b_src, b, h, n0, c0, lid);
        workgroupBarrier();
        s = blk_step(s, tx, ty);
        workgroupBarrier();
    }
    return s;
}

// acc += s_tile (own rows by `n` streamed rows) times rows n0.. of src at columns c0..c0+63.
// s_tile must be written and a barrier passed.
fn blk_tile_times(acc: Blk, src: u32, b: u32, h: u32, n0: u32, n: u32, c0: u32,
                  lid: u32) -> Blk {
    let tx = lid % 8u;
    let ty = lid / 8u;
    var o = acc;
    for (var kc = 0u; kc < n; kc += TC) {
        fill_b_cols(src, b, h, n0 + kc, c0, lid);
        workgroupBarrier();
        o = blk_step_s(o, kc, tx, ty);
        workgroupBarrier();
    }
    return o;
}

// The block's rows r0.. (< steps) at columns c0.. (< width) into `out` from element `base`,
// each row scaled by its factor in `f`.
fn blk_store(t: Blk, base: u32, steps: u32, width: u32, b: u32, h: u32, r0: u32, c0: u32,
             f: vec4<f32>, lid: u32) {
    let tx = lid % 8u;
    let ty = lid / 8u;
    let s = blk_scale(t, f);
    for (var r = 0u; r < 4u; r++) {
        let row = r0 + 4u * ty + r;
        if (row >= steps) {
            continue;
        }
        var xr = s.x0;
        var yr = s.y0;
        if (r == 1u) {
            xr = s.x1;
            yr = s.y1;
        } else if (r == 2u) {
            xr = s.x2;
            yr = s.y2;
        } else if (r == 3u) {
            xr = s.x3;
            yr = s.y3;
        }
        let at = base + ((b * steps + row) * p.heads + h) * width;
        for (var e = 0u; e < 4u; e++) {
            let cx = c0 + 4u * tx + e;
            if (cx < width) {
                out[at + cx] = xr[e];
            }
            if (cx + 32u < width) {
                out[at + cx + 32u] = yr[e];
            }
        }
    }
}

fn drop_factor(row: u32, key: u32) -> f32 {
    let bits = threefry2x32(p.offset + row, 0x80000000u | key, p.seed_lo, p.seed_hi).x;
    let u = f32(bits >> 8u) * (1.0 / 16777216.0);
    return select(0.0, p.drop_scale, u < p.keep_prob);
}

// Dropout factors of (row, keys j..j+3).
fn drop4(row: u32, j: u32) -> vec4<f32> {
    if (p.keep_prob >= 1.0) {
        return vec4<f32>(1.0);
    }
    return vec4<f32>(drop_factor(row, j), drop_factor(row, j + 1u), drop_factor(row, j + 2u),
                     drop_factor(row, j + 3u));
}

// Dropout factors of (rows row..row+3, key j).
fn drop4_rows(row: u32, j: u32) -> vec4<f32> {
    if (p.keep_prob >= 1.0) {
        return vec4<f32>(1.0);
    }
    return vec4<f32>(drop_factor(row, j), drop_factor(row + 1u, j), drop_factor(row + 2u, j),
                     drop_factor(row + 3u, j));
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
    for (var j = lid; j < p.tk; j += 64u) {
        if (key_allowed_by_ids(b, j)) {
            atomicMin(&first_key, j);
            break;
        }
    }
    workgroupBarrier();
    return atomicLoad(&first_key);
}

// The largest of every thread's `need`; uniform.
fn workgroup_max(need: u32, lid: u32) -> u32 {
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

// The last key query i may attend to when causal, else tk - 1.
fn last_key(i: u32) -> u32 {
    if (p.causal != 0u) {
        return min(i, p.tk - 1u);
    }
    return p.tk - 1u;
}

// Key flags of the streamed block j0..j0+63 (0 past tk) into n_flag.
fn load_key_flags(b: u32, j0: u32, lid: u32) {
    let j = j0 + lid;
    n_flag[lid] = u32(j < p.tk && key_allowed_by_ids(b, j));
}

// The workgroup's place: (b, h, first own row, first output column), or none past the end.
struct Place {
    live: bool,
    b: u32,
    h: u32,
    r0: u32,
    c0: u32,
    bh: u32,
}

fn place(g: u32, rows: u32, width: u32) -> Place {
    let blocks = (rows + TQ - 1u) / TQ;
    let chunks = (width + TW - 1u) / TW;
    let bh = g / (blocks * chunks);
    let rest = g % (blocks * chunks);
    return Place(bh < p.batch * p.heads, bh / p.heads, bh % p.heads, (rest / chunks) * TQ,
                 (rest % chunks) * TW, bh);
}

// Forward scores of one row (limit code `code`) at keys j..j+3 (n = j - j0): scaled, or
// MASKED; a row with no open key scores 0 on every key below tk.
fn forward_scores(s: vec4<f32>, code: u32, j: u32, n: u32) -> vec4<f32> {
    var r = vec4<f32>(MASKED);
    for (var e = 0u; e < 4u; e++) {
        if (code == FULL) {
            if (j + e < p.tk) {
                r[e] = 0.0;
            }
        } else if (n_flag[n + e] != 0u && j + e <= code) {
            r[e] = s[e] * p.scale;
        }
    }
    return r;
}

fn max8(x: vec4<f32>, y: vec4<f32>) -> f32 {
    let m = max(x, y);
    return max(max(m.x, m.y), max(m.z, m.w));
}

fn sum8(x: vec4<f32>, y: vec4<f32>) -> f32 {
    let s = x + y;
    return (s.x + s.y) + (s.z + s.w);
}

// exp(s - m), 0 where masked.
fn weights(s: vec4<f32>, m: f32) -> vec4<f32> {
    return select(exp(s - vec4<f32>(m)), vec4<f32>(0.0), s == vec4<f32>(MASKED));
}

@compute @workgroup_size(64)
fn attention_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = place(group_index(wid, nwg), p.tq, p.dv);
    if (!at.live) {
        return;
    }
    let b = at.b;
    let h = at.h;
    let tx = lid % 8u;
    let ty = lid / 8u;
    let open = first_open_key(b, lid);
    var need = 0u;
    if (lid < TQ) {
        let i = at.r0 + lid;
        var code = FULL;
        if (i < p.tq) {
            var q_ok = true;
            if (p.has_qmask != 0u) {
                q_ok = qids[b * p.tq + i] != 0u;
            }
            let limit = last_key(i);
            if (q_ok && open <= limit) {
                code = limit;
            }
            need = select(limit + 1u, p.tk, code == FULL);
        }
        r_code[lid] = code;
    }
    let end = workgroup_max(need, lid);
    let codes = vec4<u32>(r_code[4u * ty], r_code[4u * ty + 1u], r_code[4u * ty + 2u],
                          r_code[4u * ty + 3u]);
    let row0 = at.bh * p.tq + at.r0 + 4u * ty;
    var o = blk_zero();
    var m = vec4<f32>(MASKED);
    var l = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < end; j0 += TN) {
        load_key_flags(b, j0, lid);
        let raw = blk_scores(blk_zero(), SRC_Q, SRC_K, p.dk, b, h, at.r0, j0, lid);
        let ja = j0 + 4u * tx;
        let jb = ja + 32u;
        let na = 4u * tx;
        let nb = na + 32u;
        var s = Blk(
            forward_scores(raw.x0, codes.x, ja, na), forward_scores(raw.y0, codes.x, jb, nb),
            forward_scores(raw.x1, codes.y, ja, na), forward_scores(raw.y1, codes.y, jb, nb),
            forward_scores(raw.x2, codes.z, ja, na), forward_scores(raw.y2, codes.z, jb, nb),
            forward_scores(raw.x3, codes.w, ja, na), forward_scores(raw.y3, codes.w, jb, nb),
        );
        // Row maxima over the block: each thread's 8 columns, then the 8 threads of a row
        // group, in order.
        op_a[lid] = vec4<f32>(max8(s.x0, s.y0), max8(s.x1, s.y1), max8(s.x2, s.y2),
                              max8(s.x3, s.y3));
        workgroupBarrier();
        var mx = m;
        for (var t = 0u; t < 8u; t++) {
            mx = max(mx, op_a[ty * 8u + t]);
        }
        let alpha = exp(m - mx);
        m = mx;
        s = Blk(weights(s.x0, m.x), weights(s.y0, m.x), weights(s.x1, m.y), weights(s.y1, m.y),
                weights(s.x2, m.z), weights(s.y2, m.z), weights(s.x3, m.w), weights(s.y3, m.w));
        op_a[64u + lid] = vec4<f32>(sum8(s.x0, s.y0), sum8(s.x1, s.y1), sum8(s.x2, s.y2),
                                    sum8(s.x3, s.y3));
        let dropped = Blk(
            s.x0 * drop4(row0, ja), s.y0 * drop4(row0, jb),
            s.x1 * drop4(row0 + 1u, ja), s.y1 * drop4(row0 + 1u, jb),
            s.x2 * drop4(row0 + 2u, ja), s.y2 * drop4(row0 + 2u, jb),
            s.x3 * drop4(row0 + 3u, ja), s.y3 * drop4(row0 + 3u, jb),
        );
        blk_to_tile(dropped, tx, ty);
        workgroupBarrier();
        l *= alpha;
        for (var t = 0u; t < 8u; t++) {
            l += op_a[64u + ty * 8u + t];
        }
        o = blk_tile_times(blk_scale(o, alpha), SRC_V, b, h, j0, min(TN, end - j0), at.c0, lid);
    }
    let cols = p.dv;
    blk_store(o, 0u, p.tq, cols, b, h, at.r0, at.c0, 1.0 / l, lid);
    if (at.c0 == 0u && tx == 0u) {
        for (var r = 0u; r < 4u; r++) {
            let i = at.r0 + 4u * ty + r;
            if (i < p.tq) {
                out[p.second_at + at.bh * p.tq + i] =
                    select(m[r] + log(l[r]), F32_LOWEST, codes[r] == FULL);
            }
        }
    }
}

// dS of one query row (lse, D) at keys j..j+3 (n = j - j0), from its scores and dO . v.
fn dq_scores(s: vec4<f32>, dp: vec4<f32>, lse: f32, d: f32, code: u32, row: u32, j: u32,
             n: u32) -> vec4<f32> {
    if (code == FULL) {
        return vec4<f32>(0.0);
    }
    let f = drop4(row, j);
    var r = vec4<f32>(0.0);
    for (var e = 0u; e < 4u; e++) {
        if (n_flag[n + e] != 0u && j + e <= code) {
            let pij = exp(s[e] * p.scale - lse);
            r[e] = pij * (dp[e] * f[e] - d);
        }
    }
    return r;
}

// D_i = dO_i . o_i of query i (0 past tq).
fn row_d(b: u32, h: u32, i: u32) -> f32 {
    var d = 0.0;
    if (i < p.tq) {
        let at = ((b * p.tq + i) * p.heads + h) * p.dv;
        for (var c = 0u; c < p.dv; c++) {
            d += ld_at(SRC_DO, at + c) * ld_at(SRC_O, at + c);
        }
    }
    return d;
}

@compute @workgroup_size(64)
fn attention_dq(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = place(group_index(wid, nwg), p.tq, p.dk);
    if (!at.live) {
        return;
    }
    let b = at.b;
    let h = at.h;
    let tx = lid % 8u;
    let ty = lid / 8u;
    var need = 0u;
    if (lid < TQ) {
        let i = at.r0 + lid;
        var code = FULL;
        if (i < p.tq && lse_in[at.bh * p.tq + i] != F32_LOWEST) {
            code = last_key(i);
            need = code + 1u;
        }
        r_code[lid] = code;
        let d = row_d(b, h, i);
        r_d[lid] = d;
        if (at.c0 == 0u && i < p.tq) {
            out[p.second_at + at.bh * p.tq + i] = d;
        }
    }
    let end = workgroup_max(need, lid);
    var lse = vec4<f32>(0.0);
    var d = vec4<f32>(0.0);
    var codes = vec4<u32>(FULL);
    for (var r = 0u; r < 4u; r++) {
        codes[r] = r_code[4u * ty + r];
        d[r] = r_d[4u * ty + r];
        if (codes[r] != FULL) {
            lse[r] = lse_in[at.bh * p.tq + at.r0 + 4u * ty + r];
        }
    }
    let row0 = at.bh * p.tq + at.r0 + 4u * ty;
    var acc = blk_zero();
    for (var j0 = 0u; j0 < end; j0 += TN) {
        load_key_flags(b, j0, lid);
        let s = blk_scores(blk_zero(), SRC_Q, SRC_K, p.dk, b, h, at.r0, j0, lid);
        let dp = blk_scores(blk_zero(), SRC_DO, SRC_V, p.dv, b, h, at.r0, j0, lid);
        let ja = j0 + 4u * tx;
        let jb = ja + 32u;
        let na = 4u * tx;
        let nb = na + 32u;
        let ds = Blk(
            dq_scores(s.x0, dp.x0, lse.x, d.x, codes.x, row0, ja, na),
            dq_scores(s.y0, dp.y0, lse.x, d.x, codes.x, row0, jb, nb),
            dq_scores(s.x1, dp.x1, lse.y, d.y, codes.y, row0 + 1u, ja, na),
            dq_scores(s.y1, dp.y1, lse.y, d.y, codes.y, row0 + 1u, jb, nb),
            dq_scores(s.x2, dp.x2, lse.z, d.z, codes.z, row0 + 2u, ja, na),
            dq_scores(s.y2, dp.y2, lse.z, d.z, codes.z, row0 + 2u, jb, nb),
            dq_scores(s.x3, dp.x3, lse.w, d.w, codes.w, row0 + 3u, ja, na),
            dq_scores(s.y3, dp.y3, lse.w, d.w, codes.w, row0 + 3u, jb, nb),
        );
        blk_to_tile(ds, tx, ty);
        workgroupBarrier();
        acc = blk_tile_times(acc, SRC_K, b, h, j0, min(TN, end - j0), at.c0, lid);
    }
    blk_store(acc, 0u, p.tq, p.dk, b, h, at.r0, at.c0, vec4<f32>(p.scale), lid);
}

// Weights (times dropout) and dS of one key (allowed by ids: k_ok) against queries
// i..i+3 (n = i - i0), from its scores and v . dO; codes in n_flag: 0 past tq, 1 a row with
// keys, 2 a row with none.
struct Pds {
    pf: vec4<f32>,
    ds: vec4<f32>,
}

fn dkv_scores(s: vec4<f32>, dp: vec4<f32>, k_ok: bool, j: u32, i: u32, n: u32,
              row: u32) -> Pds {
    let f = drop4_rows(row, j);
    var r = Pds(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var e = 0u; e < 4u; e++) {
        let code = n_flag[n + e];
        if (code == 2u) {
            r.pf[e] = f[e] / f32(p.tk);
        } else if (code == 1u && k_ok && (p.causal == 0u || j <= i + e)) {
            let pij = exp(s[e] * p.scale - n_lse[n + e]);
            r.pf[e] = pij * f[e];
            r.ds[e] = pij * (dp[e] * f[e] - n_d[n + e]);
        }
    }
    return r;
}

@compute @workgroup_size(64)
fn attention_dkv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = place(group_index(wid, nwg), p.tk, max(p.dk, p.dv));
    if (!at.live) {
        return;
    }
    let b = at.b;
    let h = at.h;
    let tx = lid % 8u;
    let ty = lid / 8u;
    var k_ok = vec4<bool>(false);
    for (var r = 0u; r < 4u; r++) {
        let j = at.r0 + 4u * ty + r;
        k_ok[r] = j < p.tk && key_allowed_by_ids(b, j);
    }
    let j_lo = at.r0 + 4u * ty;
    var dk_acc = blk_zero();
    var dv_acc = blk_zero();
    for (var i0 = 0u; i0 < p.tq; i0 += TN) {
        let i = i0 + lid;
        var code = 0u;
        var lse = 0.0;
        var d = 0.0;
        if (i < p.tq) {
            lse = lse_in[at.bh * p.tq + i];
            code = select(1u, 2u, lse == F32_LOWEST);
            d = o_in[at.bh * p.tq + i];
        }
        n_flag[lid] = code;
        n_lse[lid] = lse;
        n_d[lid] = d;
        // A causal block of queries all before the first key matters only for rows with no key.
        let early = p.causal != 0u && i0 + TN <= at.r0;
        if (workgroup_max(select(0u, 1u, !early || code == 2u), lid) == 0u) {
            continue;
        }
        let s = blk_scores(blk_zero(), SRC_K, SRC_Q, p.dk, b, h, at.r0, i0, lid);
        let dp = blk_scores(blk_zero(), SRC_V, SRC_DO, p.dv, b, h, at.r0, i0, lid);
        let ia = i0 + 4u * tx;
        let ib = ia + 32u;
        let na = 4u * tx;
        let nb = na + 32u;
        let ra = at.bh * p.tq + ia;
        let rb = ra + 32u;
        let a0 = dkv_scores(s.x0, dp.x0, k_ok.x, j_lo, ia, na, ra);
        let b0 = dkv_scores(s.y0, dp.y0, k_ok.x, j_lo, ib, nb, rb);
        let a1 = dkv_scores(s.x1, dp.x1, k_ok.y, j_lo + 1u, ia, na, ra);
        let b1 = dkv_scores(s.y1, dp.y1, k_ok.y, j_lo + 1u, ib, nb, rb);
        let a2 = dkv_scores(s.x2, dp.x2, k_ok.z, j_lo + 2u, ia, na, ra);
        let b2 = dkv_scores(s.y2, dp.y2, k_ok.z, j_lo + 2u, ib, nb, rb);
        let a3 = dkv_scores(s.x3, dp.x3, k_ok.w, j_lo + 3u, ia, na, ra);
        let b3 = dkv_scores(s.y3, dp.y3, k_ok.w, j_lo + 3u, ib, nb, rb);
        let n = min(TN, p.tq - i0);
        if (at.c0 < p.dv) {
            blk_to_tile(Blk(a0.pf, b0.pf, a1.pf, b1.pf, a2.pf, b2.pf, a3.pf, b3.pf), tx, ty);
            workgroupBarrier();
            dv_acc = blk_tile_times(dv_acc, SRC_DO, b, h, i0, n, at.c0, lid);
        }
        if (at.c0 < p.dk) {
            blk_to_tile(Blk(a0.ds, b0.ds, a1.ds, b1.ds, a2.ds, b2.ds, a3.ds, b3.ds), tx, ty);
            workgroupBarrier();
            dk_acc = blk_tile_times(dk_acc, SRC_Q, b, h, i0, n, at.c0, lid);
        }
    }
    blk_store(dk_acc, 0u, p.tk, p.dk, b, h, at.r0, at.c0, vec4<f32>(p.scale), lid);
    blk_store(dv_acc, p.second_at, p.tk, p.dv, b, h, at.r0, at.c0, vec4<f32>(1.0), lid);
}
