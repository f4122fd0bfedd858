//! The `kiln` command line: `kiln train`, `kiln info`, `kiln bench`. `cargo bench` runs `kiln bench` through
//! [`main_with`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kiln_device::{list_adapters, Device, DeviceChoice};

use crate::bench;
use crate::data::qqp::MAX_LEN;
use crate::files::Task;
use crate::models::{Arch, Job, JobName, ModelConfig, Pool};

/// Why a command stopped early: a message for the user, or a closed standard output (the reader,
/// such as `head`, has all it wants), which ends the command quietly with success, as Unix tools
/// do.
#[derive(Debug)]
pub enum Failure {
    /// An error, printed as `kiln: error: ...`.
    Message(String),
    /// Standard output was closed by its reader.
    StdoutClosed,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Message(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Message(message.to_string())
    }
}

/// Writes to standard output: a closed pipe is [`Failure::StdoutClosed`]; any other failure (a
/// full disk, `> /dev/full`) is an error, never a panic.
fn write_stdout(text: std::fmt::Arguments) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(text)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::StdoutClosed,
            _ => Failure::Message(format!("cannot write to standard output: {e}")),
        })
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `print!` through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))?
    };
}

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Deep-learning training on any GPU through WGSL and wgpu"
)]
pub struct Cli {
    /// Device: auto (best hardware GPU, else the CPU device), cpu, gpu (any adapter, software ones included), vulkan, metal, dx12, gl, or name:SUBSTRING (of the adapter name).
    #[arg(long, global = true, env = "KILN_DEVICE", default_value = "auto")]
    pub device: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a built-in job, or a model file (`--model`) on the job's data or on your own
    /// (`--data`): writes OUT/model.safetensors, OUT/checkpoints/, OUT/history.{csv,json,png}.
    Train(TrainArgs),
    /// Print a built-in job's model as a model file (JSON) to start your own from:
    /// `kiln model mnist > model.json`.
    Model {
        /// Which job's model.
        job: JobName,
        /// mnist: the pooling.
        #[arg(long)]
        pool: Option<Pool>,
        /// qqp: the architecture.
        #[arg(long)]
        arch: Option<Arch>,
        /// qqp: the data whose vocabulary sizes the embedding (default: the embedded data).
        #[arg(long)]
        data: Option<PathBuf>,
        /// qqp: ids per question.
        #[arg(long)]
        len: Option<usize>,
        /// qqp: keep only the N most frequent words.
        #[arg(long)]
        vocab_cap: Option<usize>,
    },
    /// Evaluate a saved model: loss and accuracy (or mean absolute error). mnist also draws a
    /// confusion matrix and pictures; qqp takes a labelled file or the embedded data's validation
    /// split; a model trained with `--model --data` takes a file or folder like the one it
    /// learned from.
    Eval {
        /// mnist or qqp for the built-in jobs' models; leave it out for a model trained from a
        /// data file.
        task: Option<EvalTask>,
        /// The saved model (OUT/model.safetensors or OUT/best.safetensors of a `kiln train` run).
        #[arg(long)]
        model: PathBuf,
        /// mnist: folder with the IDX files (default: the embedded data/mnist). qqp: Quora's TSV or
        /// Kaggle's train.csv (default: the embedded data's validation split). Other models: a
        /// labelled CSV or image folder.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// mnist: where to draw test_digits.png and confusion.png (default: the model's folder).
        #[arg(long)]
        pictures: Option<PathBuf>,
        /// mnist, qqp: evaluate on the first N samples only.
        #[arg(long)]
        limit: Option<usize>,
        /// Models trained from a data file: refuse a file with rows that cannot be evaluated
        /// instead of skipping (and reporting) them.
        #[arg(long)]
        strict: bool,
    },
    /// Predictions: a question pair's duplicate probability (qqp), or a CSV with one row per
    /// input row (qqp: a Kaggle submission; models trained from a data file: the predicted class
    /// or value, and each class's probability).
    Predict {
        /// qqp for the seed's model; leave it out for a model trained from a data file.
        task: Option<PredictTask>,
        /// The saved model.
        #[arg(long)]
        model: PathBuf,
        /// qqp: the two questions.
        questions: Vec<String>,
        /// A file (or image folder) to predict every row of: writes --out.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The CSV written with --data (default: submission.csv for qqp, else predictions.csv).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite --out when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Write a task's encoded training and validation split as JSON (for training the same data
    /// in another framework, e.g. tools/keras/train_qqp.py).
    Export {
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
    },
    /// List every adapter, and the chosen one's limits and features.
    Info,
    /// Per-kernel time of a job's training step on this device: a table sorted by time, and
    /// optionally a Chrome trace (open it in <https://ui.perfetto.dev>) and JSON.
    Profile {
        /// The built-in job whose model and first batch are profiled.
        job: JobName,
        /// A model file to profile on the job's data instead of the job's model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Samples per step (default: the job's batch size).
        #[arg(long)]
        batch: Option<usize>,
        /// Profiled steps after one warm-up step; the table is per step.
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// mnist: the pooling.
        #[arg(long)]
        pool: Option<Pool>,
        /// qqp: the architecture.
        #[arg(long)]
        arch: Option<Arch>,
        /// qqp: ids per question.
        #[arg(long)]
        len: Option<usize>,
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
    },
    /// Measure this adapter's kernel choices (the tiled matmul's tile per class of shapes) on the
    /// training steps of the given jobs (default: qqp and mnist) and write them to the tuning
    /// cache that later runs read. Without it, choices are measured at first use
    /// (`KILN_AUTOTUNE=0` turns that off).
    Tune {
        /// The jobs whose training steps are tuned.
        jobs: Vec<JobName>,
    },
    /// Run kernel variants side by side and report median time, GFLOP/s or GB/s, and dispatches.
    Bench {
        /// Only kernels whose name contains this (matmul, elementwise, reduce, softmax, embedding,
        /// dropout, optim, dispatch_overhead).
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
    },
}

/// Tasks `kiln eval` knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalTask {
    /// A `kiln train mnist` model on the MNIST test set.
    Mnist,
    /// A `kiln train qqp` model on labelled question pairs.
    Qqp,
}

/// Tasks `kiln predict` and `kiln export` know by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PredictTask {
    /// Quora Question Pairs.
    Qqp,
}

/// How LSTM layers run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LstmArg {
    /// The persistent fused WGSL kernels.
    #[default]
    Fused,
    /// Per-timestep ops (the reference path).
    Unfused,
}

impl From<LstmArg> for kiln_graph::LstmPath {
    fn from(a: LstmArg) -> Self {
        match a {
            LstmArg::Fused => kiln_graph::LstmPath::Fused,
            LstmArg::Unfused => kiln_graph::LstmPath::Unfused,
        }
    }
}

/// `kiln train`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The built-in job (default: spirals). Leave it out with --model and --data to train a model
    /// file on data of your own.
    job: Option<JobName>,
    /// A model file (JSON; `kiln model <job>` prints one to start from): trained on the job's
    /// data, or with --data on a file or folder of your own.
    #[arg(long)]
    model: Option<PathBuf>,
    /// mnist: folder with the IDX files (default: the embedded data/mnist). qqp: Quora's TSV or
    /// Kaggle's train.csv (default: the embedded data/qqp/mini_quora_duplicate_questions.tsv).
    /// With --model and no job: a CSV (numeric or text columns and a label) or an image folder
    /// (one subfolder per class).
    #[arg(long)]
    data: Option<PathBuf>,
    /// --model --data: classification or regression (default: inferred and reported).
    #[arg(long)]
    task: Option<Task>,
    /// --model --data: the label column (default: one named label, target, class or y, else the
    /// last).
    #[arg(long)]
    label: Option<String>,
    /// --model --data: the input columns, comma-separated (default: all but the label).
    #[arg(long, value_delimiter = ',')]
    columns: Option<Vec<String>>,
    /// mnist: the pooling (default max).
    #[arg(long)]
    pool: Option<Pool>,
    /// qqp: the architecture (default seed).
    #[arg(long)]
    arch: Option<Arch>,
    /// qqp: ids per question, padded at the end, truncated at the front (default 31).
    #[arg(long)]
    len: Option<usize>,
    /// qqp: keep only the N most frequent words (others become the out-of-vocabulary id).
    #[arg(long)]
    vocab_cap: Option<usize>,
    /// qqp, --data files: refuse a file with bad rows instead of skipping (and reporting) them.
    #[arg(long)]
    strict: bool,
    /// qqp, --data files: seed of the 80/20 split (sklearn's random_state; default 2019);
    /// --seed drives initialization, shuffling and dropout.
    #[arg(long)]
    split_seed: Option<u32>,
    /// LSTM layers: fused (the persistent WGSL kernels) or unfused (per-timestep ops).
    #[arg(long, value_enum, default_value_t = LstmArg::Fused)]
    lstm: LstmArg,
    /// Passes over the training data (default: the job's; 10 for model files).
    #[arg(long)]
    epochs: Option<usize>,
    /// Samples per step (default: the job's; 32 for model files).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of initialization, shuffling and dropout.
    #[arg(long, default_value_t = 2019)]
    seed: u64,
    /// Learning rate (default: the model's).
    #[arg(long)]
    lr: Option<f32>,
    /// Output folder (default: runs/JOB, or runs/JOB-2, ... when that exists; with --resume,
    /// the newest of them).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the newest checkpoint in OUT/checkpoints (an error when there is none).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Replace an earlier run in OUT (its models, history and checkpoints); without it such a
    /// folder is refused.
    #[arg(long)]
    force: bool,
    /// Epoch checkpoints to keep, newest first (the best model is kept apart).
    #[arg(long, default_value_t = 3)]
    keep: usize,
    /// No progress bars (one line per epoch).
    #[arg(long)]
    quiet: bool,
    /// mnist, qqp, --data files: train on the first N samples only (validate on a fifth or a
    /// quarter as many): a smoke run.
    #[arg(long)]
    limit: Option<usize>,
}

/// What `kiln train` runs: a built-in job, maybe with a model file of one's own, or a model file
/// on data of one's own.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Job(JobName),
    Files,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Job(j) => write!(f, "kiln train {}", j.as_str()),
            Target::Files => write!(f, "kiln train --model FILE --data FILE"),
        }
    }
}

/// Refuses flags that `target` does not take, naming those that do.
fn check_flags(args: &TrainArgs, target: Target) -> Result<(), String> {
    use JobName::*;
    let job = |j| Target::Job(j);
    let with_model = args.model.is_some();
    let flags: [(&str, bool, &[Target], &str); 11] = [
        ("--pool", args.pool.is_some(), &[job(Mnist)], "mnist"),
        ("--arch", args.arch.is_some(), &[job(Qqp)], "qqp"),
        ("--len", args.len.is_some(), &[job(Qqp)], "qqp"),
        ("--vocab-cap", args.vocab_cap.is_some(), &[job(Qqp)], "qqp"),
        (
            "--strict",
            args.strict,
            &[job(Qqp), Target::Files],
            "qqp and --model --data",
        ),
        (
            "--split-seed",
            args.split_seed.is_some(),
            &[job(Qqp), Target::Files],
            "qqp and --model --data",
        ),
        (
            "--data",
            args.data.is_some(),
            &[job(Mnist), job(Qqp), Target::Files],
            "mnist, qqp and --model",
        ),
        (
            "--limit",
            args.limit.is_some(),
            &[job(Mnist), job(Qqp), Target::Files],
            "mnist, qqp and --model --data",
        ),
        (
            "--task",
            args.task.is_some(),
            &[Target::Files],
            "--model --data",
        ),
        (
            "--label",
            args.label.is_some(),
            &[Target::Files],
            "--model --data",
        ),
        (
            "--columns",
            args.columns.is_some(),
            &[Target::Files],
            "--model --data",
        ),
    ];
    for (flag, given, takes, who) in flags {
        if given && !takes.contains(&target) {
            return Err(format!(
                "{flag} applies to {who} only; `{target}` does not take it"
            ));
        }
    }
    if with_model && (args.pool.is_some() || args.arch.is_some()) {
        return Err(
            "--pool and --arch shape the built-in models; with --model the model file sets its layers"
                .into(),
        );
    }
    Ok(())
}

/// Which target the arguments name, or why they name none.
fn target(args: &TrainArgs) -> Result<Target, String> {
    match (args.job, &args.model, &args.data) {
        (Some(j), _, _) => Ok(Target::Job(j)),
        (None, Some(_), Some(_)) => Ok(Target::Files),
        (None, Some(_), None) => Err(
            "--model needs data: --data FILE (a CSV) or --data DIR (an image folder), or a built-in job's data: `kiln train mnist --model FILE`"
                .into(),
        ),
        (None, None, _) => Ok(Target::Job(JobName::Spirals)),
    }
}

/// Reads a model file, and says on stderr which fields it left out took their defaults.
fn read_model_file(path: &Path) -> Result<ModelConfig, String> {
    let (config, defaults) = ModelConfig::read_file(path)?;
    if !defaults.is_empty() {
        let shown = defaults
            .iter()
            .take(6)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        let more = defaults.len().saturating_sub(6);
        eprintln!(
            "kiln: model file {}: fields left out take their defaults: {shown}{}",
            path.display(),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
    }
    Ok(config)
}

/// Puts a model file's model on a built-in job's data, checking that it reads that data.
fn swap_model(job: &mut Job, config: ModelConfig, path: &Path) -> Result<(), String> {
    let o = config
        .outline()
        .map_err(|e| format!("model file {}: {e}", path.display()))?;
    let input = job.train.input();
    let ids = matches!(input.values, kiln_train::Values::Ids(_));
    if o.input != input.shape || o.takes_ids != ids {
        return Err(format!(
            "model file {}: takes {} of shape {:?}, but {}'s data is {} of shape {:?}; set \"input\" to {:?}{}",
            path.display(),
            if o.takes_ids { "ids" } else { "values" },
            o.input,
            job.name,
            if ids { "ids" } else { "values" },
            input.shape,
            input.shape,
            if ids { " and start with an embedding" } else { "" }
        ));
    }
    if let (Some(v), kiln_train::Values::Ids(all)) = (o.vocab, &input.values) {
        let need = all.iter().max().map_or(0, |&m| m as usize + 1);
        if v < need {
            return Err(format!(
                "model file {}: the embedding has {v} rows but {}'s data uses ids up to {}; set \"vocab\" to at least {need}",
                path.display(),
                job.name,
                need - 1
            ));
        }
    }
    job.model = config;
    Ok(())
}

/// Writes `value` as pretty JSON to `path`, atomically, and says so on stderr.
fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())? + "\n";
    kiln_graph::checkpoint::write_atomic(path, text.as_bytes()).map_err(|e| e.to_string())?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The device of `--device`: the choice read at once (a bad one is an error whatever the
/// command), the device opened at the first `get`.
struct LazyDevice {
    choice: DeviceChoice,
    device: std::cell::OnceCell<Device>,
}

impl LazyDevice {
    fn new(choice: &str) -> Result<Self, String> {
        Ok(LazyDevice {
            choice: choice
                .parse()
                .map_err(|e: kiln_device::Error| e.to_string())?,
            device: std::cell::OnceCell::new(),
        })
    }

    fn get(&self) -> Result<&Device, String> {
        if let Some(device) = self.device.get() {
            return Ok(device);
        }
        let device = Device::new(&self.choice).map_err(|e| e.to_string())?;
        if let Some(note) = device.note() {
            eprintln!("kiln: {note}");
        }
        Ok(self.device.get_or_init(|| device))
    }
}

fn info(device: &Device) -> Result<(), Failure> {
    outln!("adapters (best first; `--device auto` passes over software ones, type Cpu):");
    let adapters = list_adapters();
    if adapters.is_empty() {
        outln!("  none found. {}", kiln_device::adapter::NO_ADAPTER_HINT);
    }
    for a in adapters {
        outln!(
            "  {:<40} {:<8} {:<14} {}",
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
        outln!(
            "timing: {}",
            if device.has_timestamps() {
                "GPU timestamps"
            } else {
                "wall clock (no TIMESTAMP_QUERY)"
            }
        );
    }
    outln!("{TESTED_BACKENDS}");
    Ok(())
}

/// What `kiln info` says of where kiln's kernels are tested.
const TESTED_BACKENDS: &str = "tested: every GPU test runs in CI on Vulkan (Mesa's lavapipe) and on GL (Mesa's llvmpipe); \
Metal and DX12 are covered by translating every kernel through naga's MSL and HLSL back ends (tests/shader_backends.rs)";

fn job_options(
    pool: Option<Pool>,
    arch: Option<Arch>,
    data: Option<PathBuf>,
    len: Option<usize>,
    vocab_cap: Option<usize>,
) -> Result<crate::models::JobOptions, String> {
    let len = len.unwrap_or(31);
    check_len(len)?;
    if vocab_cap == Some(0) {
        return Err("--vocab-cap must be at least 1".into());
    }
    Ok(crate::models::JobOptions {
        pool: pool.unwrap_or_default(),
        arch: arch.unwrap_or_default(),
        data,
        preprocess: crate::data::qqp::Preprocess {
            len,
            vocab_cap,
            ..Default::default()
        },
        ..Default::default()
    })
}

fn check_len(len: usize) -> Result<(), String> {
    if !(1..=MAX_LEN).contains(&len) {
        return Err(format!(
            "--len {len}: ids per question must be in 1..={MAX_LEN} (the seed uses 31)"
        ));
    }
    Ok(())
}

/// How the run in `out` reads its data, for `--resume` of a model file on a data file: the
/// new file is read the same way and refused where it does not match. None when the folder
/// holds no checkpoint (training refuses that: nothing to resume).
fn resumed_spec(out: &Path, model: &ModelConfig) -> Result<Option<crate::files::DataSpec>, String> {
    let Some((_, path)) = kiln_train::checkpoints::latest(&out.join("checkpoints")) else {
        return Ok(None);
    };
    let ck = kiln_graph::checkpoint::Checkpoint::load(&path).map_err(|e| e.to_string())?;
    let meta = ck.meta(crate::files::META_KEY).ok_or_else(|| {
        format!(
            "--resume: the run in {} was not trained from a data file (it has no `{}`); resume it as it was started, or start a new run with --out",
            out.display(),
            crate::files::META_KEY
        )
    })?;
    let outline = model.outline()?;
    crate::files::DataSpec::from_meta(meta, &outline)
        .map(Some)
        .map_err(|e| format!("--resume: {}: {e}", path.display()))
}

/// Refuses numeric flags out of range before any data is read or memory allocated.
fn check_numbers(args: &TrainArgs) -> Result<(), String> {
    let mut probe = kiln_train::TrainConfig::new(kiln_graph::LossKind::MeanSquaredError);
    if let Some(e) = args.epochs {
        probe.epochs = e;
    }
    if let Some(b) = args.batch {
        probe.batch = b;
    }
    if let Some(lr) = args.lr {
        probe.optimizer = probe.optimizer.with_lr(lr);
    }
    probe.validate().map_err(|e| format!("--{e}"))?;
    if args.limit == Some(0) {
        return Err("--limit 0 trains on nothing; give at least 1".into());
    }
    if args.keep == 0 {
        return Err("--keep 0 leaves nothing to resume from; keep at least 1".into());
    }
    Ok(())
}

fn train(device: &Device, args: TrainArgs) -> Result<(), Failure> {
    let target = target(&args)?;
    check_flags(&args, target)?;
    check_numbers(&args)?;
    let model_file = match &args.model {
        Some(p) => Some(read_model_file(p)?),
        None => None,
    };
    let mut job = match target {
        Target::Job(name) => {
            let mut opts = job_options(
                args.pool,
                args.arch,
                args.data.clone(),
                args.len,
                args.vocab_cap,
            )?;
            opts.limit = args.limit;
            opts.strict = args.strict;
            opts.preprocess.split_seed = args.split_seed.unwrap_or(2019);
            let mut job = crate::models::job(name, args.seed, &opts)?;
            if let (Some(config), Some(path)) = (model_file, &args.model) {
                swap_model(&mut job, config, path)?;
            }
            job
        }
        Target::Files => {
            let path = args.model.as_deref().expect("Files has a model");
            let data = args.data.as_deref().expect("Files has data");
            let model = model_file.expect("read above");
            let name = path
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy().to_string());
            let resume = if args.resume {
                let out = args
                    .out
                    .clone()
                    .unwrap_or_else(|| crate::models::default_out(&name, true));
                resumed_spec(&out, &model)?
            } else {
                None
            };
            let opts = crate::files::FileOptions {
                task: args.task,
                label: args.label.clone(),
                columns: args.columns.clone(),
                strict: args.strict,
                split_seed: args.split_seed.unwrap_or(2019),
                limit: args.limit,
                resume,
            };
            let mut job = crate::files::job(model, data, args.seed, &opts)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            job.name = name;
            job
        }
    };
    let TrainArgs {
        epochs,
        batch,
        lr,
        seed,
        out,
        resume,
        force,
        keep,
        quiet,
        lstm,
        ..
    } = args;
    if let Some(e) = epochs {
        job.config.epochs = e;
    }
    if let Some(b) = batch {
        job.config.batch = b;
    }
    if let Some(lr) = lr {
        job.config.optimizer = job.config.optimizer.with_lr(lr);
    }
    job.config.validate().map_err(|e| e.to_string())?;
    let lstm: kiln_graph::LstmPath = lstm.into();
    let out = out.unwrap_or_else(|| crate::models::default_out(&job.name, resume));
    // Checked again under the folder's lock when training starts; here, before any allocation.
    kiln_train::check_run_folder(&out, resume, force).map_err(|e| e.to_string())?;
    let builder = kiln_graph::ParamBuilder::new(seed);
    let model = job.model.init(&builder).map_err(|e| e.to_string())?;
    device.set_lstm_path(lstm);
    let params = builder.build(device).map_err(|e| e.to_string())?;
    if let Some(report) = &job.data_report {
        eprintln!("data: {report}");
    }
    if !quiet {
        eprintln!(
            "training {} on {}\n{}",
            job.name,
            device.name(),
            model.summary_table(&params)
        );
    }
    let opts = kiln_train::RunOptions {
        out: Some(out.clone()),
        resume,
        force,
        keep: Some(keep),
        verbose: if quiet { 2 } else { 1 },
        metadata: job.metadata.clone(),
    };
    let trained = kiln_train::fit(
        &*model,
        &params,
        &job.train,
        job.val.as_ref(),
        &job.config,
        &opts,
    )
    .map_err(|e| e.to_string())?;
    let (loss, metric) = kiln_train::evaluate(
        &*model,
        &params,
        &job.train,
        job.config.batch,
        &job.config.loss,
    )
    .map_err(|e| e.to_string())?;
    let name = &trained.history.metric;
    outln!("final training loss {loss:.4}, {name} {metric:.4}");
    if let Some((epoch, a)) = trained.history.best_val() {
        outln!("best validation {name} {a:.4} at epoch {epoch}");
    }
    outln!("wrote {}", out.display());
    Ok(())
}

fn run(cli: Cli) -> Result<(), Failure> {
    // Opened by the commands that run kernels: `model` and `export` only write files.
    let device = LazyDevice::new(&cli.device)?;
    match cli.command {
        Command::Train(args) => train(device.get()?, args)?,
        Command::Model {
            job,
            pool,
            arch,
            data,
            len,
            vocab_cap,
        } => {
            let given = [
                ("--pool", pool.is_some(), JobName::Mnist),
                ("--arch", arch.is_some(), JobName::Qqp),
                ("--data", data.is_some(), JobName::Qqp),
                ("--len", len.is_some(), JobName::Qqp),
                ("--vocab-cap", vocab_cap.is_some(), JobName::Qqp),
            ];
            for (flag, is_given, only) in given {
                if is_given && job != only {
                    return Err(
                        format!("{flag} applies to `kiln model {}` only", only.as_str()).into(),
                    );
                }
            }
            let opts = job_options(pool, arch, data, len, vocab_cap)?;
            let job = crate::models::job(job, 0, &opts)?;
            print_json(&job.model)?;
        }
        Command::Eval {
            task,
            model,
            data,
            json,
            pictures,
            limit,
            strict,
        } => {
            if limit == Some(0) {
                return Err("--limit 0 evaluates nothing; give at least 1".into());
            }
            let Some(task) = task else {
                if pictures.is_some() || limit.is_some() {
                    return Err("--pictures and --limit apply to `kiln eval mnist` and `kiln eval qqp` only".into());
                }
                let data = data.ok_or(
                    "a model trained from a data file is evaluated on one like it: --data FILE or --data DIR",
                )?;
                let r = crate::files::eval(device.get()?, &model, &data, strict)?;
                if json {
                    print_json(&r)?;
                } else {
                    outln!(
                        "{}: {} rows of {}: {} {:.4}, loss {:.4}",
                        model.display(),
                        r.rows,
                        r.data.display(),
                        r.metric,
                        r.value,
                        r.loss
                    );
                    if r.skipped > 0 {
                        outln!(
                            "skipped {} rows (--strict refuses them): {}",
                            r.skipped,
                            r.skipped_examples.join("; ")
                        );
                    }
                }
                return Ok(());
            };
            if strict && task == EvalTask::Mnist {
                return Err(
                    "--strict applies to `kiln eval qqp` and models trained from a data file"
                        .into(),
                );
            }
            if task == EvalTask::Qqp {
                if pictures.is_some() {
                    return Err("--pictures applies to `kiln eval mnist` only".into());
                }
                let r = crate::qqp::eval(device.get()?, &model, data.as_deref(), limit, strict)?;
                if json {
                    print_json(&r)?;
                } else {
                    outln!(
                        "{}: {} pairs of {} ({}): accuracy {:.4}, loss {:.4}",
                        model.display(),
                        r.pairs,
                        r.data.display(),
                        r.rows,
                        r.accuracy,
                        r.loss
                    );
                    if r.skipped_rows > 0 {
                        outln!(
                            "{}: {} (--strict refuses them)",
                            r.data.display(),
                            r.skipped
                        );
                    }
                }
                return Ok(());
            }
            let data = data.unwrap_or_else(crate::data::mnist::default_dir);
            let pictures =
                pictures.unwrap_or_else(|| model.parent().map(PathBuf::from).unwrap_or_default());
            let report = crate::eval::mnist(device.get()?, &model, &data, Some(&pictures), limit)?;
            if json {
                print_json(&report)?;
            } else {
                outln!(
                    "{}: {} test images, accuracy {:.4}, loss {:.4}",
                    model.display(),
                    report.samples,
                    report.accuracy,
                    report.loss
                );
                outln!("confusion (rows: true digit, columns: predicted):");
                for (t, row) in report.confusion.iter().enumerate() {
                    outln!(
                        "  {t}: {}",
                        row.iter().map(|c| format!("{c:5}")).collect::<String>()
                    );
                }
                outln!(
                    "pictures: {}, {}",
                    pictures.join("test_digits.png").display(),
                    pictures.join("confusion.png").display()
                );
            }
        }
        Command::Predict {
            task,
            model,
            questions,
            data,
            out,
            force,
        } => {
            let Some(PredictTask::Qqp) = task else {
                if !questions.is_empty() {
                    return Err("give a model trained from a data file --data FILE (or DIR); questions on the command line are for `kiln predict qqp`".into());
                }
                let data = data.ok_or("--data FILE (or DIR): what to predict")?;
                let out = out.unwrap_or_else(|| PathBuf::from("predictions.csv"));
                let n = crate::files::predict(device.get()?, &model, &data, &out, force)?;
                outln!("wrote {} ({n} rows)", out.display());
                return Ok(());
            };
            match (data, questions.as_slice()) {
                (Some(data), []) => {
                    let out = out.unwrap_or_else(|| PathBuf::from("submission.csv"));
                    let n = crate::qqp::submission(device.get()?, &model, &data, &out, force)?;
                    outln!("wrote {} ({n} pairs)", out.display());
                }
                (None, [q1, q2]) => {
                    let device = device.get()?;
                    let m = crate::qqp::load(device, &model)?;
                    let pair = crate::data::qqp::Pair {
                        id: "0".into(),
                        q1: q1.clone(),
                        q2: q2.clone(),
                        label: None,
                    };
                    let p = m.predict(device, &[pair])?[0];
                    outln!("{p:.4}");
                }
                _ => {
                    return Err(
                        "give two questions, or --data FILE for a submission file (not both)"
                            .into(),
                    )
                }
            }
        }
        Command::Export {
            task,
            data,
            len,
            seed,
            out,
            force,
        } => {
            crate::files::check_out_file(&out, force)?;
            let PredictTask::Qqp = task;
            check_len(len)?;
            let pre = crate::data::qqp::Preprocess {
                len,
                split_seed: seed,
                ..Default::default()
            };
            crate::qqp::export(data.as_deref(), &pre, &out)?;
            eprintln!("wrote {}", out.display());
        }
        Command::Info => info(device.get()?)?,
        Command::Profile {
            job,
            model,
            batch,
            steps,
            pool,
            arch,
            len,
            lstm,
            trace,
            json,
            force,
        } => {
            for path in trace.iter().chain(&json) {
                crate::files::check_out_file(path, force)?;
            }
            let device = device.get()?;
            let opts = job_options(pool, arch, None, len, None)?;
            let mut j = crate::models::job(job, 0, &opts)?;
            if let Some(path) = &model {
                swap_model(&mut j, read_model_file(path)?, path)?;
            }
            let popts = crate::profile::Options {
                steps,
                batch,
                lstm: lstm.into(),
            };
            eprintln!("kiln profile {} on {}", j.name, device.name());
            let (report, profile) = crate::profile::run(device, &j, &popts)?;
            out!("{}", crate::profile::table(&report));
            if let Some(path) = trace {
                write_json(&path, &crate::profile::chrome_trace(&report, &profile))?;
            }
            if let Some(path) = json {
                write_json(&path, &report)?;
            }
        }
        Command::Tune { jobs } => {
            let device = device.get()?;
            if !device.is_gpu() {
                return Err(
                    "kiln tune measures a GPU adapter's kernels; the CPU device has nothing to tune"
                        .into(),
                );
            }
            let jobs = if jobs.is_empty() {
                vec![JobName::Qqp, JobName::Mnist]
            } else {
                jobs
            };
            device.set_tune_mode(kiln_device::TuneMode::Remeasure);
            for name in jobs {
                let opts = job_options(None, None, None, None, None)?;
                let j = crate::models::job(name, 0, &opts)?;
                eprintln!("tuning {} on {}", j.name, device.name());
                let popts = crate::profile::Options {
                    steps: 1,
                    batch: None,
                    lstm: kiln_graph::LstmPath::Fused,
                };
                crate::profile::run(device, &j, &popts)?;
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
        }
        Command::Bench {
            filter,
            json,
            force,
            repeats,
            quick,
        } => {
            if repeats == 0 {
                return Err("--repeats 0 times nothing; give at least 1".into());
            }
            if let Some(path) = &json {
                crate::files::check_out_file(path, force)?;
            }
            let device = device.get()?;
            let opts = bench::Options {
                filter,
                repeats,
                quick,
            };
            eprintln!("kiln bench on {}", device.name());
            let records = bench::run(device, &opts).map_err(|e| e.to_string())?;
            out!("{}", bench::table(&records));
            if let Some(path) = json {
                write_json(&path, &records)?;
            }
        }
    }
    Ok(())
}

/// Parses `args` (program name first) and runs the command; errors print as `kiln: error: ...`.
pub fn main_with(args: impl IntoIterator<Item = String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::Message(e)) => {
            eprintln!("kiln: error: {e}");
            ExitCode::FAILURE
        }
    }
}
