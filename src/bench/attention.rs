//! Fused attention against its unfused composition (matmul, softmax, matmul per head through
//! the tape), B = 1 with 4 heads of 64 at T = 128, 512, 1024 and 2048: the forward pass, and
//! forward plus backward of sum(out * w); the peak of live device bytes over the latter; and the
//! largest difference between the two paths' outputs and gradients.

use kiln_device::testing::random_f32;
use kiln_device::{Device, Result, Tensor};
use kiln_graph::{AttentionOptions, Tape};

use super::{graph_err, measure, AttentionFigures, Case, Record, Work};

const HEADS: usize = 4;
const WIDTH: usize = 64;

/// q, k, v (1, T, H, D) and the output's weights w.
fn inputs(d: &Device, t: usize) -> Result<[Tensor; 4]> {
    let shape = [1, t, HEADS, WIDTH];
    let n = t * HEADS * WIDTH;
    let make = |s: u64| d.from_f32(&random_f32(s, n, -1.0, 1.0), &shape);
    Ok([make(1)?, make(2)?, make(3)?, make(4)?])
}

/// One run: the output, and with `backward` the gradients of q, k and v.
fn run(d: &Device, x: &[Tensor; 4], fused: bool, backward: bool) -> Result<Vec<Tensor>> {
    let tape = Tape::recording(d);
    let [q, k, v] = [0, 1, 2].map(|i| tape.input(x[i].clone()));
    let opts = AttentionOptions::new();
    let out = if fused {
        tape.attention(&q, &k, &v, &opts)
    } else {
        tape.attention_unfused(&q, &k, &v, &opts)
    }
    .map_err(graph_err)?;
    let mut keep = vec![out.value().clone()];
    if backward {
        let w = tape.constant(x[3].clone());
        let loss = tape
            .sum(&tape.mul(&out, &w).map_err(graph_err)?)
            .map_err(graph_err)?;
        tape.backward(&loss).map_err(graph_err)?;
        for var in [&q, &k, &v] {
            keep.push(tape.grad(var).ok_or_else(|| graph_err("no gradient"))?);
        }
    }
    Ok(keep)
}

/// Live device bytes at the peak of one run, over those live before it.
fn peak_bytes(d: &Device, f: impl Fn() -> Result<Vec<Tensor>>) -> Result<u64> {
    d.sync()?;
    let before = d.counters().bytes_live;
    d.reset_peak_bytes();
    let keep = f()?;
    d.sync()?;
    let peak = d.counters().peak_bytes;
    drop(keep);
    Ok(peak.saturating_sub(before))
}

/// The largest absolute difference between two runs' tensors.
fn max_diff(d: &Device, a: &[Tensor], b: &[Tensor]) -> Result<f64> {
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (d.to_f32(x)?, d.to_f32(y)?);
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max((p - q).abs() as f64);
        }
    }
    Ok(worst)
}

/// Every attention record: per T, fused and unfused, forward and training (forward + backward).
pub(super) fn records(d: &Device, quick: bool, repeats: usize) -> Result<Vec<Record>> {
    let steps: &[usize] = if quick {
        &[32, 96]
    } else {
        &[128, 512, 1024, 2048]
    };
    let mut out = vec![];
    for &t in steps {
        let x = inputs(d, t)?;
        let fused_run = run(d, &x, true, true)?;
        let diff = max_diff(d, &fused_run, &run(d, &x, false, true)?)?;
        drop(fused_run);
        let forward_flops = 4.0 * (HEADS * t * t * WIDTH) as f64;
        for (fused, variant) in [(true, "fused"), (false, "unfused")] {
            for (backward, kernel, flops) in [
                (false, "attention_forward", forward_flops),
                (true, "attention_training", 3.0 * forward_flops),
            ] {
                let x = &x;
                let case = Case {
                    kernel,
                    variant,
                    shape: format!("B1 T{t} H{HEADS}x{WIDTH}"),
                    work: Work::Flops(flops),
                    run: Box::new(move || run(d, x, fused, backward)),
                };
                let mut record = measure(d, &case, repeats)?;
                record.attention = Some(AttentionFigures {
                    steps: t,
                    peak_bytes: peak_bytes(d, || run(d, x, fused, backward))?,
                    max_abs_diff: diff,
                });
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// The lines under the table: fused against unfused per T, and how peak bytes grow with T.
pub(super) fn summary(records: &[Record]) -> String {
    let mut out = String::new();
    let find = |kernel: &str, variant: &str, shape: &str| {
        records
            .iter()
            .find(|r| r.kernel == kernel && r.variant == variant && r.shape == shape)
    };
    for f in records
        .iter()
        .filter(|r| r.kernel.starts_with("attention_") && r.variant == "fused")
    {
        let (Some(u), Some(fa)) = (find(&f.kernel, "unfused", &f.shape), &f.attention) else {
            continue;
        };
        let ua = u.attention.as_ref().map_or(0, |a| a.peak_bytes);
        out += &format!(
            "{} {}: fused {:.2} ms ({} dispatches, peak {:.1} MB) vs unfused {:.2} ms ({} dispatches, peak {:.1} MB): {:.1}x faster, max |diff| {:.1e}\n",
            f.kernel,
            f.shape,
            f.median_ms,
            f.dispatches,
            fa.peak_bytes as f64 / 1e6,
            u.median_ms,
            u.dispatches,
            ua as f64 / 1e6,
            u.median_ms / f.median_ms,
            fa.max_abs_diff
        );
    }
    out
}
