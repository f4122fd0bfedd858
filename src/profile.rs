//! `kiln profile`: what each kernel of a job's training step costs on the device in use. One
//! warm-up step, then `steps` profiled steps of [`kiln_graph::train_step`] on the job's first
//! batch; kernel times from GPU timestamps where the adapter has them, else the wall clock around
//! every kernel of the CPU device ([`Device::profile`]). Printed as a table sorted by time and
//! written as a Chrome trace (Perfetto, chrome://tracing) and JSON.

use std::time::Instant;

use kiln_device::{Device, Profile};
use kiln_graph::{train_step, LstmPath, Optimizer, ParamBuilder};
use serde::Serialize;

use crate::models::Job;

/// One kernel's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    /// The kernel: the shader entry point on a GPU, the op on the CPU device.
    pub kernel: String,
    /// Launches per step.
    pub calls_per_step: f64,
    /// Its time per step, in milliseconds.
    pub ms_per_step: f64,
    /// Its share of all kernels' time, in percent.
    pub percent: f64,
}

/// A profiled training step.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The job.
    pub job: String,
    /// The device's name.
    pub device: String,
    /// "gpu-timestamp", "wall-clock" (CPU device) or "none" (no timestamp queries).
    pub timing: &'static str,
    /// Samples per step.
    pub batch: usize,
    /// Profiled steps (after one warm-up step).
    pub steps: usize,
    /// Wall-clock time per profiled step, waiting for the device included.
    pub wall_ms_per_step: f64,
    /// The kernels' summed time per step; the rest of the wall time is the host's share (recording,
    /// submitting, the graph) and, on a GPU, idle gaps.
    pub kernel_ms_per_step: f64,
    /// Kernel launches per step.
    pub launches_per_step: f64,
    /// Launches that ran untimed (past the timestamp query set's capacity).
    pub untimed: u64,
    /// Per kernel, longest first.
    pub kernels: Vec<KernelRow>,
}

/// What to profile.
#[derive(Clone, Debug)]
pub struct Options {
    /// Profiled steps after the warm-up step (at least 1).
    pub steps: usize,
    /// Samples per step (default: the job's batch size).
    pub batch: Option<usize>,
    /// How LSTM layers run.
    pub lstm: LstmPath,
}

/// Profiles `steps` training steps of `job`'s model on its first batch. Returns the report and
/// the raw profile (for the trace).
pub fn run(device: &Device, job: &Job, opts: &Options) -> Result<(Report, Profile), String> {
    let err = |e: kiln_graph::Error| e.to_string();
    if opts.steps == 0 {
        return Err("--steps 0 profiles nothing; give at least 1".into());
    }
    let batch = opts.batch.unwrap_or(job.config.batch);
    if batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let batch = batch.min(job.train.len());
    let builder = ParamBuilder::new(0);
    let model = job.model.init(&builder).map_err(err)?;
    device.set_lstm_path(opts.lstm);
    let params = builder.build(device).map_err(err)?;
    let mut optimizer = Optimizer::new(job.config.optimizer, &params)
        .map_err(err)?
        .with_clip(job.config.clip);
    let data = job
        .train
        .batch(&(0..batch).collect::<Vec<_>>(), device)
        .map_err(|e| e.to_string())?;
    let mut step = || -> kiln_device::Result<()> {
        let loss = job.config.loss.expect("every job has a loss");
        train_step(&*model, &params, &mut optimizer, &loss, &data, 0).map_err(|e| {
            kiln_device::Error::InvalidArgument {
                op: "profile",
                what: e.to_string(),
            }
        })?;
        Ok(())
    };
    step().map_err(|e| e.to_string())?;
    device.sync().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let ((), profile) = device
        .profile(|| {
            for _ in 0..opts.steps {
                step()?;
            }
            device.sync()
        })
        .map_err(|e| e.to_string())?;
    let wall = start.elapsed().as_secs_f64() * 1e3;
    let per = |v: f64| v / opts.steps as f64;
    let kernels = profile
        .by_kernel()
        .into_iter()
        .map(|k| KernelRow {
            kernel: k.name.to_string(),
            calls_per_step: per(k.calls as f64),
            ms_per_step: per(k.ms),
            percent: k.share * 100.0,
        })
        .collect();
    let report = Report {
        job: job.name.clone(),
        device: device.name(),
        timing: profile.clock.as_str(),
        batch,
        steps: opts.steps,
        wall_ms_per_step: per(wall),
        kernel_ms_per_step: per(profile.kernel_ms()),
        launches_per_step: per(profile.spans.len() as f64 + profile.untimed as f64),
        untimed: profile.untimed,
        kernels,
    };
    Ok((report, profile))
}

/// The report as a text table.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "{} on {}, batch {}, {} step(s) after a warm-up, timing: {}\n",
        r.job, r.device, r.batch, r.steps, r.timing
    );
    s += &format!(
        "per step: {:.2} ms wall, {:.2} ms in kernels ({:.0}%), {:.0} launches\n",
        r.wall_ms_per_step,
        r.kernel_ms_per_step,
        100.0 * r.kernel_ms_per_step / r.wall_ms_per_step.max(f64::MIN_POSITIVE),
        r.launches_per_step
    );
    if r.untimed > 0 {
        s += &format!(
            "{} launches ran untimed (past 1,024 per profile)\n",
            r.untimed
        );
    }
    s += &format!(
        "{:<28} {:>8} {:>12} {:>7}\n",
        "kernel", "calls", "ms/step", "%"
    );
    for k in &r.kernels {
        s += &format!(
            "{:<28} {:>8.1} {:>12.3} {:>7.1}\n",
            k.kernel, k.calls_per_step, k.ms_per_step, k.percent
        );
    }
    s
}

/// The profile as a Chrome trace (the JSON array format's object form), one complete event per
/// kernel launch, in microseconds.
pub fn chrome_trace(r: &Report, p: &Profile) -> serde_json::Value {
    let events: Vec<serde_json::Value> = p
        .spans
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "cat": "kernel",
                "ph": "X",
                "ts": s.start_ms * 1e3,
                "dur": s.ms * 1e3,
                "pid": 1,
                "tid": 1,
            })
        })
        .collect();
    serde_json::json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "job": r.job,
            "device": r.device,
            "timing": r.timing,
            "batch": r.batch,
            "steps": r.steps,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_device::{KernelSpan, ProfileClock};

    #[test]
    fn the_trace_has_one_complete_event_per_span_in_microseconds() {
        let p = Profile {
            spans: vec![
                KernelSpan {
                    name: "matmul",
                    start_ms: 0.5,
                    ms: 2.0,
                },
                KernelSpan {
                    name: "unary",
                    start_ms: 2.5,
                    ms: 0.25,
                },
            ],
            clock: ProfileClock::WallClock,
            untimed: 0,
        };
        let r = Report {
            job: "x".into(),
            device: "cpu".into(),
            timing: "wall-clock",
            batch: 1,
            steps: 1,
            wall_ms_per_step: 3.0,
            kernel_ms_per_step: 2.25,
            launches_per_step: 2.0,
            untimed: 0,
            kernels: vec![],
        };
        let t = chrome_trace(&r, &p);
        let ev = t["traceEvents"].as_array().unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0]["ph"], "X");
        assert_eq!(ev[0]["ts"], 500.0);
        assert_eq!(ev[1]["dur"], 250.0);
        assert_eq!(ev[1]["name"], "unary");
    }
}
