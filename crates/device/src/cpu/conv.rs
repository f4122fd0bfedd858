//! im2col, col2im and the per-channel bias on the CPU device: row loops over contiguous memory,
//! with no per-element division, on rayon's threads over images and channels. Each gives the
//! bits of its reference in [`reference`](crate::reference) (copies, or sums in its order).

use rayon::prelude::*;

use crate::params::{ConvParams, PoolParams};

/// The input index range an output row reads along one axis: for output position o, input
/// o * stride + tap * dil - pad, or None in the padding.
fn tap(o: usize, t: usize, p: &ConvParams, size: u32) -> Option<usize> {
    let i = (o * p.stride as usize + t * p.dil as usize) as i64 - p.pad as i64;
    (0..size as i64).contains(&i).then_some(i as usize)
}

/// The output positions `lo..hi` (of `len`) whose input `o * stride + t * dil - pad` lies in
/// `0..size`, and that input's offset `t * dil - pad` (so input = o * stride + offset there).
fn span(t: usize, p: &ConvParams, size: u32, len: usize) -> (usize, usize, i64) {
    let (stride, offset) = (p.stride as i64, (t * p.dil as usize) as i64 - p.pad as i64);
    // o * stride + offset >= 0  <=>  o >= ceil(-offset / stride).
    let lo = if offset >= 0 {
        0
    } else {
        (-offset + stride - 1) / stride
    };
    // o * stride + offset <= size - 1  <=>  o <= floor((size - 1 - offset) / stride).
    let top = size as i64 - 1 - offset;
    let hi = if top < 0 { 0 } else { top / stride + 1 };
    let (lo, hi) = (lo.min(len as i64) as usize, hi.min(len as i64) as usize);
    (lo, hi.max(lo), offset)
}

/// cols (N, K, OH*OW) from x (N, C, H, W), as [`reference::im2col`](crate::reference::im2col).
pub fn im2col(p: &ConvParams, x: &[f32], cols: &mut [f32]) {
    let (k, hw) = (p.k(), p.out_h() * p.out_w());
    let (fh, fw, ow) = (p.fh as usize, p.fw as usize, p.ow as usize);
    let plane = (p.h * p.w) as usize;
    cols[..p.n as usize * k * hw]
        .par_chunks_mut(hw)
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(row, out)| {
            let (n, kk) = (row / k, row % k);
            let (fx, fy, c) = (kk % fw, (kk / fw) % fh, kk / (fw * fh));
            let src = &x[(n * p.c as usize + c) * plane..][..plane];
            // The columns whose tap lies inside the row; zeros outside (the padding).
            let (lo, hi, offset) = span(fx, p, p.w, ow);
            for (oy, line) in out.chunks_exact_mut(ow).enumerate() {
                match tap(oy, fy, p, p.h) {
                    None => line.fill(0.0),
                    Some(iy) => {
                        let src = &src[iy * p.w as usize..][..p.w as usize];
                        line[..lo].fill(0.0);
                        line[hi..].fill(0.0);
                        let at = |ox: usize| (ox as i64 * p.stride as i64 + offset) as usize;
                        if p.stride == 1 {
                            line[lo..hi].copy_from_slice(&src[at(lo)..at(lo) + hi - lo]);
                        } else {
                            for (ox, v) in line[lo..hi].iter_mut().enumerate() {
                                *v = src[at(lo + ox)];
                            }
                        }
                    }
                }
            }
        });
}

/// dx (N, C, H, W), the adjoint of im2col, as [`reference::col2im`](crate::reference::col2im):
/// each input pixel sums its contributions in the reference's order (fy, then fx, ascending),
/// starting from -0.0 as `Iterator::sum` does, one (image, channel) plane per task.
pub fn col2im(p: &ConvParams, dcols: &[f32], dx: &mut [f32]) {
    let (k, hw) = (p.k(), p.out_h() * p.out_w());
    let (fh, fw, ow, c_n) = (p.fh as usize, p.fw as usize, p.ow as usize, p.c as usize);
    let plane = (p.h * p.w) as usize;
    dx[..p.n as usize * c_n * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .with_min_len(planes_per_task(plane))
        .for_each(|(nc, out)| {
            let (n, c) = (nc / c_n, nc % c_n);
            out.fill(-0.0);
            for fy in 0..fh {
                for fx in 0..fw {
                    let kk = (c * fh + fy) * fw + fx;
                    let src = &dcols[(n * k + kk) * hw..][..hw];
                    let (lo, hi, offset) = span(fx, p, p.w, ow);
                    let at = |ox: usize| (ox as i64 * p.stride as i64 + offset) as usize;
                    for (oy, line) in src.chunks_exact(ow).enumerate() {
                        let Some(iy) = tap(oy, fy, p, p.h) else {
                            continue;
                        };
                        let dst = &mut out[iy * p.w as usize..][..p.w as usize];
                        // Each column adds to its own pixel: the order of every pixel's sum
                        // (fy, fx, oy) is the reference's.
                        if p.stride == 1 {
                            let dst = &mut dst[at(lo)..at(lo) + hi - lo];
                            for (d, v) in dst.iter_mut().zip(&line[lo..hi]) {
                                *d += v;
                            }
                        } else {
                            for (ox, v) in line[lo..hi].iter().enumerate() {
                                dst[at(lo + ox)] += v;
                            }
                        }
                    }
                }
            }
        });
}

/// `y[n, f, :]` += `bias[f]` in place, as
/// [`reference::bias_channels`](crate::reference::bias_channels).
pub fn bias_channels(p: &ConvParams, bias: &[f32], y: &mut [f32]) {
    let (hw, f) = (p.out_h() * p.out_w(), p.f as usize);
    y.par_chunks_mut(hw)
        .enumerate()
        .with_min_len(planes_per_task(hw))
        .for_each(|(nf, plane)| {
            let b = bias[nf % f];
            for v in plane {
                *v += b;
            }
        });
}

/// Planes of `plane` outputs per rayon task: enough that a task outweighs its scheduling (a
/// LeNet pooling has 2,048 planes of 169 outputs).
fn planes_per_task(plane: usize) -> usize {
    (1 << 12) / plane.max(1) + 1
}

/// Window maxima and the flat input index of each window's first maximum, as
/// [`reference::max_pool2d_forward`](crate::reference::max_pool2d_forward) (the same comparison,
/// so the same picks), one (image, channel) plane per task.
pub fn max_pool2d_forward(p: &PoolParams, x: &[f32], y: &mut [f32], arg: &mut [u32]) {
    let (oh, ow, w) = (p.oh as usize, p.ow as usize, p.w as usize);
    let (kh, kw, stride) = (p.kh as usize, p.kw as usize, p.stride as usize);
    let (plane_in, plane_out) = ((p.h * p.w) as usize, oh * ow);
    y[..p.out_len()]
        .par_chunks_mut(plane_out)
        .zip(arg[..p.out_len()].par_chunks_mut(plane_out))
        .enumerate()
        .with_min_len(planes_per_task(plane_out))
        .for_each(|(nc, (y, arg))| {
            let base = nc * plane_in;
            let plane = &x[base..base + plane_in];
            if (kh, kw, stride) == (2, 2, 2) {
                return max_pool_2x2(plane, w, base, y, arg);
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    let corner = oy * stride * w + ox * stride;
                    // The best value rides in a register beside its index (no reload per tap).
                    let (mut best, mut value) = (corner, plane[corner]);
                    for ky in 0..kh {
                        let row = corner + ky * w;
                        for (kx, &v) in plane[row..row + kw].iter().enumerate() {
                            // The reference's test: a later element wins unless <= the best.
                            #[allow(clippy::neg_cmp_op_on_partial_ord)]
                            if !(v <= value) {
                                best = row + kx;
                                value = v;
                            }
                        }
                    }
                    y[oy * ow + ox] = value;
                    arg[oy * ow + ox] = (base + best) as u32;
                }
            }
        });
}

/// One plane of [`max_pool2d_forward`] with 2x2 windows at stride 2 (LeNet's and most CNNs'):
/// the same comparisons in the same order, as selects over a row of windows, so the loop has
/// no branch to mispredict (one in two did with random data) and vectorizes.
fn max_pool_2x2(plane: &[f32], w: usize, base: usize, y: &mut [f32], arg: &mut [u32]) {
    let ow = (w - 2) / 2 + 1;
    for (oy, (y, arg)) in y
        .chunks_exact_mut(ow)
        .zip(arg.chunks_exact_mut(ow))
        .enumerate()
    {
        let top = 2 * oy * w;
        let (r0, r1) = (&plane[top..top + 2 * ow], &plane[top + w..top + w + 2 * ow]);
        let windows = r0.chunks_exact(2).zip(r1.chunks_exact(2));
        for (ox, ((a, b), (v, i))) in windows.zip(y.iter_mut().zip(arg.iter_mut())).enumerate() {
            // Taps in the reference's order, each winning unless <= the best so far.
            let at = (base + top + 2 * ox) as u32;
            let (mut value, mut best) = (a[0], at);
            for (tap, offset) in [(a[1], 1), (b[0], w as u32), (b[1], w as u32 + 1)] {
                #[allow(clippy::neg_cmp_op_on_partial_ord)]
                let wins = !(tap <= value);
                value = if wins { tap } else { value };
                best = if wins { at + offset } else { best };
            }
            (*v, *i) = (value, best);
        }
    }
}

/// `dx[i]` = the sum of dy over the windows whose pick is i, as
/// [`reference::pool2d_route_backward`](crate::reference::pool2d_route_backward), one (image,
/// channel) plane per task. Picks always lie in their window's plane; should one not, the whole
/// call is done again by the reference (which zeroes dx first). Every element of dx is written.
pub fn pool2d_route_backward(p: &PoolParams, dy: &[f32], arg: &[u32], dx: &mut [f32]) {
    let (plane_in, plane_out) = ((p.h * p.w) as usize, (p.oh * p.ow) as usize);
    let stray = std::sync::atomic::AtomicBool::new(false);
    dx.par_chunks_mut(plane_in)
        .enumerate()
        .with_min_len(planes_per_task(plane_out))
        .for_each(|(nc, dx)| {
            dx.fill(0.0);
            for o in nc * plane_out..(nc + 1) * plane_out {
                let a = arg[o];
                match dx.get_mut((a as usize).wrapping_sub(nc * plane_in)) {
                    Some(v) => *v += dy[o],
                    None if a != u32::MAX => {
                        stray.store(true, std::sync::atomic::Ordering::Relaxed)
                    }
                    None => {}
                }
            }
        });
    if stray.into_inner() {
        crate::reference::pool2d_route_backward(p, dy, arg, dx);
    }
}
