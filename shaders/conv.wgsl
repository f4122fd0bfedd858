// 2-D convolution over NCHW tensors, through im2col and the tuned matmul.
//
// Dimension letters: N images, C input channels, H x W input, F filters, FH x FW filter,
// OH x OW output, K = C * FH * FW (one column of the im2col matrix per output pixel).
// OH = (H + 2 * PAD - DIL * (FH - 1) - 1) / STRIDE + 1, and likewise OW (ConvParams::out_h on the host).
//
// `im2col`: cols (N, K, OH * OW); cols[n, (c, fy, fx), (oy, ox)] = x[n, c, oy*S - P + fy*D, ox*S - P + fx*D]
//   or 0 outside the image. Then y (N, F, OH*OW) = w (F, K) · cols[n] is one batched matmul.
// `col2im`: the adjoint, dx (N, C, H, W) from dcols (N, K, OH * OW), as a gather: each input pixel
//   sums the columns that read it, in a fixed order (deterministic, no atomics).
// `bias_channels`: y[n, f, :] += bias[f], in place.
// `conv2d_direct`: one thread per output, the comparison kernel.

struct ConvParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    f: u32,
    fh: u32,
    fw: u32,
    stride: u32,
    pad: u32,
    dil: u32,
    oh: u32,
    ow: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;              // (N, C, H, W)
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;     // (N, K, OH*OW)
@group(0) @binding(3) var<storage, read> dcols: array<f32>;          // (N, K, OH*OW)
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;       // (N, C, H, W)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;        // (N, F, OH, OW)
@group(0) @binding(6) var<storage, read> bias: array<f32>;           // (F)
@group(0) @binding(7) var<storage, read> weight: array<f32>;         // (F, C, FH, FW)

@compute @workgroup_size(256)
fn im2col(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    let hw = p.oh * p.ow;
    let k = p.c * p.fh * p.fw;
    if (idx >= p.n * k * hw) {
        return;
    }
    let pix = idx % hw;
    let kk = (idx / hw) % k;
    let n = idx / (hw * k);
    let ox = pix % p.ow;
    let oy = pix / p.ow;
    let fx = kk % p.fw;
    let fy = (kk / p.fw) % p.fh;
    let c = kk / (p.fw * p.fh);
    let iy = i32(oy * p.stride + fy * p.dil) - i32(p.pad);
    let ix = i32(ox * p.stride + fx * p.dil) - i32(p.pad);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
        v = x[((n * p.c + c) * p.h + u32(iy)) * p.w + u32(ix)];
    }
    cols[idx] = v;
}

@compute @workgroup_size(256)
fn col2im(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    if (idx >= p.n * p.c * p.h * p.w) {
        return;
    }
    let ix = idx % p.w;
    let iy = (idx / p.w) % p.h;
    let c = (idx / (p.w * p.h)) % p.c;
    let n = idx / (p.w * p.h * p.c);
    let hw = p.oh * p.ow;
    let k = p.c * p.fh * p.fw;
    var acc = 0.0;
    for (var fy = 0u; fy < p.fh; fy = fy + 1u) {
        // oy * stride = iy + pad - fy * dil must be a non-negative multiple of the stride.
        let ty = i32(iy + p.pad) - i32(fy * p.dil);
        if (ty < 0 || ty % i32(p.stride) != 0) {
            continue;
        }
        let oy = u32(ty) / p.stride;
        if (oy >= p.oh) {
            continue;
        }
        for (var fx = 0u; fx < p.fw; fx = fx + 1u) {
            let tx = i32(ix + p.pad) - i32(fx * p.dil);
            if (tx < 0 || tx % i32(p.stride) != 0) {
                continue;
            }
            let ox = u32(tx) / p.stride;
            if (ox >= p.ow) {
                continue;
            }
            let kk = (c * p.fh + fy) * p.fw + fx;
            acc = acc + dcols[(n * k + kk) * hw + oy * p.ow + ox];
        }
    }
    dx[idx] = acc;
}

@compute @workgroup_size(256)
fn bias_channels(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    let hw = p.oh * p.ow;
    if (idx >= p.n * p.f * hw) {
        return;
    }
    y[idx] = y[idx] + bias[(idx / hw) % p.f];
}

@compute @workgroup_size(256)
fn conv2d_direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    let hw = p.oh * p.ow;
    if (idx >= p.n * p.f * hw) {
        return;
    }
    let ox = idx % p.ow;
    let oy = (idx / p.ow) % p.oh;
    let f = (idx / hw) % p.f;
    let n = idx / (hw * p.f);
    var acc = 0.0;
    for (var c = 0u; c < p.c; c = c + 1u) {
        for (var fy = 0u; fy < p.fh; fy = fy + 1u) {
            let iy = i32(oy * p.stride + fy * p.dil) - i32(p.pad);
            if (iy < 0 || iy >= i32(p.h)) {
                continue;
            }
            for (var fx = 0u; fx < p.fw; fx = fx + 1u) {
                let ix = i32(ox * p.stride + fx * p.dil) - i32(p.pad);
                if (ix < 0 || ix >= i32(p.w)) {
                    continue;
                }
                let xv = x[((n * p.c + c) * p.h + u32(iy)) * p.w + u32(ix)];
                acc = acc + xv * weight[((f * p.c + c) * p.fh + fy) * p.fw + fx];
            }
        }
    }
    y[idx] = acc;
}
