//! `kiln train`: a built-in job, a model file on a job's data, or a model file on data of one's
//! own.

use kiln_device::{Device, DeviceChoice};
use std::path::{Path, PathBuf};

use crate::cli::flags::{at_least_one, JobFlags, LstmArg, OptimizerArg, ScheduleArg, TaskArg};
use crate::cli::{outln, Classify, CliError, LazyDevice};
use crate::models::{Job, JobName, ModelConfig};

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
    task: Option<TaskArg>,
    /// --model --data: the label column (default: the one named label, else target, class or y,
    /// else the last).
    #[arg(long)]
    label: Option<String>,
    /// --model --data: the input columns, comma-separated (default: all but the label).
    #[arg(long, value_delimiter = ',')]
    columns: Option<Vec<String>>,
    #[command(flatten)]
    job_flags: JobFlags,
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
    /// Data-parallel training over several devices, one replica each: `all` (every hardware
    /// GPU) or a comma-separated list of what --device takes (`0,1`: the adapters `kiln info`
    /// numbers 0 and 1; `cpu,cpu`; `gpu,gpu`: the software adapter twice). Each --batch is split
    /// between them; the run trains what one device would, within float rounding. Replaces
    /// --device.
    #[arg(long, value_name = "LIST")]
    devices: Option<String>,
    /// The optimizer, with Keras's defaults for it (default: the job's; Adam for model files).
    /// A resumed run needs the one it began with.
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// Learning rate (default: the job's, or the --optimizer's default); a schedule's peak.
    #[arg(long)]
    lr: Option<f32>,
    /// A learning-rate schedule (default: none, the rate stays).
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// Scale the gradients so that their global L2 norm is at most this (Keras's
    /// global_clipnorm; computed on the device).
    #[arg(long, value_name = "NORM", conflicts_with = "clip_value")]
    clip_norm: Option<f32>,
    /// Limit each gradient to [-V, V] (Keras's clipvalue).
    #[arg(long, value_name = "V")]
    clip_value: Option<f32>,
    /// --schedule cosine: steps of a linear warmup from 0 before the decay.
    #[arg(long, value_name = "STEPS", requires = "schedule")]
    warmup: Option<u64>,
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
    /// Stop when the validation loss has not improved for N epochs, keeping the best epoch's
    /// weights (Keras's EarlyStopping(patience=N, restore_best_weights=True)): model.safetensors
    /// then holds the epoch of the lowest validation loss, best.safetensors as always the epoch of
    /// the best validation metric.
    #[arg(long, value_name = "N")]
    patience: Option<usize>,
    /// Metrics tracked beside the loss's own, comma-separated Keras names: accuracy, mae, mse,
    /// binary_crossentropy, categorical_crossentropy, precision, recall, auc,
    /// top_k_categorical_accuracy (k = 5; top_K_categorical_accuracy for another K). In the
    /// history files, progress lines and TensorBoard, and watchable by --monitor (val_auc).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    metrics: Vec<kiln_graph::TrackedMetric>,
    /// What best.safetensors follows, by Keras's name: loss, val_loss, accuracy, val_accuracy
    /// (mae, val_mae for regression), a tracked metric (auc, val_auc); losses lowest, the
    /// metrics in their direction (default: the validation metric).
    #[arg(long, value_name = "NAME")]
    monitor: Option<String>,
    /// Write TensorBoard event files under DIR (`train/` and `validation/`, as Keras's
    /// TensorBoard callback): `tensorboard --logdir DIR`.
    #[arg(long, value_name = "DIR")]
    tensorboard: Option<PathBuf>,
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

impl TrainArgs {
    /// Which target the arguments name, or why they name none.
    fn target(&self) -> Result<Target, CliError> {
        match (self.job, &self.model, &self.data) {
            (Some(j), _, _) => Ok(Target::Job(j)),
            (None, Some(_), Some(_)) => Ok(Target::Files),
            (None, Some(_), None) => Err(CliError::usage(
                "--model needs data: --data FILE (a CSV) or --data DIR (an image folder), or a built-in job's data: `kiln train mnist --model FILE`",
            )),
            (None, None, _) => Ok(Target::Job(JobName::Spirals)),
        }
    }

    /// Refuses flags the target does not take and values out of range, before anything is read
    /// or allocated.
    pub fn validate(&self) -> Result<(), CliError> {
        let target = self.target()?;
        self.check_flags(target)?;
        self.check_numbers()
    }

    fn check_flags(&self, target: Target) -> Result<(), CliError> {
        use JobName::*;
        match target {
            Target::Job(j) => self.job_flags.check(j, &target.to_string())?,
            Target::Files if self.job_flags.any() => {
                return Err(CliError::usage(format!(
                    "--pool, --arch, --len and --vocab-cap shape the built-in jobs; `{target}` does not take them"
                )))
            }
            Target::Files => {}
        }
        let job = Target::Job;
        let takes = |ts: &[Target]| ts.contains(&target);
        let files_or = |jobs: &[JobName]| {
            jobs.iter()
                .map(|&j| job(j))
                .chain([Target::Files])
                .collect::<Vec<_>>()
        };
        let flags: [(&str, bool, Vec<Target>, &str); 7] = [
            (
                "--strict",
                self.strict,
                files_or(&[Qqp]),
                "qqp and --model --data",
            ),
            (
                "--split-seed",
                self.split_seed.is_some(),
                files_or(&[Qqp]),
                "qqp and --model --data",
            ),
            (
                "--data",
                self.data.is_some(),
                files_or(&[Mnist, Qqp]),
                "mnist, qqp and --model",
            ),
            (
                "--limit",
                self.limit.is_some(),
                files_or(&[Mnist, Qqp]),
                "mnist, qqp and --model --data",
            ),
            (
                "--task",
                self.task.is_some(),
                vec![Target::Files],
                "--model --data",
            ),
            (
                "--label",
                self.label.is_some(),
                vec![Target::Files],
                "--model --data",
            ),
            (
                "--columns",
                self.columns.is_some(),
                vec![Target::Files],
                "--model --data",
            ),
        ];
        for (flag, given, targets, who) in flags {
            if given && !takes(&targets) {
                return Err(CliError::usage(format!(
                    "{flag} applies to {who} only; `{target}` does not take it"
                )));
            }
        }
        let with_model = self.model.is_some();
        if with_model && (self.job_flags.pool.is_some() || self.job_flags.arch.is_some()) {
            return Err(CliError::usage(
                "--pool and --arch shape the built-in models; with --model the model file sets its layers",
            ));
        }
        Ok(())
    }

    /// Gradient clipping from --clip-norm or --clip-value (clap keeps them apart).
    fn clip(&self) -> Option<kiln_graph::GradClip> {
        use kiln_graph::GradClip;
        self.clip_norm
            .map(GradClip::GlobalNorm)
            .or(self.clip_value.map(GradClip::Value))
    }

    /// The run's schedule: a cosine spans every step of the run after the warmup.
    fn schedule(&self, job: &Job) -> Result<Option<kiln_train::LrSchedule>, CliError> {
        let warmup = self.warmup.unwrap_or(0);
        Ok(match self.schedule {
            None => None,
            Some(ScheduleArg::Plateau) if self.warmup.is_some() => {
                return Err(CliError::usage(
                    "--warmup is for --schedule cosine; a plateau schedule starts at the rate",
                ))
            }
            Some(ScheduleArg::Plateau) => Some(kiln_train::LrSchedule::plateau()),
            Some(ScheduleArg::Cosine) => {
                let cfg = &job.config;
                let steps = (job.train.len().div_ceil(cfg.batch.max(1)) * cfg.epochs) as u64;
                if warmup >= steps {
                    return Err(CliError::usage(format!(
                        "--warmup {warmup} leaves no step of the run's {steps} to decay over"
                    )));
                }
                Some(kiln_train::LrSchedule::cosine_with_warmup(
                    steps - warmup,
                    warmup,
                ))
            }
        })
    }

    /// The flags that set training numbers (epochs, batch, optimizer, rate, clipping) over a
    /// job's or a default configuration.
    fn apply_settings(&self, cfg: &mut kiln_train::TrainConfig) {
        cfg.epochs = self.epochs.unwrap_or(cfg.epochs);
        cfg.batch = self.batch.unwrap_or(cfg.batch);
        if let Some(o) = self.optimizer {
            cfg.optimizer = o.into();
        }
        if let Some(lr) = self.lr {
            cfg.optimizer = cfg.optimizer.with_lr(lr);
        }
        cfg.clip = self.clip();
        if !self.metrics.is_empty() {
            cfg.metrics = self.metrics.clone();
        }
    }

    fn check_numbers(&self) -> Result<(), CliError> {
        let mut probe = kiln_train::TrainConfig::new(kiln_graph::LossKind::MeanSquaredError);
        self.apply_settings(&mut probe);
        probe
            .validate()
            .map_err(|e| CliError::usage(format!("--{e}")))?;
        at_least_one("--limit", self.limit, "trains on nothing")?;
        if self.keep == 0 {
            return Err(CliError::usage(
                "--keep 0 leaves nothing to resume from; keep at least 1",
            ));
        }
        Ok(())
    }

    /// The job: a built-in one (maybe with a model file of one's own), or a model file on data.
    fn job(&self) -> Result<Job, CliError> {
        let model_file = self.model.as_deref().map(read_model_file).transpose()?;
        let (model_file, training) = match model_file {
            Some((config, training)) => (Some(config), training),
            None => (None, Default::default()),
        };
        let mut job = self.job_for(model_file)?;
        // The model file's training section; --metrics (applied after) overrides it.
        if !training.metrics.is_empty() {
            job.config.metrics = training.metrics;
        }
        Ok(job)
    }

    /// [`Self::job`] for the model file's model, if any.
    fn job_for(&self, model_file: Option<ModelConfig>) -> Result<Job, CliError> {
        match self.target()? {
            Target::Job(name) => {
                let mut opts = self.job_flags.options();
                opts.data = self.data.clone();
                opts.limit = self.limit;
                opts.strict = self.strict;
                opts.preprocess.split_seed = self.split_seed.unwrap_or(2019);
                let mut job = crate::models::job(name, self.seed, &opts).data()?;
                if let (Some(config), Some(path)) = (model_file, &self.model) {
                    swap_model(&mut job, config, path)?;
                }
                Ok(job)
            }
            Target::Files => self.files_job(model_file.expect("Files has a model")),
        }
    }

    /// A model file on a data file: read the way a resumed run reads its data.
    fn files_job(&self, model: ModelConfig) -> Result<Job, CliError> {
        let path = self.model.as_deref().expect("Files has a model");
        let data = self.data.as_deref().expect("Files has data");
        let name = path
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().to_string());
        let resume = if self.resume {
            let out = self
                .out
                .clone()
                .unwrap_or_else(|| crate::models::default_out(&name, true));
            resumed_spec(&out, &model)?
        } else {
            None
        };
        if let Some(spec) = &resume {
            spec.check_options(
                self.task.map(Into::into),
                self.label.as_deref(),
                self.columns.as_deref(),
            )
            .map_err(|e| CliError::usage(format!("--resume: {e}")))?;
        }
        let opts = crate::files::FileOptions {
            task: self.task.map(Into::into),
            label: self.label.clone(),
            columns: self.columns.clone(),
            strict: self.strict,
            split_seed: self.split_seed.unwrap_or(2019),
            limit: self.limit,
            resume,
            ..Default::default()
        };
        let mut job = crate::files::job(model, data, self.seed, &opts)
            .map_err(|e| CliError::data(format!("{}: {e}", path.display())))?;
        job.name = name;
        Ok(job)
    }

    /// Trains: the job, the run folder's checks, the model, `fit`, the final figures.
    pub fn run(self, device: &LazyDevice) -> Result<(), CliError> {
        let mut job = self.job()?;
        self.apply_settings(&mut job.config);
        job.config.schedule = self.schedule(&job)?;
        job.config.validate().usage()?;
        let no_val = job.val.as_ref().is_none_or(|v| v.is_empty());
        if self.patience.is_some() && no_val {
            return Err(CliError::usage(
                "--patience watches the validation loss, and this run has no validation set",
            ));
        }
        if self.schedule == Some(ScheduleArg::Plateau) && no_val {
            return Err(CliError::usage(
                "--schedule plateau watches the validation loss, and this run has no validation set",
            ));
        }
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| crate::models::default_out(&job.name, self.resume));
        // Under mpirun, rank 0 writes the run folder and prints; the others train beside it.
        let group = crate::cli::group::current();
        if let (None, Some(ranks)) = (&group, crate::cli::group::launched_ranks()) {
            return Err(CliError::usage(format!(
                "started by an MPI launcher as one of {ranks} ranks, but this kiln was built without the mpi feature (each rank would train alone): build it with `cargo build --release --features mpi`"
            )));
        }
        let root = group.as_ref().is_none_or(|g| g.rank() == 0);
        // Checked again under the folder's lock when training starts; here, before any allocation.
        if root {
            kiln_train::check_run_folder(&out, self.resume, self.force).usage()?;
        }
        let replicas = self.run_devices(device, group.as_deref())?;
        let (device, others) = replicas.split_first().expect("at least one device");
        for d in &replicas {
            d.set_lstm_path(self.lstm.into());
        }
        let builder = kiln_graph::ParamBuilder::new(self.seed);
        let model = job.model.init(&builder).data()?;
        let params = builder.build(device).runtime()?;
        if let Some(report) = job.data_report.as_ref().filter(|_| root) {
            eprintln!("data: {report}");
        }
        if !self.quiet && root {
            let on = replicas
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(" + ");
            eprintln!(
                "training {} on {on}\n{}",
                job.name,
                model.summary_table(&params)
            );
        }
        let opts = kiln_train::RunOptions {
            out: root.then(|| out.clone()),
            resume: self.resume,
            force: self.force,
            keep: Some(self.keep),
            verbose: match (root, self.quiet) {
                (false, _) => 0,
                (true, true) => 2,
                (true, false) => 1,
            },
            group: group.clone().map(kiln_train::Group),
            metadata: job.metadata.clone(),
            patience: self.patience,
            tensorboard: self.tensorboard.clone().filter(|_| root),
            monitor: self.monitor.clone(),
            replicas: others.to_vec(),
        };
        let trained = kiln_train::fit(
            &*model,
            &params,
            &job.train,
            job.val.as_ref(),
            &job.config,
            &opts,
        )
        .map_err(CliError::train)?;
        if !root {
            return Ok(());
        }
        let objective = job.config.loss.expect("every job has a loss");
        let (loss, metric) =
            kiln_train::evaluate(&*model, &params, &job.train, job.config.batch, &objective)
                .map_err(CliError::train)?;
        let name = trained.history.metric.as_deref().unwrap_or("loss");
        match metric {
            Some(m) => outln!("final training loss {loss:.4}, {name} {m:.4}"),
            None => outln!("final training loss {loss:.4}"),
        }
        if let Some((epoch, a)) = trained.history.best_val() {
            outln!("best validation {name} {a:.4} at epoch {epoch}");
        }
        outln!("wrote {}", out.display());
        Ok(())
    }
}

impl TrainArgs {
    /// The devices this process trains on: `--devices` (under mpirun, this rank's entry of it,
    /// round robin), else `--device`.
    fn run_devices(
        &self,
        device: &LazyDevice,
        group: Option<&dyn kiln_graph::Collective>,
    ) -> Result<Vec<Device>, CliError> {
        Ok(match (&self.devices, group) {
            (Some(list), Some(g)) => {
                let choices = device_choices(list)?;
                vec![open_device(&choices[g.rank() % choices.len()])?]
            }
            (Some(list), None) => device_choices(list)?
                .iter()
                .map(open_device)
                .collect::<Result<_, _>>()?,
            (None, _) => vec![device.get()?.clone()],
        })
    }
}

/// The devices `--devices` names: `all` (every hardware GPU, best first) or a comma-separated
/// list of device choices.
fn device_choices(list: &str) -> Result<Vec<DeviceChoice>, CliError> {
    let choices: Vec<DeviceChoice> = if list.trim().eq_ignore_ascii_case("all") {
        let hardware: Vec<DeviceChoice> = kiln_device::list_adapters()
            .iter()
            .enumerate()
            .filter(|(_, a)| a.device_type != "Cpu")
            .map(|(i, _)| DeviceChoice::Adapter(i))
            .collect();
        if hardware.is_empty() {
            return Err(CliError::usage(
                "--devices all: this machine has no hardware GPU (`kiln info` lists its adapters); give a list instead, e.g. --devices cpu,cpu or --devices gpu,gpu",
            ));
        }
        hardware
    } else {
        list.split(',')
            .map(|c| {
                c.parse::<DeviceChoice>()
                    .map_err(|e| CliError::usage(format!("--devices {list:?}: {e}")))
            })
            .collect::<Result<_, _>>()?
    };
    if choices.is_empty() {
        return Err(CliError::usage("--devices: give at least one device"));
    }
    Ok(choices)
}

/// Opens one device of `--devices`, saying on stderr what its opening noted.
fn open_device(choice: &DeviceChoice) -> Result<Device, CliError> {
    let d = Device::new(choice).runtime()?;
    if let Some(note) = d.note() {
        eprintln!("kiln: {note}");
    }
    Ok(d)
}

/// Reads a model file, and says on stderr which fields it left out took their defaults.
pub(crate) fn read_model_file(
    path: &Path,
) -> Result<(ModelConfig, crate::models::TrainingSection), CliError> {
    let (config, defaults, training) = ModelConfig::read_file(path).data()?;
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
    Ok((config, training))
}

/// Puts a model file's model on a built-in job's data, checking that it reads that data.
pub(crate) fn swap_model(job: &mut Job, config: ModelConfig, path: &Path) -> Result<(), CliError> {
    let o = config
        .outline()
        .map_err(|e| CliError::data(format!("model file {}: {e}", path.display())))?;
    let input = job.train.input();
    let ids = matches!(input.values, kiln_train::Values::Ids(_));
    if o.input != input.shape || o.takes_ids != ids {
        return Err(CliError::data(format!(
            "model file {}: takes {} of shape {:?}, but {}'s data is {} of shape {:?}; set \"input\" to {:?}{}",
            path.display(),
            if o.takes_ids { "ids" } else { "values" },
            o.input,
            job.name,
            if ids { "ids" } else { "values" },
            input.shape,
            input.shape,
            if ids { " and start with an embedding" } else { "" }
        )));
    }
    if let (Some(v), kiln_train::Values::Ids(all)) = (o.vocab, &input.values) {
        let need = all.iter().max().map_or(0, |&m| m as usize + 1);
        if v < need {
            return Err(CliError::data(format!(
                "model file {}: the embedding has {v} rows but {}'s data uses ids up to {}; set \"vocab\" to at least {need}",
                path.display(),
                job.name,
                need - 1
            )));
        }
    }
    job.model = config;
    Ok(())
}

/// How the run in `out` reads its data, for `--resume` of a model file on a data file: the
/// new file is read the same way and refused where it does not match. None when the folder
/// holds no checkpoint (training refuses that: nothing to resume).
fn resumed_spec(
    out: &Path,
    model: &ModelConfig,
) -> Result<Option<crate::files::DataSpec>, CliError> {
    let Some((_, path)) = kiln_train::checkpoints::latest(&out.join("checkpoints")) else {
        return Ok(None);
    };
    let ck = kiln_graph::checkpoint::Checkpoint::load(&path).data()?;
    let meta = ck.meta(crate::files::META_KEY).ok_or_else(|| {
        CliError::usage(format!(
            "--resume: the run in {} was not trained from a data file (it has no `{}`); resume it as it was started, or start a new run with --out",
            out.display(),
            crate::files::META_KEY
        ))
    })?;
    let outline = model.outline().data()?;
    crate::files::DataSpec::from_meta(meta, &outline)
        .map(Some)
        .map_err(|e| CliError::data(format!("--resume: {}: {e}", path.display())))
}
