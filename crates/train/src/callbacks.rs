//! Callbacks: what a run does beside training. [`Progress`] draws bars and prints a line per
//! epoch, [`HistoryFiles`] writes `history.{csv,json,png}`, [`Checkpoints`] writes atomic
//! checkpoints, the best and the last model, and resumes. A user's own callback implements
//! [`Callback`]; all of them see the run through [`FitState`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use kiln_graph::checkpoint::{self, Checkpoint};
use kiln_graph::{Error, Model, Optimizer, ParamStore, Result};

use crate::fit::TrainConfig;
use crate::history::History;

/// The run as callbacks see it.
pub struct FitState<'a> {
    /// The model being trained.
    pub model: &'a dyn Model,
    /// Its parameters.
    pub params: &'a ParamStore,
    /// The optimizer (its step count is the number of steps taken).
    pub optimizer: &'a mut Optimizer,
    /// The settings.
    pub config: &'a TrainConfig,
    /// Every finished epoch; the last is the one just ended in `on_epoch_end`.
    pub history: History,
    /// The first epoch this run trains (after a resume, the one after the checkpoint's).
    pub first_epoch: usize,
    /// Steps in one epoch.
    pub steps_per_epoch: usize,
    /// Messages for the user (e.g. "resuming from ..."), printed by [`Progress`].
    pub notes: Vec<String>,
    /// Where checkpoints are kept, when a callback keeps them (named in a divergence error).
    pub checkpoints: Option<PathBuf>,
}

/// The end of one training step.
#[derive(Clone, Debug)]
pub struct BatchEnd {
    /// The epoch (from 1).
    pub epoch: usize,
    /// The step's index within the epoch (from 0).
    pub batch: usize,
    /// Steps taken in the whole run, this one included.
    pub step: u64,
    /// At each reporting interval: the epoch's mean loss and metric so far (the only point at
    /// which the device is read).
    pub running: Option<(f32, f32)>,
}

/// Hooks into [`Fit::run`](crate::Fit::run); every method defaults to doing nothing.
pub trait Callback {
    /// Before the first epoch; may restore state (resume) and set `first_epoch`.
    fn on_train_begin(&mut self, _state: &mut FitState) -> Result<()> {
        Ok(())
    }

    /// Before each epoch.
    fn on_epoch_begin(&mut self, _state: &FitState, _epoch: usize) -> Result<()> {
        Ok(())
    }

    /// After each step.
    fn on_batch_end(&mut self, _state: &FitState, _batch: &BatchEnd) -> Result<()> {
        Ok(())
    }

    /// After each epoch, validation included (`state.history.epochs.last()`).
    fn on_epoch_end(&mut self, _state: &FitState) -> Result<()> {
        Ok(())
    }

    /// After the last epoch.
    fn on_train_end(&mut self, _state: &FitState) -> Result<()> {
        Ok(())
    }

    /// When training stops on an error (a non-finite loss).
    fn on_stop(&mut self, _state: &FitState) {}
}

/// A callback lent to a run (`.callback(&mut mine)`), so that the caller reads what it gathered
/// afterwards.
impl<C: Callback + ?Sized> Callback for &mut C {
    fn on_train_begin(&mut self, state: &mut FitState) -> Result<()> {
        (**self).on_train_begin(state)
    }
    fn on_epoch_begin(&mut self, state: &FitState, epoch: usize) -> Result<()> {
        (**self).on_epoch_begin(state, epoch)
    }
    fn on_batch_end(&mut self, state: &FitState, batch: &BatchEnd) -> Result<()> {
        (**self).on_batch_end(state, batch)
    }
    fn on_epoch_end(&mut self, state: &FitState) -> Result<()> {
        (**self).on_epoch_end(state)
    }
    fn on_train_end(&mut self, state: &FitState) -> Result<()> {
        (**self).on_train_end(state)
    }
    fn on_stop(&mut self, state: &FitState) {
        (**self).on_stop(state)
    }
}

/// Progress on stderr, as Keras's `verbose`: a bar per epoch and a line at its end, or the
/// lines alone (logs, CI).
#[derive(Default)]
pub struct Progress {
    bar: Option<ProgressBar>,
    lines_only: bool,
}

impl Progress {
    /// Bars and epoch lines (Keras's `verbose=1`).
    pub fn new() -> Self {
        Progress::default()
    }

    /// One line per epoch, no bars (Keras's `verbose=2`).
    pub fn lines() -> Self {
        Progress {
            bar: None,
            lines_only: true,
        }
    }
}

impl Callback for Progress {
    fn on_train_begin(&mut self, state: &mut FitState) -> Result<()> {
        for note in state.notes.drain(..) {
            eprintln!("{note}");
        }
        Ok(())
    }

    fn on_epoch_begin(&mut self, state: &FitState, epoch: usize) -> Result<()> {
        if self.lines_only {
            return Ok(());
        }
        let bar = ProgressBar::new(state.steps_per_epoch as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{}", state.config.epochs));
        self.bar = Some(bar);
        Ok(())
    }

    fn on_batch_end(&mut self, state: &FitState, batch: &BatchEnd) -> Result<()> {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if let Some((loss, metric)) = batch.running {
                bar.set_message(format!(
                    "loss {loss:.4} {} {metric:.4}",
                    state.history.metric
                ));
            }
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, state: &FitState) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let e = state.history.epochs.last().expect("an epoch ended");
        let m = &state.history.metric;
        let val_text = match (e.val_loss, e.val_metric) {
            (Some(l), Some(a)) => format!(" - val_loss {l:.4} - val_{m} {a:.4}"),
            _ => String::new(),
        };
        eprintln!(
            "epoch {}/{} - {:.1}s - loss {:.4} - {m} {:.4}{val_text} - {:.0} samples/s - per step: {:.0} dispatches, {:.1} submits, {:.2} readbacks",
            e.epoch,
            state.config.epochs,
            e.seconds,
            e.loss,
            e.metric,
            e.samples_per_sec,
            e.dispatches_per_step,
            e.submits_per_step,
            e.readbacks_per_step
        );
        Ok(())
    }

    fn on_stop(&mut self, _state: &FitState) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

/// `history.csv`, `history.json` and `history.png` in a folder, after every epoch.
pub struct HistoryFiles {
    out: PathBuf,
}

impl HistoryFiles {
    /// Writes into `out`.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        HistoryFiles { out: out.into() }
    }
}

impl Callback for HistoryFiles {
    fn on_epoch_end(&mut self, state: &FitState) -> Result<()> {
        write_history(&state.history, &self.out)
    }
}

/// history.csv, history.json, history.png in `out`.
pub fn write_history(history: &History, out: &Path) -> Result<()> {
    history.write_csv(&out.join("history.csv"))?;
    history.write_json(&out.join("history.json"))?;
    history.plot(&out.join("history.png"), "training history")
}

/// The files a run leaves in its folder (besides `checkpoints/`).
const ARTEFACTS: [&str; 5] = [
    "model.safetensors",
    "best.safetensors",
    "history.json",
    "history.csv",
    "history.png",
];

/// The lock file a run holds in its folder.
pub const LOCK_FILE: &str = ".kiln.lock";

/// What a previous run left in `out`: its model files, history files and checkpoints.
pub fn artefacts(out: &Path) -> Vec<String> {
    let mut found: Vec<String> = ARTEFACTS
        .iter()
        .filter(|f| out.join(f).exists())
        .map(|f| f.to_string())
        .collect();
    let checkpoints = checkpoint::all(&out.join("checkpoints")).len();
    if checkpoints > 0 {
        found.push(format!("{checkpoints} checkpoint(s)"));
    }
    found
}

/// Whether a run may start in `out`: with `resume` there must be a checkpoint to continue from;
/// without it the folder must hold no earlier run unless `force` (which replaces it).
pub fn check_run_folder(out: &Path, resume: bool, force: bool) -> Result<()> {
    let bad = |message: String| Error::Checkpoint {
        path: out.to_path_buf(),
        message,
    };
    if resume {
        if checkpoint::latest(&out.join("checkpoints")).is_none() {
            return Err(bad(
                "nothing to resume: the folder holds no checkpoint (train without --resume to start a run there)".into(),
            ));
        }
        return Ok(());
    }
    let found = artefacts(out);
    if !found.is_empty() && !force {
        return Err(bad(format!(
            "holds an earlier run ({}); pass --resume to continue it, --force to replace it, or choose another folder",
            found.join(", ")
        )));
    }
    Ok(())
}

/// Removes temporary files an interrupted write left in `dir` (`.tmp*`, from atomic writes).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp") && e.path().is_file() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Checkpoints in `out/checkpoints/epoch-NNNN.safetensors` (atomically, after every epoch:
/// parameters, optimizer state, epoch, step, seed, configs; the newest `keep` are kept, 3 by
/// default), the history once in `out/checkpoints/history.json`, `out/best.safetensors` (the
/// epoch with the best validation metric so far) and `out/model.safetensors` (the last).
///
/// The run owns its folder: it holds an exclusive lock on `out/.kiln.lock` while it trains (a
/// second run into the same folder is refused), refuses a folder that holds an earlier run
/// unless it resumes it or is told to replace it (`force`), and removes temporary files that an
/// interrupted write left behind. With `resume`, the run continues from the newest checkpoint
/// and reaches the same weights as an uninterrupted run on the same device.
pub struct Checkpoints {
    out: PathBuf,
    resume: bool,
    force: bool,
    keep: usize,
    metadata: Vec<(String, String)>,
    lock: Option<std::fs::File>,
}

impl Checkpoints {
    /// Keeps checkpoints and models in `out`; `metadata` (e.g. a tokenizer's vocabulary) goes
    /// into every file, so that a model file is self-contained.
    pub fn new(out: impl Into<PathBuf>, resume: bool, metadata: Vec<(String, String)>) -> Self {
        Checkpoints {
            out: out.into(),
            resume,
            force: false,
            keep: 3,
            metadata,
            lock: None,
        }
    }

    /// Replace an earlier run in the folder instead of refusing it.
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Keep the newest `keep` epoch checkpoints (at least 1; the best model is kept apart).
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep;
        self
    }

    fn dir(&self) -> PathBuf {
        self.out.join("checkpoints")
    }

    fn history_path(&self) -> PathBuf {
        self.dir().join("history.json")
    }

    /// Takes the folder's lock, or says which run holds it.
    fn lock(&mut self) -> Result<()> {
        let path = self.out.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                self.lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Checkpoint {
                path: self.out.clone(),
                message: "another kiln run is training into this folder (it holds .kiln.lock); wait for it to finish, or choose another folder".into(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

impl Callback for Checkpoints {
    fn on_train_begin(&mut self, state: &mut FitState) -> Result<()> {
        if self.keep == 0 {
            return Err(Error::model(
                "keep",
                "0 checkpoints leaves nothing to resume from; keep at least 1",
            ));
        }
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        self.lock()?;
        remove_stale_temps(&self.out);
        remove_stale_temps(&dir);
        check_run_folder(&self.out, self.resume, self.force)?;
        state.checkpoints = Some(dir.clone());
        if !self.resume {
            // --force: the earlier run's files go, so that nothing of it is mistaken for this one's.
            for f in ARTEFACTS {
                let _ = std::fs::remove_file(self.out.join(f));
            }
            let _ = std::fs::remove_file(self.history_path());
            for (_, p) in checkpoint::all(&dir) {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
            return Ok(());
        }
        let (epoch, path) = checkpoint::latest(&dir).expect("checked by check_run_folder");
        let ck = Checkpoint::load(&path)?;
        if let (Some(saved), Some(ours)) = (ck.meta("model_config"), state.model.config_json()) {
            if saved != ours {
                return Err(Error::Checkpoint {
                    path,
                    message: "it was written by a different model configuration".into(),
                });
            }
        }
        // The data the run was started on: its vocabulary, how its files are read. A run
        // resumed on other data would train on ids or columns that mean something else.
        for (key, ours) in &self.metadata {
            if ck.meta(key).is_some_and(|saved| saved != ours) {
                return Err(Error::Checkpoint {
                    path,
                    message: format!(
                        "it was written for other data: its `{key}` differs from this run's (the data or how it is read changed); resume with the data and the flags the run began with, or start a new run with --out"
                    ),
                });
            }
        }
        state.params.load(&ck.params)?;
        let (step, m, v) = ck.optimizer.clone().ok_or_else(|| Error::Checkpoint {
            path: path.clone(),
            message: "no optimizer state".into(),
        })?;
        state.optimizer.load_state(state.params, step, &m, &v)?;
        // The history: in the checkpoint (files of earlier versions), else the run's history
        // file, cut to the checkpoint's epoch (a kill between the two writes leaves it ahead).
        let history = match ck.meta("history") {
            Some(h) => Some(h.to_string()),
            None => std::fs::read_to_string(self.history_path()).ok(),
        };
        if let Some(h) = history {
            let mut restored: History =
                serde_json::from_str(&h).map_err(|e| Error::Checkpoint {
                    path: path.clone(),
                    message: format!("history: {e}"),
                })?;
            restored.epochs.retain(|e| e.epoch <= epoch);
            state.history = restored;
        } else {
            state
                .notes
                .push("the run's history file is missing: the history restarts here".into());
        }
        state.first_epoch = epoch + 1;
        state.notes.push(format!(
            "resuming from {} (epoch {epoch}, step {step})",
            path.display()
        ));
        Ok(())
    }

    fn on_epoch_end(&mut self, state: &FitState) -> Result<()> {
        let e = state.history.epochs.last().expect("an epoch ended");
        let epoch = e.epoch;
        let cfg = state.config;
        // The history first: a kill before the checkpoint lands leaves it one epoch ahead,
        // which resuming cuts back.
        checkpoint::write_atomic(
            &self.history_path(),
            serde_json::to_string(&state.history)
                .expect("serializes")
                .as_bytes(),
        )?;
        let mut metadata: HashMap<String, String> = self.metadata.iter().cloned().collect();
        metadata.insert("epoch".into(), epoch.to_string());
        metadata.insert("seed".into(), cfg.seed.to_string());
        // Every random draw derives from these: the epoch's shuffle from (seed, epoch), each
        // step's dropout key from (seed, step); restoring them restores the generators exactly.
        let rng = serde_json::json!({"seed": cfg.seed, "epoch": epoch, "step": state.optimizer.steps(), "shuffle": "StdRng(seed, epoch)", "dropout": "Threefry-2x32 key seed ^ (step + 1) * 0x9E3779B97F4A7C15"});
        metadata.insert("rng_state".into(), rng.to_string());
        if let Some(c) = state.model.config_json() {
            metadata.insert("model_config".into(), c);
        }
        metadata.insert(
            "train_config".into(),
            serde_json::to_string(cfg).expect("serializes"),
        );
        Checkpoint {
            params: state.params.to_host()?,
            optimizer: Some(state.optimizer.state(state.params)?),
            metadata,
        }
        .save(&checkpoint::epoch_path(&self.dir(), epoch))?;
        let all = checkpoint::all(&self.dir());
        for (_, old) in &all[..all.len().saturating_sub(self.keep)] {
            std::fs::remove_file(old).map_err(|e| Error::io(old, e))?;
        }
        // The best epoch so far by the validation metric is kept as a model of its own: a run
        // that overfits later does not lose it.
        if e.val_metric.is_some() && state.history.best_val().map(|b| b.0) == Some(epoch) {
            save_model(
                &self.out.join("best.safetensors"),
                state.model,
                state.params,
                &self.metadata,
            )?;
        }
        Ok(())
    }

    fn on_train_end(&mut self, state: &FitState) -> Result<()> {
        save_model(
            &self.out.join("model.safetensors"),
            state.model,
            state.params,
            &self.metadata,
        )
    }
}

/// Writes a model: its weights by name plus, when the model describes itself, the config that
/// rebuilds it (`model_config`), and `extra` metadata.
pub fn save_model(
    path: &Path,
    model: &dyn Model,
    params: &ParamStore,
    extra: &[(String, String)],
) -> Result<()> {
    let mut metadata = extra.to_vec();
    if let Some(c) = model.config_json() {
        metadata.push(("model_config".into(), c));
    }
    params.save_weights(path, &metadata)
}

/// Reads a saved model's config (to rebuild it: any type the config deserializes into) and its
/// weights.
pub fn load_model<C: serde::de::DeserializeOwned>(path: &Path) -> Result<(C, Checkpoint)> {
    let ck = Checkpoint::load(path)?;
    let cfg = ck.meta("model_config").ok_or_else(|| Error::Checkpoint {
        path: path.into(),
        message: "no model_config in metadata: build the model in code and load its weights with ParamStore::load_weights".into(),
    })?;
    let cfg = serde_json::from_str(cfg).map_err(|e| Error::Checkpoint {
        path: path.into(),
        message: format!("model_config: {e}"),
    })?;
    Ok((cfg, ck))
}
