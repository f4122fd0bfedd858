//! The `kiln` command line, built from types: one clap `Args` struct per subcommand, each with
//! its own `run`; the flags that shape a built-in job declared once ([`JobFlags`]) and checked
//! once against the job; `--device` parsed by clap into a [`DeviceChoice`]; and one error type,
//! [`CliError`], whose class is the exit code:
//!
//! | exit code | meaning |
//! | --- | --- |
//! | 0 | success (also when standard output is closed by its reader: `kiln model mnist \| head -1`) |
//! | 1 | a runtime failure: no device, training diverged, a file could not be written |
//! | 2 | a usage error: a flag that the command or job does not take, or a value out of range |
//! | 3 | a data error: a data, model or checkpoint file that cannot be used, with the fix |
//!
//! `cargo bench` runs `kiln bench` through [`main_with`].

mod apply;
mod flags;
pub mod group;
mod tools;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiln_device::{Device, DeviceChoice};

pub use apply::{EvalArgs, EvalTask, PredictArgs, PredictTask};
pub use flags::{JobFlags, LstmArg};
pub use tools::{BenchArgs, ExportArgs, InfoArgs, ModelArgs, ProfileArgs, TuneArgs};
pub use train::TrainArgs;

/// `kiln`: the global flags and one subcommand.
#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Deep-learning training on any GPU through WGSL and wgpu"
)]
pub struct Cli {
    /// Device: auto (best hardware GPU, else the CPU device), cpu, gpu (any adapter, software ones included), vulkan, metal, dx12, gl, name:SUBSTRING (of the adapter name), or N (the adapter numbered N by `kiln info`).
    #[arg(long, global = true, env = "KILN_DEVICE", default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

fn parse_device(text: &str) -> Result<DeviceChoice, String> {
    text.parse().map_err(|e: kiln_device::Error| e.to_string())
}

/// `kiln`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a built-in job, or a model file (`--model`) on the job's data or on your own
    /// (`--data`): writes OUT/model.safetensors, OUT/checkpoints/, OUT/history.{csv,json,png}.
    Train(Box<TrainArgs>),
    /// Print a built-in job's model as a model file (JSON) to start your own from:
    /// `kiln model mnist > model.json`.
    Model(ModelArgs),
    /// Evaluate a saved model: loss and accuracy (or mean absolute error). mnist also draws a
    /// confusion matrix and pictures; qqp takes a labelled file or the embedded data's validation
    /// split; a model trained with `--model --data` takes a file or folder like the one it
    /// learned from.
    Eval(EvalArgs),
    /// Predictions: a question pair's duplicate probability (qqp), or a CSV with one row per
    /// input row (qqp: a Kaggle submission; models trained from a data file: the predicted class
    /// or value, and each class's probability).
    Predict(PredictArgs),
    /// Write a task's encoded training and validation split as JSON (for training the same data
    /// in another framework, e.g. tools/keras/train_qqp.py).
    Export(ExportArgs),
    /// List every adapter, and the chosen one's limits and features.
    Info(InfoArgs),
    /// Per-kernel time of a job's training step on this device: a table sorted by time, and
    /// optionally a Chrome trace (open it in <https://ui.perfetto.dev>) and JSON.
    Profile(ProfileArgs),
    /// Measure this adapter's kernel choices (the tiled matmul's tile per class of shapes) on the
    /// training steps of the given jobs (default: qqp and mnist) and write them to the tuning
    /// cache that later runs read. Without it, choices are measured at first use
    /// (`KILN_AUTOTUNE=0` turns that off).
    Tune(TuneArgs),
    /// Run kernel variants side by side and report median time, GFLOP/s or GB/s, and dispatches.
    Bench(BenchArgs),
}

impl Command {
    /// Refuses flags that the command (or its job) does not take and values out of range,
    /// before any file is read or device opened.
    pub fn validate(&self) -> Result<(), CliError> {
        match self {
            Command::Train(a) => a.validate(),
            Command::Model(a) => a.validate(),
            Command::Eval(a) => a.validate(),
            Command::Predict(a) => a.validate(),
            Command::Export(a) => a.validate(),
            Command::Info(_) => Ok(()),
            Command::Profile(a) => a.validate(),
            Command::Tune(_) => Ok(()),
            Command::Bench(a) => a.validate(),
        }
    }

    fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        match self {
            Command::Train(a) => a.run(device),
            Command::Model(a) => a.run(),
            Command::Eval(a) => a.run(device),
            Command::Predict(a) => a.run(device),
            Command::Export(a) => a.run(),
            Command::Info(a) => a.run(device),
            Command::Profile(a) => a.run(device),
            Command::Tune(a) => a.run(device),
            Command::Bench(a) => a.run(device),
        }
    }
}

/// Why a command failed; its class is the process's exit code (see the module doc).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag the command or job does not take, or a value out of range (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A data, model or checkpoint file that cannot be used (exit 3).
    #[error("{0}")]
    Data(String),
    /// A runtime failure: the device, a diverged run, a write (exit 1).
    #[error("{0}")]
    Runtime(String),
    /// Standard output was closed by its reader: the command ends quietly (exit 0).
    #[error("standard output was closed")]
    StdoutClosed,
}

impl CliError {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::StdoutClosed => 0,
            CliError::Runtime(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Data(_) => 3,
        }
    }

    /// A usage error.
    pub fn usage(e: impl std::fmt::Display) -> Self {
        CliError::Usage(e.to_string())
    }

    /// A data error.
    pub fn data(e: impl std::fmt::Display) -> Self {
        CliError::Data(e.to_string())
    }

    /// A runtime failure.
    pub fn runtime(e: impl std::fmt::Display) -> Self {
        CliError::Runtime(e.to_string())
    }

    /// A training error by its kind: a checkpoint or model that does not fit is a data error,
    /// settings that cannot train a usage error, the rest (divergence, the device, writes)
    /// runtime failures.
    pub fn train(e: kiln_train::Error) -> Self {
        match e {
            kiln_train::Error::Checkpoint { .. } => CliError::data(e),
            kiln_train::Error::Config { .. } => CliError::usage(e),
            kiln_train::Error::Graph(kiln_graph::Error::Model { .. })
            | kiln_train::Error::Graph(kiln_graph::Error::Weights(_))
            | kiln_train::Error::Graph(kiln_graph::Error::Checkpoint { .. }) => CliError::data(e),
            _ => CliError::runtime(e),
        }
    }
}

/// Classifies any error: `result.usage()?`, `.data()?`, `.runtime()?`.
pub(crate) trait Classify<T> {
    /// As a usage error.
    fn usage(self) -> Result<T, CliError>;
    /// As a data error.
    fn data(self) -> Result<T, CliError>;
    /// As a runtime failure.
    fn runtime(self) -> Result<T, CliError>;
}

impl<T, E: std::fmt::Display> Classify<T> for Result<T, E> {
    fn usage(self) -> Result<T, CliError> {
        self.map_err(CliError::usage)
    }
    fn data(self) -> Result<T, CliError> {
        self.map_err(CliError::data)
    }
    fn runtime(self) -> Result<T, CliError> {
        self.map_err(CliError::runtime)
    }
}

/// Writes to standard output: a closed pipe is [`CliError::StdoutClosed`]; any other failure (a
/// full disk, `> /dev/full`) is a runtime failure, never a panic.
pub(crate) fn write_stdout(text: std::fmt::Arguments) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(text)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::StdoutClosed,
            _ => CliError::runtime(format!("cannot write to standard output: {e}")),
        })
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `print!` through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        crate::cli::write_stdout(format_args!($($arg)*))?
    };
}
pub(crate) use {out, outln};

/// Prints `value` as pretty JSON on standard output.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    outln!("{}", serde_json::to_string_pretty(value).runtime()?);
    Ok(())
}

/// Writes `value` as pretty JSON to `path`, atomically, and says so on stderr.
pub(crate) fn write_json(
    path: &std::path::Path,
    value: &impl serde::Serialize,
) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).runtime()? + "\n";
    kiln_graph::checkpoint::write_atomic(path, text.as_bytes()).runtime()?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Refuses output paths that exist (without `force`) or are not regular files, before any work.
pub(crate) fn check_outputs<'a>(
    paths: impl IntoIterator<Item = &'a PathBuf>,
    force: bool,
) -> Result<(), CliError> {
    for path in paths {
        crate::files::check_out_file(path, force).usage()?;
    }
    Ok(())
}

/// The device of `--device`, opened at the first `get` (commands that run no kernels never
/// open one).
pub struct LazyDevice {
    choice: DeviceChoice,
    device: std::cell::OnceCell<Device>,
}

impl LazyDevice {
    fn new(choice: DeviceChoice) -> Self {
        LazyDevice {
            choice,
            device: std::cell::OnceCell::new(),
        }
    }

    /// The device, opened now if it was not yet (a failure to open it is a runtime failure).
    pub fn get(&self) -> Result<&Device, CliError> {
        if let Some(device) = self.device.get() {
            return Ok(device);
        }
        let device = Device::new(&self.choice).runtime()?;
        if let Some(note) = device.note() {
            eprintln!("kiln: {note}");
        }
        Ok(self.device.get_or_init(|| device))
    }
}

/// Parses `args` (program name first), checks the flags, and runs the command; errors print as
/// `kiln: error: ...` and exit with their class's code.
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
    let _mpi = group::start();
    let device = LazyDevice::new(cli.device.clone());
    let result = cli
        .command
        .validate()
        .and_then(|()| cli.command.run(&device));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CliError::StdoutClosed) {
                match group::current() {
                    Some(g) => eprintln!("kiln: error (rank {} of {}): {e}", g.rank(), g.size()),
                    None => eprintln!("kiln: error: {e}"),
                }
            }
            group::abort(e.exit_code());
            ExitCode::from(e.exit_code())
        }
    }
}
