//! Flags several commands share, declared once and checked once.

use crate::cli::CliError;
use crate::data::qqp::MAX_LEN;
use crate::models::{Arch, JobName, JobOptions, Norm, Pool};

/// The flags that shape a built-in job's model and data (`kiln train`, `kiln model`,
/// `kiln profile`). A flag that the chosen job does not take is a usage error, whatever the
/// command.
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct JobFlags {
    /// mnist: the pooling (default max).
    #[arg(long)]
    pub pool: Option<Pool>,
    /// mnist: BatchNormalization before each hidden relu (default none).
    #[arg(long)]
    pub norm: Option<Norm>,
    /// qqp: the architecture (default seed).
    #[arg(long)]
    pub arch: Option<Arch>,
    /// qqp: ids per question, padded at the end, truncated at the front (default 31).
    #[arg(long)]
    pub len: Option<usize>,
    /// qqp: keep only the N most frequent words (others become the out-of-vocabulary id).
    #[arg(long)]
    pub vocab_cap: Option<usize>,
}

impl JobFlags {
    /// The given flags with the one job that takes each.
    fn given(&self) -> [(&'static str, bool, JobName); 5] {
        [
            ("--pool", self.pool.is_some(), JobName::Mnist),
            ("--norm", self.norm.is_some(), JobName::Mnist),
            ("--arch", self.arch.is_some(), JobName::Qqp),
            ("--len", self.len.is_some(), JobName::Qqp),
            ("--vocab-cap", self.vocab_cap.is_some(), JobName::Qqp),
        ]
    }

    /// Whether any flag is given.
    pub fn any(&self) -> bool {
        self.given().iter().any(|g| g.1)
    }

    /// Refuses flags that `job` does not take (`command` names it in the message, e.g.
    /// "kiln profile xor") and values out of range.
    pub fn check(&self, job: JobName, command: &str) -> Result<(), CliError> {
        for (flag, given, only) in self.given() {
            if given && job != only {
                return Err(CliError::usage(format!(
                    "{flag} applies to {} only; `{command}` does not take it",
                    only.as_str()
                )));
            }
        }
        check_len(self.len.unwrap_or(31))?;
        if self.vocab_cap == Some(0) {
            return Err(CliError::usage("--vocab-cap must be at least 1"));
        }
        Ok(())
    }

    /// The job's options from these flags (checked by [`JobFlags::check`]).
    pub fn options(&self) -> JobOptions {
        JobOptions {
            pool: self.pool.unwrap_or_default(),
            norm: self.norm.unwrap_or_default(),
            arch: self.arch.unwrap_or_default(),
            preprocess: crate::data::qqp::Preprocess {
                len: self.len.unwrap_or(31),
                vocab_cap: self.vocab_cap,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Refuses ids per question outside 1..=[`MAX_LEN`].
pub(crate) fn check_len(len: usize) -> Result<(), CliError> {
    if !(1..=MAX_LEN).contains(&len) {
        return Err(CliError::usage(format!(
            "--len {len}: ids per question must be in 1..={MAX_LEN} (the seed uses 31)"
        )));
    }
    Ok(())
}

/// Refuses a count of 0 where at least one is needed: `--limit 0 trains on nothing`.
pub(crate) fn at_least_one(flag: &str, value: Option<usize>, what: &str) -> Result<(), CliError> {
    if value == Some(0) {
        return Err(CliError::usage(format!("{flag} 0 {what}; give at least 1")));
    }
    Ok(())
}

/// `--task`: what a model file's data is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    /// One of a set of classes (the label column's distinct values, or the image subfolders).
    Classification,
    /// A number.
    Regression,
}

impl From<TaskArg> for kiln_data::Task {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::Classification => kiln_data::Task::Classification,
            TaskArg::Regression => kiln_data::Task::Regression,
        }
    }
}

/// Which optimizer trains, with Keras's defaults for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerArg {
    /// Adam (lr 0.001, beta1 0.9, beta2 0.999, eps 1e-7).
    Adam,
    /// Adam with decoupled weight decay 0.004 (Keras's AdamW).
    Adamw,
    /// RMSprop (lr 0.001, rho 0.9, eps 1e-7).
    Rmsprop,
    /// Stochastic gradient descent (lr 0.01, no momentum).
    Sgd,
}

impl From<OptimizerArg> for kiln_graph::OptimizerConfig {
    fn from(a: OptimizerArg) -> Self {
        use kiln_graph::OptimizerConfig as O;
        match a {
            OptimizerArg::Adam => O::adam(),
            OptimizerArg::Adamw => O::adamw(),
            OptimizerArg::Rmsprop => O::rmsprop(),
            OptimizerArg::Sgd => O::sgd(0.01, 0.0),
        }
    }
}

/// A learning-rate schedule for `kiln train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleArg {
    /// Cosine decay to 0 over the whole run, after --warmup steps rising from 0.
    Cosine,
    /// Keras's ReduceLROnPlateau defaults: the rate times 0.1 after 10 epochs without a better
    /// validation loss.
    Plateau,
}

/// How LSTM layers run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
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
