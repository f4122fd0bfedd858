// The GRU recurrence (Keras's GRU, reset_after = True), fused and persistent: one dispatch runs
// every timestep of every direction. Same work split as lstm.wgsl (read its header first): a
// workgroup owns ROWS batch rows of one direction for the whole sequence, a thread UNITS hidden
// units of them, the state lives in workgroup memory double-buffered, one barrier per step.
//
// Dimension letters: B batch, T steps, H hidden units, D directions (direction 1 reads time
// backwards). Gates in Keras's order z (update), r (reset), n (candidate, Keras's "h"); rows of the
// (D, B*T, ...) buffers are ordered (b, t) with t the actual time, whatever the direction.
//
//   a = h_prev . recurrent[d] + bias[d, 1]                         (3H, the recurrent part)
//   z = sigmoid(xproj_z + bias[d, 0]_z + a_z)   r = sigmoid(xproj_r + bias[d, 0]_r + a_r)
//   n = tanh(xproj_n + bias[d, 0]_n + r * a_n)
//   h = z * h_prev + (1 - z) * n
//   masked step (ids[b, t] == 0 when has_mask): h = h_prev; its output y is h, or 0 with
//   zero_masked (Keras's Bidirectional), whose gradient then stops there
//
// Backward, per step, from dh (dy + the carry + the recurrent gradient of the step after):
//   dn' = dh (1 - z)(1 - n^2)     dz' = dh (h_prev - n) z (1 - z)     dr' = dn' a_n r (1 - r)
//   dx = (dz', dr', dn')  the gradient of xproj + bias[d, 0];
//   da = (dz', dr', dn' r)  the gradient of a: recurrent and bias[d, 1] gradients, and
//   dh_prev = dh z + da . recurrent[d]^T.
// xproj = x . kernel[d] is one GEMM before this kernel; the weight gradients are GEMMs after it.

struct GruParams {
    batch: u32,
    steps: u32,
    hidden: u32,
    dirs: u32,
    rows: u32,
    has_init: u32,
    has_mask: u32,
    write_seq: u32,
    has_dy: u32,
    has_dh_last: u32,
    zero_masked: u32,
    hprev_at: u32,
    da_at: u32,
    carry_at: u32,
    _pad0: u32,
    _pad1: u32,
}

// At most 8 storage buffers per pass, WebGPU's guaranteed minimum: outputs the host keeps apart
// share one buffer at aligned offsets the params give.
@group(0) @binding(0) var<uniform> p: GruParams;
// forward
@group(0) @binding(1) var<storage, read> xproj: array<f32>;      // (D, B*T, 3H), no bias
@group(0) @binding(2) var<storage, read> recurrent: array<f32>;  // (D, H, 3H)
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // (D, 2, 3H): input, recurrent
@group(0) @binding(4) var<storage, read> init: array<f32>;       // (D, B, H): h0
@group(0) @binding(5) var<storage, read> ids: array<u32>;        // (B, T), 0 = masked
// cache (D, B*T, 4H): z r n a_n; at hprev_at, hprev (D, B*T, H): h before the step
@group(0) @binding(6) var<storage, read_write> saved: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;     // (B, T, D*H)
@group(0) @binding(8) var<storage, read_write> last: array<f32>;  // (B, D*H)
// backward
@group(0) @binding(9) var<storage, read> cache_in: array<f32>;    // (D, B*T, 4H)
@group(0) @binding(10) var<storage, read> dy: array<f32>;         // (B, T, D*H)
@group(0) @binding(11) var<storage, read> dhlast: array<f32>;     // (B, D*H)
@group(0) @binding(12) var<storage, read> hprev_in: array<f32>;   // (D, B*T, H)
// dx (D, B*T, 3H); at da_at, da (D, B*T, 3H); at carry_at, (D, B, H): the carried dh while
// the loop runs, d(h0) when it ends.
@group(0) @binding(13) var<storage, read_write> grads: array<f32>;

override ROWS: u32 = 4u;
override UNITS: u32 = 1u;
override WG: u32 = 64u;
const MAX_ROWS: u32 = 8u;
const MAX_UNITS: u32 = 8u;
const MAX_BLOCK: u32 = 64u; // MAX_ROWS * MAX_UNITS

// 16 KiB of workgroup memory as vec4s: h (forward) or da (backward) read four at a time.
var<workgroup> shv: array<vec4<f32>, 1024>;

fn set_shared(i: u32, v: f32) {
    shv[i / 4u][i % 4u] = v;
}

// The three gate weights (z, r, n) of one input for unit j: recurrent[w + g*H], w at (k, j).
fn gates_of(w: u32) -> vec3<f32> {
    let H = p.hidden;
    return vec3<f32>(recurrent[w], recurrent[w + H], recurrent[w + 2u * H]);
}

// Entry c of a recurrent row read from wr, of which `left` entries remain: zero past its end (3H
// need not be a multiple of 4, and the next row, or the buffer's end, follows).
fn row_weight(wr: u32, c: u32, left: u32) -> f32 {
    if (c < left) {
        return recurrent[wr + c];
    }
    return 0.0;
}

fn unit_of(j0: u32, u: u32) -> u32 {
    return min(j0 + u * WG, p.hidden - 1u);
}

fn tanh_c(v: f32) -> f32 {
    return tanh(clamp(v, -15.0, 15.0));
}

fn time_of(s: u32, dir: u32) -> u32 {
    return select(s, p.steps - 1u - s, dir == 1u);
}

fn block_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let blocks = (p.batch + ROWS - 1u) / ROWS;
    let g = group_index(wid, nwg);
    return vec2<u32>(g / blocks, (g % blocks) * ROWS);
}

fn masked(b: u32, t: u32) -> bool {
    return p.has_mask == 1u && ids[b * p.steps + t] == 0u;
}

@compute @workgroup_size(WG)
fn gru_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let H = p.hidden;
    let B = p.batch;
    let T = p.steps;
    let D = p.dirs;
    let block = block_of(wid, nwg);
    let dir = block.x;
    let b0 = block.y;
    // h rows in workgroup memory are HP = H rounded up to 4 long, zero padded.
    let HP = (H + 3u) / 4u * 4u;
    let cells = ROWS * HP;
    for (var cell = lid; cell < cells; cell += WG) {
        let b = b0 + cell / HP;
        let j = cell % HP;
        var h = 0.0;
        if (b < B && j < H && p.has_init == 1u) {
            h = init[(dir * B + b) * H + j];
        }
        set_shared(cell, h);
    }
    workgroupBarrier();
    let bb = dir * 6u * H;
    for (var s = 0u; s < T; s += 1u) {
        let t = time_of(s, dir);
        let cur = (s % 2u) * cells;
        let nxt = cells - cur;
        for (var j0 = lid; j0 < H; j0 += WG * UNITS) {
            // a[r * UNITS + u]: the recurrent part (z, r, n) of unit j0 + u * WG, row b0 + r.
            var a: array<vec3<f32>, MAX_BLOCK>;
            for (var u = 0u; u < UNITS; u += 1u) {
                let j = unit_of(j0, u);
                let rb = vec3<f32>(bias[bb + 3u * H + j], bias[bb + 4u * H + j], bias[bb + 5u * H + j]);
                for (var r = 0u; r < ROWS; r += 1u) {
                    a[r * UNITS + u] = rb;
                }
            }
            var w = dir * H * 3u * H;
            for (var k = 0u; k < H; k += 4u) {
                var w0: array<vec3<f32>, MAX_UNITS>;
                var w1: array<vec3<f32>, MAX_UNITS>;
                var w2: array<vec3<f32>, MAX_UNITS>;
                var w3: array<vec3<f32>, MAX_UNITS>;
                for (var u = 0u; u < UNITS; u += 1u) {
                    let wu = w + unit_of(j0, u);
                    w0[u] = gates_of(wu);
                    w1[u] = select(vec3<f32>(0.0), gates_of(wu + 3u * H), k + 1u < H);
                    w2[u] = select(vec3<f32>(0.0), gates_of(wu + 6u * H), k + 2u < H);
                    w3[u] = select(vec3<f32>(0.0), gates_of(wu + 9u * H), k + 3u < H);
                }
                for (var r = 0u; r < ROWS; r += 1u) {
                    let h4 = shv[(cur + r * HP + k) / 4u];
                    for (var u = 0u; u < UNITS; u += 1u) {
                        var acc = a[r * UNITS + u];
                        acc += h4.x * w0[u];
                        acc += h4.y * w1[u];
                        acc += h4.z * w2[u];
                        acc += h4.w * w3[u];
                        a[r * UNITS + u] = acc;
                    }
                }
                w += 12u * H;
            }
            for (var u = 0u; u < UNITS; u += 1u) {
                let j = j0 + u * WG;
                if (j >= H) {
                    break;
                }
                for (var r = 0u; r < ROWS; r += 1u) {
                    let b = b0 + r;
                    if (b >= B) {
                        continue;
                    }
                    let row = (dir * B + b) * T + t;
                    let h_prev = shv[(cur + r * HP + j) / 4u][j % 4u];
                    let xr = row * 3u * H;
                    let ar = a[r * UNITS + u];
                    let zg = sigmoid(xproj[xr + j] + bias[bb + j] + ar.x);
                    let rg = sigmoid(xproj[xr + H + j] + bias[bb + H + j] + ar.y);
                    let ng = tanh_c(xproj[xr + 2u * H + j] + bias[bb + 2u * H + j] + rg * ar.z);
                    var h = zg * h_prev + (1.0 - zg) * ng;
                    var y_out = h;
                    if (masked(b, t)) {
                        h = h_prev;
                        y_out = select(h, 0.0, p.zero_masked == 1u);
                    }
                    let cr = row * 4u * H;
                    saved[cr + j] = zg;
                    saved[cr + H + j] = rg;
                    saved[cr + 2u * H + j] = ng;
                    saved[cr + 3u * H + j] = ar.z;
                    saved[p.hprev_at + row * H + j] = h_prev;
                    if (p.write_seq == 1u) {
                        y[(b * T + t) * D * H + dir * H + j] = y_out;
                    }
                    if (s + 1u == T) {
                        last[b * D * H + dir * H + j] = h;
                    }
                    set_shared(nxt + r * HP + j, h);
                }
            }
        }
        workgroupBarrier();
    }
}

// Backpropagation through time, fused the same way: steps in reverse; the thread for unit j
// gathers dh = dy + carry + da_next . recurrent[j, :] (da_next of the step processed after this
// one, in workgroup memory, rows Z3 = 3H rounded up to 4 long and zero padded), then the gate
// gradients of its unit.
@compute @workgroup_size(WG)
fn gru_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let H = p.hidden;
    let B = p.batch;
    let T = p.steps;
    let D = p.dirs;
    let block = block_of(wid, nwg);
    let dir = block.x;
    let b0 = block.y;
    let cells = ROWS * H;
    let Z3 = (3u * H + 3u) / 4u * 4u;
    let zlen = ROWS * Z3;
    let carry = p.carry_at;
    for (var cell = lid; cell < cells; cell += WG) {
        let b = b0 + cell / H;
        let j = cell % H;
        if (b < B) {
            var dh = 0.0;
            if (p.has_dh_last == 1u) {
                dh = dhlast[b * D * H + dir * H + j];
            }
            grads[carry + (dir * B + b) * H + j] = dh;
        }
    }
    // Both halves: the padding past 3H is never written and must read as zero.
    for (var i = lid; i < 2u * zlen / 4u; i += WG) {
        shv[i] = vec4<f32>(0.0);
    }
    storageBarrier();
    workgroupBarrier();
    for (var s = 0u; s < T; s += 1u) {
        let q = T - 1u - s;
        let t = time_of(q, dir);
        let cur = (s % 2u) * zlen;
        let nxt = zlen - cur;
        for (var j0 = lid; j0 < H; j0 += WG * UNITS) {
            var dhs: array<f32, MAX_BLOCK>;
            for (var u = 0u; u < UNITS; u += 1u) {
                let j = unit_of(j0, u);
                for (var r = 0u; r < ROWS; r += 1u) {
                    let b = b0 + r;
                    var dh = 0.0;
                    if (b < B) {
                        dh = grads[carry + (dir * B + b) * H + j];
                        if (p.has_dy == 1u && !(p.zero_masked == 1u && masked(b, t))) {
                            dh += dy[(b * T + t) * D * H + dir * H + j];
                        }
                    }
                    dhs[r * UNITS + u] = dh;
                }
            }
            for (var k = 0u; k < 3u * H; k += 4u) {
                var w4: array<vec4<f32>, MAX_UNITS>;
                for (var u = 0u; u < UNITS; u += 1u) {
                    let wr = (dir * H + unit_of(j0, u)) * 3u * H + k;
                    let left = 3u * H - k;
                    w4[u] = vec4<f32>(row_weight(wr, 0u, left), row_weight(wr, 1u, left), row_weight(wr, 2u, left), row_weight(wr, 3u, left));
                }
                for (var r = 0u; r < ROWS; r += 1u) {
                    let d4 = shv[(cur + r * Z3 + k) / 4u];
                    for (var u = 0u; u < UNITS; u += 1u) {
                        var acc = dhs[r * UNITS + u];
                        acc += d4.x * w4[u].x;
                        acc += d4.y * w4[u].y;
                        acc += d4.z * w4[u].z;
                        acc += d4.w * w4[u].w;
                        dhs[r * UNITS + u] = acc;
                    }
                }
            }
            for (var u = 0u; u < UNITS; u += 1u) {
                let j = j0 + u * WG;
                if (j >= H) {
                    break;
                }
                for (var r = 0u; r < ROWS; r += 1u) {
                    let b = b0 + r;
                    if (b >= B) {
                        continue;
                    }
                    let dh = dhs[r * UNITS + u];
                    let row = (dir * B + b) * T + t;
                    let ci = (dir * B + b) * H + j;
                    var dz = 0.0;
                    var dr = 0.0;
                    var dn = 0.0;
                    var dan = 0.0;
                    if (masked(b, t)) {
                        grads[carry + ci] = dh;
                    } else {
                        let cr = row * 4u * H;
                        let zg = cache_in[cr + j];
                        let rg = cache_in[cr + H + j];
                        let ng = cache_in[cr + 2u * H + j];
                        let an = cache_in[cr + 3u * H + j];
                        let hp = hprev_in[row * H + j];
                        dn = dh * (1.0 - zg) * (1.0 - ng * ng);
                        dz = dh * (hp - ng) * zg * (1.0 - zg);
                        dr = dn * an * rg * (1.0 - rg);
                        dan = dn * rg;
                        grads[carry + ci] = dh * zg;
                    }
                    let zr = row * 3u * H;
                    grads[zr + j] = dz;
                    grads[zr + H + j] = dr;
                    grads[zr + 2u * H + j] = dn;
                    grads[p.da_at + zr + j] = dz;
                    grads[p.da_at + zr + H + j] = dr;
                    grads[p.da_at + zr + 2u * H + j] = dan;
                    let zs = nxt + r * Z3;
                    set_shared(zs + j, dz);
                    set_shared(zs + H + j, dr);
                    set_shared(zs + 2u * H + j, dan);
                }
            }
        }
        workgroupBarrier();
    }
    // d(h0): the carry plus the recurrent gradient of the first processed step.
    storageBarrier();
    let last_da = (T % 2u) * zlen;
    for (var cell = lid; cell < cells; cell += WG) {
        let r = cell / H;
        let j = cell % H;
        let b = b0 + r;
        if (b >= B) {
            continue;
        }
        let ci = (dir * B + b) * H + j;
        var dh = grads[carry + ci];
        let zb = last_da + r * Z3;
        let wr = (dir * H + j) * 3u * H;
        for (var k = 0u; k < 3u * H; k += 1u) {
            dh += shv[(zb + k) / 4u][(zb + k) % 4u] * recurrent[wr + k];
        }
        grads[carry + ci] = dh;
    }
}
