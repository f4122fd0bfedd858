//! The commands around training: `kiln model`, `kiln export`, `kiln info`, `kiln profile`,
//! `kiln tune` and `kiln bench`.

use std::path::PathBuf;

use kiln_device::list_adapters;

use crate::cli::apply::PredictTask;
use crate::cli::flags::{check_len, JobFlags, LstmArg};
use crate::cli::train::{read_model_file, swap_model};
use crate::cli::{
    check_outputs, out, outln, print_json, write_json, Classify, CliError, LazyDevice,
};
use crate::models::JobName;

/// `kiln model`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Which job's model.
    job: JobName,
    #[command(flatten)]
    job_flags: JobFlags,
    /// qqp: the data whose vocabulary sizes the embedding (default: the embedded data).
    #[arg(long)]
    data: Option<PathBuf>,
}

impl ModelArgs {
    /// Refuses flags the job does not take.
    pub fn validate(&self) -> Result<(), CliError> {
        let command = format!("kiln model {}", self.job.as_str());
        if self.data.is_some() && self.job != JobName::Qqp {
            return Err(CliError::usage(format!(
                "--data applies to qqp only; `{command}` does not take it"
            )));
        }
        self.job_flags.check(self.job, &command)
    }

    /// Prints the job's model as a model file.
    pub fn run(self) -> Result<(), CliError> {
        let mut opts = self.job_flags.options();
        opts.data = self.data;
        let job = crate::models::job(self.job, 0, &opts).data()?;
        print_json(&job.model)
    }
}

/// `kiln export`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Which task.
    task: PredictTask,
    /// Quora's TSV or Kaggle's train.csv (default: the embedded data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Ids per question.
    #[arg(long, default_value_t = 31)]
    len: usize,
    /// Seed of the split.
    #[arg(long, default_value_t = 2019)]
    seed: u32,
    /// The JSON file to write.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite --out when it exists.
    #[arg(long)]
    force: bool,
}

impl ExportArgs {
    /// Refuses a length out of range.
    pub fn validate(&self) -> Result<(), CliError> {
        check_len(self.len)
    }

    /// Writes the split.
    pub fn run(self) -> Result<(), CliError> {
        let PredictTask::Qqp = self.task;
        check_outputs([&self.out], self.force)?;
        let pre = crate::data::qqp::Preprocess {
            len: self.len,
            split_seed: self.seed,
            ..Default::default()
        };
        crate::qqp::export(self.data.as_deref(), &pre, &self.out).data()?;
        eprintln!("wrote {}", self.out.display());
        Ok(())
    }
}

/// `kiln info`'s arguments (none).
#[derive(clap::Args, Debug)]
pub struct InfoArgs {}

/// What `kiln info` says of where kiln's kernels are tested.
const TESTED_BACKENDS: &str = "tested: every GPU test runs in CI on Vulkan (Mesa's lavapipe, at WebGPU's default limits) and on GL (Mesa's llvmpipe); \
every kernel is compiled by naga (with its SPIR-V, MSL for Metal, HLSL for DX12 and GLSL back ends) and by Tint (Chrome's and Dawn's compiler)";

impl InfoArgs {
    /// Lists the adapters and the chosen device's limits.
    pub fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        let device = device.get()?;
        outln!("adapters (best first, numbered for `--device N` and `train --devices`; `--device auto` passes over software ones, type Cpu):");
        let adapters = list_adapters();
        if adapters.is_empty() {
            outln!("  none found. {}", kiln_device::adapter::NO_ADAPTER_HINT);
        }
        for (i, a) in adapters.iter().enumerate() {
            outln!(
                "  {i:>2} {:<40} {:<8} {:<14} {}",
                a.name,
                a.backend,
                a.device_type,
                a.driver
            );
        }
        outln!("chosen: {}", device.name());
        let info = device.info();
        if let Some(choice) = info.limits_choice {
            if info.below_webgpu.is_empty() {
                outln!("WebGPU's default limits: met (every kiln kernel fits them)");
            } else {
                outln!(
                    "WebGPU's default limits: NOT met ({}); kernels that need more than it has fall back or are refused",
                    info.below_webgpu.join("; ")
                );
            }
            outln!("opened with {choice} limits (KILN_LIMITS=webgpu|adapter to change):");
        }
        if !info.limits.is_empty() {
            for (name, value) in info.limits {
                outln!("  {name:<40} {value}");
            }
            outln!("features: {}", info.features.join(", "));
            let timing = if device.has_timestamps() {
                "GPU timestamps"
            } else {
                "wall clock (no TIMESTAMP_QUERY)"
            };
            outln!("timing: {timing}");
        }
        outln!("{TESTED_BACKENDS}");
        Ok(())
    }
}

/// `kiln profile`'s arguments.
#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// The built-in job whose model and first batch are profiled.
    job: JobName,
    /// A model file to profile on the job's data instead of the job's model.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    job_flags: JobFlags,
    /// Samples per step (default: the job's batch size).
    #[arg(long)]
    batch: Option<usize>,
    /// Profiled steps after one warm-up step; the table is per step.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// LSTM layers: fused or unfused.
    #[arg(long, value_enum, default_value_t = LstmArg::Fused)]
    lstm: LstmArg,
    /// Write a Chrome trace (JSON) of every kernel launch to this file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Write the table as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Overwrite --trace and --json files that exist.
    #[arg(long)]
    force: bool,
}

impl ProfileArgs {
    /// Refuses flags the job does not take and counts of 0.
    pub fn validate(&self) -> Result<(), CliError> {
        if self.steps == 0 {
            return Err(CliError::usage(
                "--steps 0 profiles nothing; give at least 1",
            ));
        }
        if self.batch == Some(0) {
            return Err(CliError::usage("--batch must be at least 1"));
        }
        if self.model.is_some() && (self.job_flags.pool.is_some() || self.job_flags.arch.is_some())
        {
            return Err(CliError::usage(
                "--pool and --arch shape the built-in models; with --model the model file sets its layers",
            ));
        }
        self.job_flags
            .check(self.job, &format!("kiln profile {}", self.job.as_str()))
    }

    /// Profiles and prints the table; writes the trace and the JSON when asked.
    pub fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        check_outputs(self.trace.iter().chain(&self.json), self.force)?;
        let mut j = crate::models::job(self.job, 0, &self.job_flags.options()).data()?;
        if let Some(path) = &self.model {
            swap_model(&mut j, read_model_file(path)?.0, path)?;
        }
        let device = device.get()?;
        let popts = crate::profile::Options {
            steps: self.steps,
            batch: self.batch,
            lstm: self.lstm.into(),
        };
        eprintln!("kiln profile {} on {}", j.name, device.name());
        let (report, profile) = crate::profile::run(device, &j, &popts).runtime()?;
        out!("{}", crate::profile::table(&report));
        if let Some(path) = self.trace {
            write_json(&path, &crate::profile::chrome_trace(&report, &profile))?;
        }
        if let Some(path) = self.json {
            write_json(&path, &report)?;
        }
        Ok(())
    }
}

/// `kiln tune`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TuneArgs {
    /// The jobs whose training steps are tuned.
    jobs: Vec<JobName>,
}

impl TuneArgs {
    /// Measures and records the adapter's kernel choices.
    pub fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        let device = device.get()?;
        if !device.is_gpu() {
            return Err(CliError::usage(
                "kiln tune measures a GPU adapter's kernels; the CPU device has nothing to tune",
            ));
        }
        let jobs = if self.jobs.is_empty() {
            vec![JobName::Qqp, JobName::Mnist]
        } else {
            self.jobs
        };
        device.set_tune_mode(kiln_device::TuneMode::Remeasure);
        for name in jobs {
            let j = crate::models::job(name, 0, &JobFlags::default().options()).data()?;
            eprintln!("tuning {} on {}", j.name, device.name());
            let popts = crate::profile::Options {
                steps: 1,
                batch: None,
                lstm: kiln_graph::LstmPath::Fused,
            };
            crate::profile::run(device, &j, &popts).runtime()?;
        }
        let measured = device.tuned_here();
        outln!(
            "{} shape classes tuned on {}:",
            measured.len(),
            device.name()
        );
        for (class, choice) in &measured {
            outln!("  {class:<56} {choice}");
        }
        match device.tune_file() {
            Some(f) => outln!(
                "written to {} ({} classes in all)",
                f.display(),
                device.tuned_choices().len()
            ),
            None => outln!("no cache folder (set KILN_TUNE_CACHE): kept for this run only"),
        }
        Ok(())
    }
}

/// `kiln bench`'s arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Only kernels whose name contains this (matmul, elementwise, reduce, softmax, embedding,
    /// dropout, optim, attention, dispatch_overhead).
    #[arg(long)]
    filter: Option<String>,
    /// Write the records as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Overwrite --json when it exists.
    #[arg(long)]
    force: bool,
    /// Timed runs per case (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Small shapes: a smoke run in seconds.
    #[arg(long)]
    quick: bool,
}

impl BenchArgs {
    /// Refuses 0 repeats.
    pub fn validate(&self) -> Result<(), CliError> {
        if self.repeats == 0 {
            return Err(CliError::usage(
                "--repeats 0 times nothing; give at least 1",
            ));
        }
        Ok(())
    }

    /// Runs the benchmarks and prints the table; writes the JSON when asked.
    pub fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        check_outputs(&self.json, self.force)?;
        let device = device.get()?;
        let opts = crate::bench::Options {
            filter: self.filter,
            repeats: self.repeats,
            quick: self.quick,
        };
        eprintln!("kiln bench on {}", device.name());
        let records = crate::bench::run(device, &opts).runtime()?;
        out!("{}", crate::bench::table(&records));
        if let Some(path) = self.json {
            write_json(&path, &records)?;
        }
        Ok(())
    }
}
