// The LSTM recurrence, fused and persistent: one dispatch runs every timestep of every direction.
//
// Dimension letters: B batch, T steps, H hidden units, D directions (1, or 2 for Bidirectional:
// direction 0 reads t = 0..T-1, direction 1 reads t = T-1..0). Gates in Keras's order i, f, g, o
// (g is the candidate, Keras's "c"); rows of the (D, B*T, ...) buffers are ordered (b, t) with t
// the actual time, whatever the direction.
//
//   z = xproj[d, b, t] + bias[d] + h_prev . recurrent[d]          (4H)
//   i = sigmoid(z_i)  f = sigmoid(z_f)  g = tanh(z_g)  o = sigmoid(z_o)
//   c = f * c_prev + i * g      h = o * tanh(c)
//   masked step (ids[b, t] == 0 when has_mask): c = c_prev, h = h_prev; its output y is h, or 0
//   with zero_masked (Keras's Bidirectional), whose gradient then stops there
//
// xproj = x . kernel[d] for all timesteps is one batched GEMM done before this kernel; the
// weight gradients are GEMMs done after `lstm_backward`. This file holds only what is sequential.
//
// Work split: a workgroup owns ROWS batch rows of one direction (workgroup g: direction
// g / blocks, row block g % blocks) for the whole sequence. Batch rows never interact, so no
// grid-wide barrier is needed: the hidden state (forward) or the gate gradients (backward) of the
// workgroup's rows live in workgroup memory, double-buffered, with one barrier per step. A thread
// owns UNITS hidden units at once (j0 + u * WG, j0 = lid, lid + WG * UNITS, ...), each for all
// ROWS rows: each recurrent weight it loads serves ROWS rows and each value it reads from
// workgroup memory serves UNITS units (register blocking both ways, as in a GEMM). A unit's c is
// read back from `cache`, which the same thread wrote a step before. The host picks ROWS (at most
// 8) so the shared buffers fit (forward 2*ROWS*HP with HP = H rounded up to 4, backward
// 2*ROWS*4H floats), and UNITS (1 on a GPU, up to 8 on a CPU adapter) with WG threads to match.

struct LstmParams {
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
    has_dc_last: u32,
    hprev_at: u32,
    clast_at: u32,
    carry_at: u32,
    _pad: u32,
}

// Each pass binds at most 8 storage buffers, WebGPU's guaranteed minimum: outputs that the host
// keeps apart live in one buffer each pass, at aligned offsets the params give (the host hands
// them out as views of that buffer).
@group(0) @binding(0) var<uniform> p: LstmParams;
// forward
@group(0) @binding(1) var<storage, read> xproj: array<f32>;      // (D, B*T, 4H), no bias
@group(0) @binding(2) var<storage, read> recurrent: array<f32>;  // (D, H, 4H)
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // (D, 4H)
@group(0) @binding(4) var<storage, read> init: array<f32>;       // (2, D, B, H): h0 then c0
@group(0) @binding(5) var<storage, read> ids: array<u32>;        // (B, T), 0 = masked
// cache (D, B*T, 5H): i f g o c; at hprev_at, hprev (D, B*T, H): h before the step
@group(0) @binding(6) var<storage, read_write> saved: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;     // (B, T, D*H)
// h (B, D*H) after each direction's last step; at clast_at, c (B, D*H)
@group(0) @binding(8) var<storage, read_write> last: array<f32>;
// backward
@group(0) @binding(9) var<storage, read> cache_in: array<f32>;    // (D, B*T, 5H)
@group(0) @binding(10) var<storage, read> dy: array<f32>;         // (B, T, D*H)
@group(0) @binding(11) var<storage, read> dhlast: array<f32>;     // (B, D*H)
@group(0) @binding(12) var<storage, read> dclast: array<f32>;     // (B, D*H)
// dz (D, B*T, 4H); at carry_at, (2, D, B, H): the carried dh and dc while the loop runs, d(h0)
// and d(c0) when it ends.
@group(0) @binding(13) var<storage, read_write> grads: array<f32>;

// Batch rows per workgroup (at most MAX_ROWS), hidden units per thread (at most MAX_UNITS) and
// threads per workgroup.
override ROWS: u32 = 4u;
override UNITS: u32 = 1u;
override WG: u32 = 64u;
const MAX_ROWS: u32 = 8u;
const MAX_UNITS: u32 = 8u;
const MAX_BLOCK: u32 = 64u; // MAX_ROWS * MAX_UNITS

// 16 KiB: WebGPU's guaranteed minimum of workgroup memory, as vec4s: the inner loops read four
// values of h (forward) or dz (backward) at a time.
var<workgroup> shv: array<vec4<f32>, 1024>;

fn set_shared(i: u32, v: f32) {
    shv[i / 4u][i % 4u] = v;
}

// The four gate weights (i, f, g, o) of one input for unit j: recurrent[w + g*H], w at (k, j).
fn gates_of(w: u32) -> vec4<f32> {
    let H = p.hidden;
    return vec4<f32>(recurrent[w], recurrent[w + H], recurrent[w + 2u * H], recurrent[w + 3u * H]);
}

// Unit u of a thread whose first unit is j0: j0 + u * WG, clamped to the last unit (a unit past
// H computes a copy of unit H - 1, which is never written).
fn unit_of(j0: u32, u: u32) -> u32 {
    return min(j0 + u * WG, p.hidden - 1u);
}

fn tanh_c(v: f32) -> f32 {
    return tanh(clamp(v, -15.0, 15.0));
}

// Actual time of processing step s in direction dir.
fn time_of(s: u32, dir: u32) -> u32 {
    return select(s, p.steps - 1u - s, dir == 1u);
}

// (direction, first batch row) of this workgroup.
fn block_of(wid: vec3<u32>, nwg: vec3<u32>) -> vec2<u32> {
    let blocks = (p.batch + ROWS - 1u) / ROWS;
    let g = group_index(wid, nwg);
    return vec2<u32>(g / blocks, (g % blocks) * ROWS);
}

fn masked(b: u32, t: u32) -> bool {
    return p.has_mask == 1u && ids[b * p.steps + t] == 0u;
}

@compute @workgroup_size(WG)
fn lstm_forward(
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
    // Rows of h in workgroup memory are HP = H rounded up to 4 long (zero padded), so that the
    // inner loop reads 4 of them at once.
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
    let br = dir * 4u * H;
    for (var s = 0u; s < T; s += 1u) {
        let t = time_of(s, dir);
        let cur = (s % 2u) * cells;
        let nxt = cells - cur;
        for (var j0 = lid; j0 < H; j0 += WG * UNITS) {
            // z[r * UNITS + u] = (i, f, g, o) pre-activations of unit j0 + u * WG, row b0 + r. A
            // unit past H computes a copy of unit H - 1 and is never written.
            var z: array<vec4<f32>, MAX_BLOCK>;
            for (var u = 0u; u < UNITS; u += 1u) {
                let j = unit_of(j0, u);
                let bias4 = vec4<f32>(bias[br + j], bias[br + H + j], bias[br + 2u * H + j], bias[br + 3u * H + j]);
                for (var r = 0u; r < ROWS; r += 1u) {
                    let b = b0 + r;
                    if (b < B) {
                        let xr = ((dir * B + b) * T + t) * 4u * H;
                        z[r * UNITS + u] = vec4<f32>(xproj[xr + j], xproj[xr + H + j], xproj[xr + 2u * H + j], xproj[xr + 3u * H + j]) + bias4;
                    } else {
                        z[r * UNITS + u] = vec4<f32>(0.0);
                    }
                }
            }
            var w = dir * H * 4u * H;
            for (var k = 0u; k < H; k += 4u) {
                // Weights of inputs k..k+3 for each unit (zero past H, where h is zero padding too).
                var w0: array<vec4<f32>, MAX_UNITS>;
                var w1: array<vec4<f32>, MAX_UNITS>;
                var w2: array<vec4<f32>, MAX_UNITS>;
                var w3: array<vec4<f32>, MAX_UNITS>;
                for (var u = 0u; u < UNITS; u += 1u) {
                    let wu = w + unit_of(j0, u);
                    w0[u] = gates_of(wu);
                    w1[u] = select(vec4<f32>(0.0), gates_of(wu + 4u * H), k + 1u < H);
                    w2[u] = select(vec4<f32>(0.0), gates_of(wu + 8u * H), k + 2u < H);
                    w3[u] = select(vec4<f32>(0.0), gates_of(wu + 12u * H), k + 3u < H);
                }
                for (var r = 0u; r < ROWS; r += 1u) {
                    let h4 = shv[(cur + r * HP + k) / 4u];
                    for (var u = 0u; u < UNITS; u += 1u) {
                        var acc = z[r * UNITS + u];
                        acc += h4.x * w0[u];
                        acc += h4.y * w1[u];
                        acc += h4.z * w2[u];
                        acc += h4.w * w3[u];
                        z[r * UNITS + u] = acc;
                    }
                }
                w += 16u * H;
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
                    var c_prev = 0.0;
                    if (s == 0u) {
                        if (p.has_init == 1u) {
                            c_prev = init[((D + dir) * B + b) * H + j];
                        }
                    } else {
                        let t_prev = select(t - 1u, t + 1u, dir == 1u);
                        c_prev = saved[((dir * B + b) * T + t_prev) * 5u * H + 4u * H + j];
                    }
                    let ig = sigmoid(z[r * UNITS + u].x);
                    let fg = sigmoid(z[r * UNITS + u].y);
                    let gg = tanh_c(z[r * UNITS + u].z);
                    let og = sigmoid(z[r * UNITS + u].w);
                    var c = fg * c_prev + ig * gg;
                    var h = og * tanh_c(c);
                    var y_out = h;
                    if (masked(b, t)) {
                        c = c_prev;
                        h = h_prev;
                        y_out = select(h, 0.0, p.zero_masked == 1u);
                    }
                    let cr = row * 5u * H;
                    saved[cr + j] = ig;
                    saved[cr + H + j] = fg;
                    saved[cr + 2u * H + j] = gg;
                    saved[cr + 3u * H + j] = og;
                    saved[cr + 4u * H + j] = c;
                    saved[p.hprev_at + row * H + j] = h_prev;
                    let out = b * D * H + dir * H + j;
                    if (p.write_seq == 1u) {
                        y[(b * T + t) * D * H + dir * H + j] = y_out;
                    }
                    if (s + 1u == T) {
                        last[out] = h;
                        last[p.clast_at + out] = c;
                    }
                    set_shared(nxt + r * HP + j, h);
                }
            }
        }
        workgroupBarrier();
    }
}

// Backpropagation through time, fused the same way: processing steps in reverse, the thread for
// unit j gathers, for each of its rows, dh = dy + carried dh + dz_next . recurrent[j, :] (dz_next
// of the step processed after this one, in workgroup memory), then the gate gradients of its
// unit. dz is written for the weight-gradient GEMMs; dc and (through masked steps) dh are carried.
@compute @workgroup_size(WG)
fn lstm_backward(
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
    let zlen = ROWS * 4u * H;
    let carry = p.carry_at;
    let carry_dc = carry + D * B * H;
    for (var cell = lid; cell < cells; cell += WG) {
        let b = b0 + cell / H;
        let j = cell % H;
        if (b < B) {
            var dh = 0.0;
            var dc = 0.0;
            if (p.has_dh_last == 1u) {
                dh = dhlast[b * D * H + dir * H + j];
            }
            if (p.has_dc_last == 1u) {
                dc = dclast[b * D * H + dir * H + j];
            }
            grads[carry + (dir * B + b) * H + j] = dh;
            grads[carry_dc + (dir * B + b) * H + j] = dc;
        }
    }
    for (var i = lid; i < zlen / 4u; i += WG) {
        shv[i] = vec4<f32>(0.0);
    }
    // The carries were written by thread `cell % WG`; the loop reads them from the thread that
    // owns unit j. A workgroup barrier orders workgroup memory only: storage needs its own.
    storageBarrier();
    workgroupBarrier();
    for (var s = 0u; s < T; s += 1u) {
        let q = T - 1u - s; // processing step, run backwards
        let t = time_of(q, dir);
        let cur = (s % 2u) * zlen;
        let nxt = zlen - cur;
        for (var j0 = lid; j0 < H; j0 += WG * UNITS) {
            // dhs[r * UNITS + u]: dh of unit j0 + u * WG, row b0 + r. A unit past H computes a
            // copy of unit H - 1 and is never written.
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
            for (var k = 0u; k < 4u * H; k += 4u) {
                var w4: array<vec4<f32>, MAX_UNITS>;
                for (var u = 0u; u < UNITS; u += 1u) {
                    let wr = (dir * H + unit_of(j0, u)) * 4u * H + k;
                    w4[u] = vec4<f32>(recurrent[wr], recurrent[wr + 1u], recurrent[wr + 2u], recurrent[wr + 3u]);
                }
                for (var r = 0u; r < ROWS; r += 1u) {
                    let d4 = shv[(cur + r * 4u * H + k) / 4u];
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
                    var di = 0.0;
                    var df = 0.0;
                    var dg = 0.0;
                    var do_ = 0.0;
                    if (masked(b, t)) {
                        grads[carry + ci] = dh;
                    } else {
                        let cr = row * 5u * H;
                        let ig = cache_in[cr + j];
                        let fg = cache_in[cr + H + j];
                        let gg = cache_in[cr + 2u * H + j];
                        let og = cache_in[cr + 3u * H + j];
                        let c = cache_in[cr + 4u * H + j];
                        var c_prev = 0.0;
                        if (q == 0u) {
                            if (p.has_init == 1u) {
                                c_prev = init[((D + dir) * B + b) * H + j];
                            }
                        } else {
                            let t_prev = select(t - 1u, t + 1u, dir == 1u);
                            c_prev = cache_in[((dir * B + b) * T + t_prev) * 5u * H + 4u * H + j];
                        }
                        let tc = tanh_c(c);
                        let dc = grads[carry_dc + ci] + dh * og * (1.0 - tc * tc);
                        di = dc * gg * ig * (1.0 - ig);
                        df = dc * c_prev * fg * (1.0 - fg);
                        dg = dc * ig * (1.0 - gg * gg);
                        do_ = dh * tc * og * (1.0 - og);
                        grads[carry + ci] = 0.0;
                        grads[carry_dc + ci] = dc * fg;
                    }
                    let zr = row * 4u * H;
                    grads[zr + j] = di;
                    grads[zr + H + j] = df;
                    grads[zr + 2u * H + j] = dg;
                    grads[zr + 3u * H + j] = do_;
                    let zs = nxt + r * 4u * H;
                    set_shared(zs + j, di);
                    set_shared(zs + H + j, df);
                    set_shared(zs + 2u * H + j, dg);
                    set_shared(zs + 3u * H + j, do_);
                }
            }
        }
        workgroupBarrier();
    }
    // d(h0): what is carried plus the recurrent gradient of the first processed step. The
    // carries were last written by their units' threads, and are read here by thread `cell % WG`.
    storageBarrier();
    let last = (T % 2u) * zlen;
    for (var cell = lid; cell < cells; cell += WG) {
        let r = cell / H;
        let j = cell % H;
        let b = b0 + r;
        if (b >= B) {
            continue;
        }
        let ci = (dir * B + b) * H + j;
        var dh = grads[carry + ci];
        let zb = last + r * 4u * H;
        let wr = (dir * H + j) * 4u * H;
        for (var k = 0u; k < 4u * H; k += 1u) {
            dh += shv[(zb + k) / 4u][(zb + k) % 4u] * recurrent[wr + k];
        }
        grads[carry + ci] = dh;
    }
}
