//! CPU reference of the convolution and pooling kernels (shaders/conv.wgsl, shaders/pool.wgsl).
//! Same arguments, same order, same index arithmetic as the launchers and kernels.

use crate::params::{ConvParams, PoolParams};
use crate::reference::threefry2x32;

/// Input pixel read by column entry (n, kk, pix), or None in the zero padding.
fn source(p: &ConvParams, n: usize, kk: usize, pix: usize) -> Option<usize> {
    let (fh, fw, ow) = (p.fh as usize, p.fw as usize, p.ow as usize);
    let (fx, fy, c) = (kk % fw, (kk / fw) % fh, kk / (fw * fh));
    let (ox, oy) = (pix % ow, pix / ow);
    let iy = (oy * p.stride as usize + fy * p.dil as usize) as i64 - p.pad as i64;
    let ix = (ox * p.stride as usize + fx * p.dil as usize) as i64 - p.pad as i64;
    if iy < 0 || ix < 0 || iy >= p.h as i64 || ix >= p.w as i64 {
        return None;
    }
    Some(((n * p.c as usize + c) * p.h as usize + iy as usize) * p.w as usize + ix as usize)
}

/// cols (N, K, OH*OW) from x (N, C, H, W).
pub fn im2col(p: &ConvParams, x: &[f32], cols: &mut [f32]) {
    let (k, hw) = (p.k(), p.out_h() * p.out_w());
    for n in 0..p.n as usize {
        for kk in 0..k {
            for pix in 0..hw {
                cols[(n * k + kk) * hw + pix] = source(p, n, kk, pix).map_or(0.0, |i| x[i]);
            }
        }
    }
}

/// dx (N, C, H, W) = the adjoint of im2col applied to dcols, summed per pixel in (fy, fx) order.
pub fn col2im(p: &ConvParams, dcols: &[f32], dx: &mut [f32]) {
    let (k, hw) = (p.k(), p.out_h() * p.out_w());
    dx.iter_mut().for_each(|v| *v = 0.0);
    // Visit in the kernel's order: for each input pixel, fy then fx ascending.
    let mut contributions: Vec<Vec<(usize, usize)>> = vec![vec![]; dx.len()];
    for n in 0..p.n as usize {
        for kk in 0..k {
            for pix in 0..hw {
                if let Some(i) = source(p, n, kk, pix) {
                    contributions[i].push((kk, (n * k + kk) * hw + pix));
                }
            }
        }
    }
    for (i, list) in contributions.iter_mut().enumerate() {
        list.sort();
        dx[i] = list.iter().map(|&(_, j)| dcols[j]).sum();
    }
}

/// `y[n, f, :]` += `bias[f]`, in place.
pub fn bias_channels(p: &ConvParams, bias: &[f32], y: &mut [f32]) {
    let hw = p.out_h() * p.out_w();
    for (i, v) in y.iter_mut().enumerate() {
        *v += bias[(i / hw) % p.f as usize];
    }
}

/// y (N, F, OH, OW) by the direct sum over channels and the filter window.
pub fn conv2d_direct(p: &ConvParams, x: &[f32], weight: &[f32], y: &mut [f32]) {
    let (k, hw) = (p.k(), p.out_h() * p.out_w());
    for n in 0..p.n as usize {
        for f in 0..p.f as usize {
            for pix in 0..hw {
                let mut acc = 0.0f32;
                for kk in 0..k {
                    if let Some(i) = source(p, n, kk, pix) {
                        acc += x[i] * weight[f * k + kk];
                    }
                }
                y[(n * p.f as usize + f) * hw + pix] = acc;
            }
        }
    }
}

fn window(p: &PoolParams, o: usize) -> impl Iterator<Item = usize> + '_ {
    let (ow, oh) = (p.ow as usize, p.oh as usize);
    let (ox, oy, nc) = (o % ow, (o / ow) % oh, o / (ow * oh));
    let base = (nc * p.h as usize + oy * p.stride as usize) * p.w as usize + ox * p.stride as usize;
    (0..p.kh as usize)
        .flat_map(move |ky| (0..p.kw as usize).map(move |kx| base + ky * p.w as usize + kx))
}

/// y = window maxima, arg = flat input index of the first maximum.
pub fn max_pool2d_forward(p: &PoolParams, x: &[f32], y: &mut [f32], arg: &mut [u32]) {
    for o in 0..p.out_len() {
        let best = window(p, o).fold(None, |b: Option<usize>, i| match b {
            Some(b) if x[i] <= x[b] => Some(b),
            _ => Some(i),
        });
        let best = best.expect("windows are non-empty");
        y[o] = x[best];
        arg[o] = best as u32;
    }
}

/// Average pooling: each window's mean.
pub fn avg_pool2d_forward(p: &PoolParams, x: &[f32], y: &mut [f32]) {
    for o in 0..p.out_len() {
        y[o] = window(p, o).map(|i| x[i]).sum::<f32>() / (p.kh * p.kw) as f32;
    }
}

/// One activation per window, picked with probability proportional to its value.
pub fn stochastic_pool2d_forward(p: &PoolParams, x: &[f32], y: &mut [f32], arg: &mut [u32]) {
    for o in 0..p.out_len() {
        let total: f32 = window(p, o).map(|i| x[i].max(0.0)).sum();
        let bits = threefry2x32([p.offset.wrapping_add(o as u32), 0], [p.seed_lo, p.seed_hi])[0];
        let goal = (bits >> 8) as f32 * (1.0 / 16_777_216.0) * total;
        let mut run = 0.0f32;
        let mut pick = None;
        for i in window(p, o) {
            let a = x[i].max(0.0);
            run += a;
            if pick.is_none() && a > 0.0 && goal < run {
                pick = Some(i);
            }
        }
        y[o] = pick.map_or(0.0, |i| x[i]);
        arg[o] = pick.map_or(u32::MAX, |i| i as u32);
    }
}

/// Inference: sum(a^2) / sum(a) per window (0 for an all-zero window).
pub fn stochastic_pool2d_eval(p: &PoolParams, x: &[f32], y: &mut [f32]) {
    for o in 0..p.out_len() {
        let (s, q) = window(p, o)
            .map(|i| x[i].max(0.0))
            .fold((0.0f32, 0.0f32), |(s, q), a| (s + a, q + a * a));
        y[o] = if s > 0.0 { q / s } else { 0.0 };
    }
}

/// `dx[i]` = sum of dy over windows whose recorded pick is i (max and stochastic pooling).
pub fn pool2d_route_backward(p: &PoolParams, dy: &[f32], arg: &[u32], dx: &mut [f32]) {
    dx.iter_mut().for_each(|v| *v = 0.0);
    for o in 0..p.out_len() {
        if let Some(v) = dx.get_mut(arg[o] as usize) {
            *v += dy[o];
        }
    }
}

/// `dx[i]` = sum of dy / (kh * kw) over windows covering i.
pub fn avg_pool2d_backward(p: &PoolParams, dy: &[f32], dx: &mut [f32]) {
    dx.iter_mut().for_each(|v| *v = 0.0);
    let area = (p.kh * p.kw) as f32;
    for o in 0..p.out_len() {
        for i in window(p, o) {
            dx[i] += dy[o] / area;
        }
    }
}

/// Inference-time stochastic pooling, y = Q / S per window: `dx[i]` += dy * (2 a_i S - Q) / S^2 over
/// the windows covering i, with a = max(x, 0) (0 where a_i = 0 or S = 0).
pub fn stochastic_pool2d_eval_backward(p: &PoolParams, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.iter_mut().for_each(|v| *v = 0.0);
    for o in 0..p.out_len() {
        let (s, q) = window(p, o)
            .map(|i| x[i].max(0.0))
            .fold((0.0f32, 0.0f32), |(s, q), a| (s + a, q + a * a));
        for i in window(p, o) {
            let a = x[i].max(0.0);
            if a > 0.0 && s > 0.0 {
                dx[i] += dy[o] * (2.0 * a * s - q) / (s * s);
            }
        }
    }
}
