//! The benchmark harness: kernel variants side by side on one device, in one run, so that ratios
//! are meaningful even on a slow software adapter. `kiln bench` and `cargo bench` both call [`run`].
//!
//! Each case is warmed up (pipelines compiled, buffers cached), then timed `repeats` times; the
//! median is reported. Time comes from GPU timestamp queries where the adapter has
//! TIMESTAMP_QUERY (summed pass times), from the wall clock around record + submit + wait otherwise.

mod attention;

use std::time::Instant;

use kiln_device::testing::{random_f32, random_u32};
use kiln_device::*;
use serde::Serialize;

/// One measured case, as written to `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// The kernel family (matmul, elementwise, ...).
    pub kernel: String,
    /// The variant timed (naive, tiled, fused, ...).
    pub variant: String,
    /// The operands' shapes.
    pub shape: String,
    /// Median time of one run, in milliseconds.
    pub median_ms: f64,
    /// Compute-bound cases: billions of floating-point operations per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// Memory-bound cases: gigabytes moved per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Training cases: samples (images) per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_per_sec: Option<f64>,
    /// Dispatches per run.
    pub dispatches: u64,
    /// Training cases: queue submits per step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submits_per_step: Option<f64>,
    /// "gpu-timestamp" or "wall-clock".
    pub timing: &'static str,
    /// The device it ran on.
    pub adapter: String,
    /// Long-run cases: memory early and late in the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Attention cases: sequence length, peak bytes, agreement with the other path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionFigures>,
    /// Data-parallel cases: the replicas and what they all-reduce.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replication>,
}

/// What a data-parallel case moves besides its steps.
#[derive(Clone, Debug, Serialize)]
pub struct Replication {
    /// Replicas (devices), the first included.
    pub replicas: usize,
    /// Gradient bytes summed over the replicas each step (each replica reads them back and
    /// takes the sum up: 2 x replicas x this over the host link).
    pub gradient_bytes: u64,
}

/// What an attention case measures besides time.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionFigures {
    /// T (queries and keys).
    pub steps: usize,
    /// Peak live device bytes over one run, above those live before it.
    pub peak_bytes: u64,
    /// The largest |fused - unfused| over the output and the gradients of q, k and v.
    pub max_abs_diff: f64,
}

/// Memory at two points of a long training run: flat means no leak.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    /// The steps measured at (e.g. 100 and 2,000).
    pub steps: [u64; 2],
    /// The process's resident set (Linux's VmRSS), when the platform reports it.
    pub rss_bytes: [Option<u64>; 2],
    /// Bytes of live device buffers (the caching allocator's size classes).
    pub device_bytes_live: [u64; 2],
    /// Live device buffers.
    pub device_buffers_live: [u64; 2],
}

/// The process's resident set size, where /proc reports it.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Records memory after two given steps, from `fit`'s batch-end callback.
struct MemoryProbe<'a> {
    device: &'a Device,
    at: [u64; 2],
    seen: Vec<(Option<u64>, u64, u64)>,
}

impl kiln_train::Callback for MemoryProbe<'_> {
    fn on_batch_end(
        &mut self,
        _state: &kiln_train::FitState,
        end: &kiln_train::BatchEnd,
    ) -> kiln_train::Result<()> {
        if self.at.contains(&end.step) {
            self.device.sync()?;
            let c = self.device.counters();
            self.seen.push((rss_bytes(), c.bytes_live, c.buffers_live));
        }
        Ok(())
    }
}

/// The seed's model trained by `fit` (shuffles, batches, metrics, epoch ends: the loop a user
/// runs) for `late` steps on random ids; memory at step `early` and step `late`.
fn training_memory(d: &Device, quick: bool) -> Result<Record> {
    let (batch, t, units, per_epoch, early, late) = if quick {
        (4, 6, (8, 4), 10, 10, 100)
    } else {
        (16, 62, (64, 32), 100, 100, 2000)
    };
    let case = qqp_case(d, batch, t, units, kiln_graph::LstmPath::Fused, false)?;
    let n = batch * per_epoch;
    let vocab = 10_000;
    let data = kiln_train::Dataset::single(
        kiln_train::Column::ids(random_u32(23, n * t, vocab), &[t]),
        kiln_train::Column::f32((0..n).map(|i| (i % 2) as f32).collect(), &[1]),
    );
    let config = kiln_train::TrainConfig::new(kiln_graph::LossKind::BinaryCrossentropy)
        .epochs((late as usize).div_ceil(per_epoch))
        .batch(batch);
    let mut probe = MemoryProbe {
        device: d,
        at: [early, late],
        seen: vec![],
    };
    let start = Instant::now();
    kiln_train::Fit::new(config)
        .callback(&mut probe)
        .run(&*case.model, &case.params, &data, None)
        .map_err(|e| graph_err(e.to_string()))?;
    let ms = start.elapsed().as_secs_f64() * 1e3 / late as f64;
    let [(rss_a, live_a, bufs_a), (rss_b, live_b, bufs_b)] = probe.seen[..] else {
        unreachable!("the run reaches both steps")
    };
    Ok(Record {
        kernel: "training_memory".into(),
        variant: "fit".into(),
        shape: format!(
            "B{batch} T{t} H{}/{}, steps {early} and {late}",
            units.0, units.1
        ),
        median_ms: ms,
        gflops: None,
        gbps: None,
        samples_per_sec: Some(batch as f64 / ms * 1e3),
        dispatches: 0,
        submits_per_step: None,
        timing: "wall-clock",
        adapter: d.name(),
        memory: Some(Memory {
            steps: [early, late],
            rss_bytes: [rss_a, rss_b],
            device_bytes_live: [live_a, live_b],
            device_buffers_live: [bufs_a, bufs_b],
        }),
        attention: None,
        replicas: None,
    })
}

/// What `kiln bench` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only kernels whose name contains this.
    pub filter: Option<String>,
    /// Timed runs per case after one warm-up; the median is reported.
    pub repeats: usize,
    /// Small shapes, for a smoke run (CI, tests).
    pub quick: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            filter: None,
            repeats: 5,
            quick: false,
        }
    }
}

enum Work {
    Flops(f64),
    Bytes(f64),
}

struct Case<'a> {
    kernel: &'static str,
    variant: &'static str,
    shape: String,
    work: Work,
    /// Records one run's work; returns what must stay alive until it has run.
    run: Box<dyn Fn() -> Result<Vec<Tensor>> + 'a>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn measure(device: &Device, case: &Case, repeats: usize) -> Result<Record> {
    drop((case.run)()?); // warm-up: compile pipelines, fill the allocator's cache
    device.sync()?;
    let before = device.counters().dispatches;
    let mut times = Vec::with_capacity(repeats);
    let mut timing = "wall-clock";
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let (keep, gpu_ms) = device.gpu_time(|| (case.run)())?;
        device.sync()?;
        let wall = start.elapsed().as_secs_f64() * 1e3;
        drop(keep);
        match gpu_ms {
            Some(ms) if ms > 0.0 => {
                timing = "gpu-timestamp";
                times.push(ms);
            }
            _ => times.push(wall),
        }
    }
    let dispatches = (device.counters().dispatches - before) / repeats.max(1) as u64;
    let median_ms = median(times);
    let secs = median_ms / 1e3;
    let (gflops, gbps) = match case.work {
        Work::Flops(f) => (Some(f / secs / 1e9), None),
        Work::Bytes(b) => (None, Some(b / secs / 1e9)),
    };
    Ok(Record {
        kernel: case.kernel.to_string(),
        variant: case.variant.to_string(),
        shape: case.shape.clone(),
        median_ms,
        gflops,
        gbps,
        samples_per_sec: None,
        dispatches,
        submits_per_step: None,
        timing,
        adapter: device.name(),
        memory: None,
        attention: None,
        replicas: None,
    })
}

fn matmul_cases<'a>(d: &'a Device, quick: bool) -> Result<Vec<Case<'a>>> {
    let shapes: &[(usize, usize, usize)] = if quick {
        &[(128, 128, 128), (61, 67, 71)]
    } else {
        // The headline size and twice it (the naive kernel only up to 1024^3: 2048^3
        // takes it half a minute); an LSTM input projection (B*T = 16*62 rows, E = 100,
        // 4H = 256); a square size past the tile.
        &[
            (1024, 1024, 1024),
            (2048, 2048, 2048),
            (992, 256, 100),
            (257, 257, 257),
        ]
    };
    let mut cases = vec![];
    for &(m, n, k) in shapes {
        let a = d.from_f32(&random_f32(1, m * k, -1.0, 1.0), &[m, k])?;
        let b = d.from_f32(&random_f32(2, k * n, -1.0, 1.0), &[k, n])?;
        for (variant, name) in [
            (MatmulVariant::Naive, "naive"),
            (MatmulVariant::Tiled, "tuned"),
        ] {
            if variant == MatmulVariant::Naive && m * n * k > 1 << 30 {
                continue;
            }
            let (a, b) = (a.clone(), b.clone());
            cases.push(Case {
                kernel: "matmul",
                variant: name,
                shape: format!("{m}x{n}x{k}"),
                work: Work::Flops(2.0 * (m * n * k) as f64),
                run: Box::new(move || {
                    let spec = MatmulSpec {
                        variant,
                        ..Default::default()
                    };
                    Ok(vec![d.matmul(&a, &b, None, spec)?])
                }),
            });
        }
    }
    Ok(cases)
}

/// The memory-bound kernels: elementwise, reductions, softmax, then embeddings, dropout and the
/// fused optimizer.
fn memory_cases<'a>(d: &'a Device, quick: bool) -> Result<Vec<Case<'a>>> {
    let mut cases = elementwise_cases(d, quick)?;
    cases.extend(table_cases(d, quick)?);
    Ok(cases)
}

/// (n, x, y): the elementwise cases' operands, the same seeded values in every group.
fn vectors(d: &Device, quick: bool) -> Result<(usize, Tensor, Tensor)> {
    let n = if quick { 1 << 16 } else { 1 << 22 };
    let x = d.from_f32(&random_f32(3, n, -1.0, 1.0), &[n])?;
    let y = d.from_f32(&random_f32(4, n, -1.0, 1.0), &[n])?;
    Ok((n, x, y))
}

/// Bytes per f32.
const F32_BYTES: f64 = 4.0;

fn elementwise_cases<'a>(d: &'a Device, quick: bool) -> Result<Vec<Case<'a>>> {
    let (n, x, y) = vectors(d, quick)?;
    let (rows, cols) = if quick { (64, 1000) } else { (4096, 1000) };
    let m = d.from_f32(&random_f32(5, rows * cols, -5.0, 5.0), &[rows, cols])?;
    let f = F32_BYTES;
    let nf = n as f64;
    let mf = (rows * cols) as f64;
    Ok(vec![
        Case {
            kernel: "elementwise",
            variant: "add",
            shape: format!("{n}"),
            work: Work::Bytes(3.0 * nf * f),
            run: Box::new({
                let (x, y) = (x.clone(), y.clone());
                move || Ok(vec![d.add(&x, &y)?])
            }),
        },
        Case {
            kernel: "elementwise",
            variant: "tanh",
            shape: format!("{n}"),
            work: Work::Bytes(2.0 * nf * f),
            run: Box::new({
                let x = x.clone();
                move || Ok(vec![d.unary(UnaryOp::Tanh, &x)?])
            }),
        },
        Case {
            kernel: "reduce",
            variant: "sum",
            shape: format!("{rows}x{cols} axis 1"),
            work: Work::Bytes(mf * f),
            run: Box::new({
                let m = m.clone();
                move || Ok(vec![d.reduce(ReduceOp::Sum, &m, 1)?])
            }),
        },
        Case {
            kernel: "softmax",
            variant: "rows",
            shape: format!("{rows}x{cols}"),
            work: Work::Bytes(2.0 * mf * f),
            run: Box::new({
                let m = m.clone();
                move || Ok(vec![d.softmax(&m)?])
            }),
        },
    ])
}

fn table_cases<'a>(d: &'a Device, quick: bool) -> Result<Vec<Case<'a>>> {
    let (n, x, y) = vectors(d, quick)?;
    let (vocab, dim, ids_n) = if quick {
        (1000, 32, 256)
    } else {
        (20_000, 128, 992)
    };
    let table = d.from_f32(&random_f32(6, vocab * dim, -0.05, 0.05), &[vocab, dim])?;
    let ids = d.from_u32(&random_u32(7, ids_n, vocab as u32), &[ids_n])?;
    let dout = d.from_f32(&random_f32(8, ids_n * dim, -1.0, 1.0), &[ids_n, dim])?;
    let dtable = d.zeros(&[vocab, dim])?;
    let (w, g, m1, v1) = (d.zeros(&[n])?, y, d.zeros(&[n])?, d.zeros(&[n])?);
    let f = F32_BYTES;
    let nf = n as f64;
    let ef = (ids_n * dim) as f64;
    let cases: Vec<Case<'a>> = vec![
        Case {
            kernel: "embedding",
            variant: "forward",
            shape: format!("V={vocab} E={dim} N={ids_n}"),
            work: Work::Bytes(2.0 * ef * f),
            run: Box::new({
                let (table, ids) = (table.clone(), ids.clone());
                move || Ok(vec![d.embedding(&table, &ids)?])
            }),
        },
        Case {
            kernel: "embedding",
            variant: "backward",
            shape: format!("V={vocab} E={dim} N={ids_n}"),
            work: Work::Bytes(2.0 * ef * f),
            run: Box::new({
                let (dtable, dout, ids) = (dtable.clone(), dout.clone(), ids.clone());
                move || {
                    d.embedding_backward(&dtable, &dout, &ids)?;
                    Ok(vec![])
                }
            }),
        },
        Case {
            kernel: "dropout",
            variant: "forward",
            shape: format!("{n}"),
            work: Work::Bytes(3.0 * nf * f),
            run: Box::new({
                let x = x.clone();
                move || {
                    let (o, mk) = d.dropout(&x, 0.2, 2019, 0)?;
                    Ok(vec![o, mk])
                }
            }),
        },
        Case {
            kernel: "optim",
            variant: "adam_fused",
            shape: format!("{n} params"),
            work: Work::Bytes(7.0 * nf * f),
            run: Box::new(move || {
                d.adam_update(&AdamConfig::default(), 1, &w, &g, &m1, &v1)?;
                Ok(vec![])
            }),
        },
    ];
    Ok(cases)
}

fn conv_cases<'a>(d: &'a Device, quick: bool) -> Result<Vec<Case<'a>>> {
    // (N, C, H, W, F): MNIST's two convolutions at batch 64, and a larger layer.
    let shapes: &[(usize, usize, usize, usize, usize)] = if quick {
        &[(4, 1, 28, 28, 8), (4, 8, 13, 13, 16)]
    } else {
        &[
            (64, 1, 28, 28, 32),
            (64, 32, 13, 13, 64),
            (32, 64, 32, 32, 128),
        ]
    };
    let mut cases = vec![];
    for &(n, c, h, w, f) in shapes {
        let spec = Conv2dSpec::default();
        let x = d.from_f32(&random_f32(9, n * c * h * w, -1.0, 1.0), &[n, c, h, w])?;
        let wt = d.from_f32(&random_f32(10, f * c * 9, -1.0, 1.0), &[f, c, 3, 3])?;
        let p = kiln_device::params::ConvParams::new(x.shape(), wt.shape(), &spec)
            .map_err(|what| Error::InvalidArgument { op: "bench", what })?;
        let dy = d.from_f32(
            &random_f32(11, p.out_shape().iter().product(), -1.0, 1.0),
            &p.out_shape(),
        )?;
        let shape = format!("{n}x{c}x{h}x{w} -> {f}, 3x3");
        for (variant, name) in [
            (ConvVariant::Im2col, "im2col"),
            (ConvVariant::Direct, "direct"),
        ] {
            let (x, wt) = (x.clone(), wt.clone());
            cases.push(Case {
                kernel: "conv2d_forward",
                variant: name,
                shape: shape.clone(),
                work: Work::Flops(p.flops()),
                run: Box::new(move || Ok(vec![d.conv2d(&x, &wt, None, &spec, variant)?])),
            });
        }
        let (x, wt, dy) = (x.clone(), wt.clone(), dy.clone());
        cases.push(Case {
            kernel: "conv2d_backward",
            variant: "im2col",
            shape,
            work: Work::Flops(2.0 * p.flops()),
            run: Box::new(move || {
                let g = d.conv2d_backward(&x, &wt, &dy, &spec, true, true)?;
                Ok(vec![g.dx.unwrap(), g.dweight])
            }),
        });
    }
    let (n, c, h, w) = if quick {
        (4, 8, 26, 26)
    } else {
        (64, 32, 26, 26)
    };
    let x = d.from_f32(&random_f32(12, n * c * h * w, 0.0, 1.0), &[n, c, h, w])?;
    let bytes = (n * c * h * w) as f64 * 4.0 * 1.25; // read x, write a quarter
    for (mode, name) in [
        (PoolMode::Max, "max"),
        (PoolMode::Avg, "avg"),
        (PoolMode::Stochastic, "stochastic"),
    ] {
        let mut spec = PoolSpec::new(mode, 2, 2);
        spec.training = true;
        let x1 = x.clone();
        cases.push(Case {
            kernel: "pool2d_forward",
            variant: name,
            shape: format!("{n}x{c}x{h}x{w}, 2x2"),
            work: Work::Bytes(bytes),
            run: Box::new(move || Ok(vec![d.pool2d(&x1, &spec)?.y])),
        });
        let x2 = x.clone();
        cases.push(Case {
            kernel: "pool2d_backward",
            variant: name,
            shape: format!("{n}x{c}x{h}x{w}, 2x2"),
            work: Work::Bytes(bytes),
            run: Box::new(move || {
                let pooled = d.pool2d(&x2, &spec)?;
                let dy = d.full(pooled.y.shape(), 1.0)?;
                Ok(vec![d.pool2d_backward(&x2, &dy, &pooled, &spec)?])
            }),
        });
    }
    Ok(cases)
}

fn graph_err(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        op: "bench",
        what: e.to_string(),
    }
}

/// One model's training step (forward, backward, Adam), timed by the wall clock over `steps`
/// steps per repeat (a step submits once, so GPU timestamps would miss the host's share).
struct TrainingCase<'a> {
    kernel: &'static str,
    variant: String,
    shape: String,
    model: Box<dyn kiln_graph::Model + 'a>,
    params: kiln_graph::ParamStore,
    batch_data: kiln_graph::Batch,
    loss: kiln_graph::LossKind,
    batch: usize,
    /// How its LSTM layers run (set on the device while the case runs).
    lstm: kiln_graph::LstmPath,
}

fn training_step(d: &Device, case: TrainingCase, steps: usize, repeats: usize) -> Result<Record> {
    replicated_step(d, &[], case, steps, repeats)
}

/// [`training_step`] with data-parallel replicas on `others` besides `d`.
fn replicated_step(
    d: &Device,
    others: &[Device],
    case: TrainingCase,
    steps: usize,
    repeats: usize,
) -> Result<Record> {
    let before = d.lstm_path();
    for device in std::iter::once(d).chain(others) {
        device.set_lstm_path(case.lstm);
    }
    let record = time_training_step(d, others, case, steps, repeats);
    d.set_lstm_path(before);
    record
}

fn time_training_step(
    d: &Device,
    others: &[Device],
    case: TrainingCase,
    steps: usize,
    repeats: usize,
) -> Result<Record> {
    use kiln_graph::{train_step, Optimizer, OptimizerConfig, Replicas};
    let params = &case.params;
    let mut opt = Optimizer::new(OptimizerConfig::adam(), params).map_err(graph_err)?;
    let model = &*case.model;
    let mut replicas = match others {
        [] => None,
        _ => Some(Replicas::new(params, &opt, others).map_err(graph_err)?),
    };
    // The same step `fit` takes (kiln_graph::train_step, or Replicas::step with replicas),
    // without fit's metric accumulation.
    let mut step = || -> Result<()> {
        match replicas.as_mut() {
            Some(r) => r.step(model, (params, &mut opt), &case.loss, &case.batch_data, 0),
            None => train_step(model, params, &mut opt, &case.loss, &case.batch_data, 0),
        }
        .map_err(graph_err)?;
        Ok(())
    };
    step()?;
    d.sync()?;
    let mut times = vec![];
    let before = d.counters();
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        d.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3 / steps as f64);
    }
    let spent = d.counters().since(&before);
    let n_steps = (repeats.max(1) * steps) as u64;
    let ms = median(times);
    Ok(Record {
        kernel: case.kernel.into(),
        variant: case.variant,
        shape: case.shape,
        median_ms: ms,
        gflops: None,
        gbps: None,
        samples_per_sec: Some(case.batch as f64 / ms * 1e3),
        dispatches: spent.dispatches / n_steps,
        submits_per_step: Some(spent.submits as f64 / n_steps as f64),
        timing: "wall-clock",
        adapter: d.name(),
        memory: None,
        attention: None,
        replicas: (case.kernel == "data_parallel_step").then(|| Replication {
            replicas: others.len() + 1,
            gradient_bytes: params.trainable_grads().len() as u64 * 4,
        }),
    })
}

/// Data-parallel training steps (`Replicas`) of LeNet (batch 64) and the seed model (B16 T62)
/// on 1, 2 and 4 devices of `d`'s adapter: the global batch stays the same, split between them.
fn data_parallel(d: &Device, quick: bool, repeats: usize) -> Result<Vec<Record>> {
    let mut records = vec![];
    let counts: &[usize] = if quick { &[2] } else { &[1, 2, 4] };
    for &n in counts {
        let others = (1..n)
            .map(|_| d.open_another())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (batch, t, units) = if quick {
            (4, 6, (8, 4))
        } else {
            (16, 62, (64, 32))
        };
        let seed = qqp_case(d, batch, t, units, kiln_graph::LstmPath::Fused, false)?;
        for (name, mut case) in [("LeNet", lenet_case(d, quick)?), ("seed", seed)] {
            case.kernel = "data_parallel_step";
            case.variant = format!("{n} replicas");
            case.shape = format!("{name} {}", case.shape);
            let steps = if quick { 1 } else { 5 };
            records.push(replicated_step(d, &others, case, steps, repeats)?);
        }
    }
    Ok(records)
}

/// Training steps of the LeNet-style MNIST stack (batch 64, random images): images/s and the
/// device work per step.
fn lenet_training(d: &Device, quick: bool, repeats: usize) -> Result<Record> {
    let steps = if quick { 2 } else { 5 };
    training_step(d, lenet_case(d, quick)?, steps, repeats)
}

/// LeNet (max pooling, Adam) on one batch of random images: 64, or 8 when `quick`.
fn lenet_case(d: &Device, quick: bool) -> Result<TrainingCase<'static>> {
    let batch = if quick { 8 } else { 64 };
    let config = crate::models::lenet(crate::models::Pool::Max, crate::models::Norm::None);
    let b = kiln_graph::ParamBuilder::new(1);
    let model = config.init(&b).map_err(graph_err)?;
    let params = b.build(d).map_err(graph_err)?;
    let x = d.from_f32(&random_f32(13, batch * 784, 0.0, 1.0), &[batch, 1, 28, 28])?;
    let labels: Vec<f32> = (0..batch * 10)
        .map(|i| ((i % 10) == (i / 10) % 10) as u32 as f32)
        .collect();
    let y = d.from_f32(&labels, &[batch, 10])?;
    let case = TrainingCase {
        kernel: "lenet_training_step",
        variant: "adam, max pool".into(),
        shape: format!("batch {batch}"),
        model: Box::new(model),
        params,
        batch_data: kiln_graph::Batch {
            inputs: vec![x],
            target: y,
        },
        loss: kiln_graph::LossKind::CategoricalCrossentropyFromLogits,
        batch,
        lstm: kiln_graph::LstmPath::Fused,
    };
    Ok(case)
}

/// The seed's question-pair model (BiLSTM(units.0, sequences) -> BiLSTM(units.1) -> dense head,
/// or BiGRU layers of the same widths with `gru`) on `steps_t` ids per sample, with a
/// 10,000-word vocabulary, and one batch of random ids.
fn qqp_case(
    d: &Device,
    batch: usize,
    steps_t: usize,
    units: (usize, usize),
    path: kiln_graph::LstmPath,
    gru: bool,
) -> Result<TrainingCase<'static>> {
    use kiln_graph::layers::{BidirectionalConfig, GruConfig, LstmConfig};
    let vocab = 10_000;
    let mut config = crate::models::qqp_seed(vocab, 1);
    config.input = vec![steps_t];
    let recurrent = |u, seq| -> kiln_graph::LayerConfig {
        if gru {
            BidirectionalConfig::new(GruConfig::new(u).return_sequences(seq)).into()
        } else {
            BidirectionalConfig::new(LstmConfig::new(u).return_sequences(seq)).into()
        }
    };
    config.layers[1] = recurrent(units.0, true);
    config.layers[2] = recurrent(units.1, false);
    let b = kiln_graph::ParamBuilder::new(1);
    let model = config.init(&b).map_err(graph_err)?;
    let params = b.build(d).map_err(graph_err)?;
    let ids = random_u32(17, batch * steps_t, vocab as u32);
    let x = d.from_u32(&ids, &[batch, steps_t])?;
    let labels: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
    let y = d.from_f32(&labels, &[batch, 1])?;
    Ok(TrainingCase {
        kernel: if gru {
            "qqp_gru_training_step"
        } else {
            "qqp_training_step"
        },
        variant: format!("{path:?}").to_lowercase(),
        shape: format!("B{batch} T{steps_t} H{}/{}", units.0, units.1),
        model: Box::new(model),
        params,
        batch_data: kiln_graph::Batch {
            inputs: vec![x],
            target: y,
        },
        loss: kiln_graph::LossKind::BinaryCrossentropy,
        batch,
        lstm: path,
    })
}

/// Wall-clock cost of recording `count` small dispatches and submitting them (not waiting for the
/// GPU to run them), per dispatch: the framework's own overhead.
fn dispatch_overhead(d: &Device, count: usize, repeats: usize) -> Result<Record> {
    let x = d.from_f32(&[0.5; 64], &[64])?;
    let run = || -> Result<f64> {
        let start = Instant::now();
        let mut y = x.clone();
        for _ in 0..count {
            y = d.unary(UnaryOp::Tanh, &y)?;
        }
        d.flush()?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        d.sync()?;
        Ok(ms)
    };
    run()?;
    let before = d.counters();
    let times = (0..repeats.max(1))
        .map(|_| run())
        .collect::<Result<Vec<_>>>()?;
    let spent = d.counters().since(&before);
    Ok(Record {
        kernel: "dispatch_overhead".into(),
        variant: "record+submit".into(),
        shape: format!(
            "{count} dispatches, {} submits",
            spent.submits / times.len() as u64
        ),
        median_ms: median(times) / count as f64,
        gflops: None,
        gbps: None,
        samples_per_sec: None,
        dispatches: spent.dispatches / repeats.max(1) as u64,
        submits_per_step: None,
        timing: "wall-clock",
        adapter: d.name(),
        memory: None,
        attention: None,
        replicas: None,
    })
}

/// Runs every case whose kernel matches the filter.
pub fn run(device: &Device, opts: &Options) -> Result<Vec<Record>> {
    let wanted = |k: &str| opts.filter.as_deref().is_none_or(|f| k.contains(f));
    let mut records = vec![];
    let mut cases = matmul_cases(device, opts.quick)?;
    cases.extend(memory_cases(device, opts.quick)?);
    cases.extend(conv_cases(device, opts.quick)?);
    for case in cases.iter().filter(|c| wanted(c.kernel)) {
        records.push(measure(device, case, opts.repeats)?);
    }
    if wanted("lenet_training_step") {
        records.push(lenet_training(device, opts.quick, opts.repeats)?);
    }
    if wanted("qqp_training_step") {
        use kiln_graph::LstmPath::{Fused, Unfused};
        // (batch, T, units, path, steps per repeat)
        type QqpCase = (usize, usize, (usize, usize), kiln_graph::LstmPath, usize);
        let cases: &[QqpCase] = if opts.quick {
            &[(4, 6, (8, 4), Fused, 1), (4, 6, (8, 4), Unfused, 1)]
        } else {
            &[
                (16, 62, (64, 32), Fused, 5),
                (16, 62, (64, 32), Unfused, 1),
                (16, 31, (64, 32), Fused, 5),
                (16, 31, (64, 32), Unfused, 1),
                (256, 62, (64, 32), Fused, 1),
                (256, 62, (64, 32), Unfused, 1),
                (16, 62, (256, 256), Fused, 1),
                (16, 62, (256, 256), Unfused, 1),
            ]
        };
        for &(batch, t, units, path, steps) in cases {
            let case = qqp_case(device, batch, t, units, path, false)?;
            records.push(training_step(device, case, steps, opts.repeats)?);
        }
    }
    if wanted("qqp_gru_training_step") {
        use kiln_graph::LstmPath::{Fused, Unfused};
        // The seed's model with BiGRU layers: fused against unfused, and (with the BiLSTM rows
        // above) against the LSTM at the same widths.
        let (batch, t, units, steps) = if opts.quick {
            (4, 6, (8, 4), 1)
        } else {
            (16, 62, (64, 32), 5)
        };
        for (path, steps) in [(Fused, steps), (Unfused, 1)] {
            let case = qqp_case(device, batch, t, units, path, true)?;
            records.push(training_step(device, case, steps, opts.repeats)?);
        }
    }
    if wanted("data_parallel_step") {
        records.extend(data_parallel(device, opts.quick, opts.repeats)?);
    }
    if wanted("training_memory") {
        records.push(training_memory(device, opts.quick)?);
    }
    if wanted("attention") {
        records.extend(attention::records(device, opts.quick, opts.repeats)?);
    }
    if wanted("dispatch_overhead") {
        records.push(dispatch_overhead(device, 1000, opts.repeats)?);
    }
    Ok(records)
}

/// The table printed on stdout, with tuned/naive ratios under it.
pub fn table(records: &[Record]) -> String {
    let mut out = format!(
        "{:<18} {:<14} {:<24} {:>12} {:>10} {:>9} {:>10}  {}\n",
        "kernel", "variant", "shape", "median ms", "GFLOP/s", "GB/s", "dispatches", "timing"
    );
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for r in records {
        out += &format!(
            "{:<18} {:<14} {:<24} {:>12.4} {:>10} {:>9} {:>10}  {}\n",
            r.kernel,
            r.variant,
            r.shape,
            r.median_ms,
            num(r.gflops),
            num(r.gbps),
            r.dispatches,
            r.timing
        );
    }
    for (fast, slow) in [("tuned", "naive"), ("im2col", "direct")] {
        for r in records.iter().filter(|r| r.variant == fast) {
            let other = records
                .iter()
                .find(|n| n.kernel == r.kernel && n.shape == r.shape && n.variant == slow);
            if let Some(n) = other {
                out += &format!(
                    "{} {}: {fast} is {:.1}x {slow}\n",
                    r.kernel,
                    r.shape,
                    n.median_ms / r.median_ms
                );
            }
        }
    }
    if let Some(r) = records.iter().find(|r| r.kernel == "lenet_training_step") {
        out += &format!(
            "LeNet training: {:.0} images/s ({:.1} ms per step)\n",
            r.samples_per_sec.unwrap_or(0.0),
            r.median_ms
        );
    }
    let qqp: Vec<&Record> = records
        .iter()
        .filter(|r| r.kernel.starts_with("qqp_"))
        .collect();
    for f in qqp.iter().filter(|r| r.variant == "fused") {
        if let Some(u) = qqp
            .iter()
            .find(|u| u.variant == "unfused" && u.shape == f.shape && u.kernel == f.kernel)
        {
            let cell = if f.kernel.contains("gru") {
                "BiGRU"
            } else {
                "BiLSTM"
            };
            out += &format!(
                "qqp {cell} training {}: fused {:.1} ms ({} dispatches, {:.1} submits per step) vs unfused {:.1} ms ({} dispatches): {:.1}x\n",
                f.shape,
                f.median_ms,
                f.dispatches,
                f.submits_per_step.unwrap_or(0.0),
                u.median_ms,
                u.dispatches,
                u.median_ms / f.median_ms
            );
        }
    }
    out += &attention::summary(records);
    if let Some(r) = records.iter().find(|r| r.kernel == "dispatch_overhead") {
        out += &format!(
            "recording + submitting a small dispatch: {:.4} ms each\n",
            r.median_ms
        );
    }
    for r in records {
        if let Some(m) = &r.memory {
            let mb = |b: u64| b as f64 / (1 << 20) as f64;
            let rss = match m.rss_bytes {
                [Some(a), Some(b)] => format!("RSS {:.1} -> {:.1} MB", mb(a), mb(b)),
                _ => "RSS not reported here".into(),
            };
            out += &format!(
                "memory over a fit ({}): {rss}; device {:.1} -> {:.1} MB in {} -> {} buffers (steps {} -> {})\n",
                r.shape,
                mb(m.device_bytes_live[0]),
                mb(m.device_bytes_live[1]),
                m.device_buffers_live[0],
                m.device_buffers_live[1],
                m.steps[0],
                m.steps[1]
            );
        }
    }
    out
}
