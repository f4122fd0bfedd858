//! A run's folder and its checkpoints. [`Checkpoints`] writes an atomic checkpoint after every
//! epoch, the best and the last model, and resumes a run; [`Fit`](crate::Fit) calls it directly
//! (it is not a [`Callback`](crate::Callback)): it restores the run's state before any callback
//! starts, and what it has to say reaches every callback through their log hook.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_graph::checkpoint::{self, Checkpoint};

use crate::callback::FitState;
use crate::history::History;
use crate::saved::save_model;
use crate::{Error, Result};

/// `dir/epoch-0007.safetensors`.
pub fn epoch_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("epoch-{epoch:04}.safetensors"))
}

/// The checkpoint with the highest epoch number in `dir`, if any.
pub fn latest(dir: &Path) -> Option<(usize, PathBuf)> {
    all(dir).pop()
}

/// Every checkpoint in `dir` (`epoch-NNNN.safetensors`), oldest first.
pub fn all(dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix("epoch-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
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
    let checkpoints = all(&out.join("checkpoints")).len();
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
        if latest(&out.join("checkpoints")).is_none() {
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

/// The metadata key of a saved model's tracked metrics: a JSON list of their names.
pub const METRICS_KEY: &str = "metrics";

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
    /// What `best.safetensors` follows, by Keras's name (None: the validation metric, else
    /// the validation loss); checked when the run begins.
    monitor: Option<String>,
    watch: Option<crate::Monitor>,
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
            monitor: None,
            watch: None,
        }
    }

    /// `best.safetensors` follows the figure `name` names (Keras's `ModelCheckpoint(monitor,
    /// save_best_only=True, mode="auto")`): `loss`, `val_loss`, the metric or `val_` and the
    /// metric; lower is better for losses, the metric's direction for it.
    pub fn monitor(mut self, name: impl Into<String>) -> Self {
        self.monitor = Some(name.into());
        self
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

    /// Where the checkpoints are kept (`out/checkpoints`).
    pub fn dir(&self) -> PathBuf {
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

impl Checkpoints {
    /// Before the first epoch: takes the folder's lock, checks the folder, and on a resume
    /// restores the parameters, the optimizer, the history and the first epoch from the newest
    /// checkpoint. Returns what to tell the user.
    pub(crate) fn begin(&mut self, state: &mut FitState) -> Result<Vec<String>> {
        if self.keep == 0 {
            return Err(Error::config(
                "keep",
                "0 checkpoints leaves nothing to resume from; keep at least 1",
            ));
        }
        if let Some(name) = &self.monitor {
            let history = &state.history;
            let watch = crate::Monitor::parse(name, history)
                .filter(|m| m.computed(history, state.validates))
                .ok_or_else(|| {
                    use crate::Monitor::*;
                    let names: Vec<String> = [Loss, Metric, ValLoss, ValMetric]
                        .into_iter()
                        .filter(|m| m.computed(history, state.validates))
                        .map(|m| m.name(history))
                        .collect();
                    Error::config(
                        "monitor",
                        format!(
                            "{name} is not a figure this run computes; it has {}",
                            names.join(", ")
                        ),
                    )
                })?;
            self.watch = Some(watch);
        }
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        self.lock()?;
        remove_stale_temps(&self.out);
        remove_stale_temps(&dir);
        check_run_folder(&self.out, self.resume, self.force)?;
        if !self.resume {
            // --force: the earlier run's files go, so that nothing of it is mistaken for this one's.
            for f in ARTEFACTS {
                let _ = std::fs::remove_file(self.out.join(f));
            }
            let _ = std::fs::remove_file(self.history_path());
            let _ = std::fs::remove_file(dir.join(crate::early_stopping::BEST_WEIGHTS_FILE));
            for (_, p) in all(&dir) {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            }
            return Ok(vec![]);
        }
        self.restore(state, &dir)
    }

    /// Restores a resumed run's state from the newest checkpoint in `dir`, refusing one written
    /// by another model or for other data.
    fn restore(&self, state: &mut FitState, dir: &Path) -> Result<Vec<String>> {
        let mut notes = vec![];
        let (epoch, path) = latest(dir).expect("checked by check_run_folder");
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
        // The optimizer's state means what its kind says: Adam's moments are no RMSprop mean
        // square. Its settings (a new learning rate) may change; its kind may not.
        let saved = ck
            .meta("train_config")
            .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
            .and_then(|c| c["optimizer"]["type"].as_str().map(str::to_string));
        let ours = state.config.optimizer.name();
        if let Some(saved) = saved.filter(|s| s != ours) {
            return Err(Error::Checkpoint {
                path,
                message: format!(
                    "it was written by a run that trained with {saved}, and this run asks for {ours}; resume with --optimizer {saved}, or start a new run with --out"
                ),
            });
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
            // Each epoch's tracked values are in the order of the run's metrics: a resume
            // that names none keeps the run's, one that names others is refused.
            let ours = &state.history.tracked;
            if !ours.is_empty() && restored.tracked != *ours {
                let names = |h: &History| -> String {
                    let names: Vec<String> = h.tracked.iter().map(|m| m.name()).collect();
                    names.join(",")
                };
                let (saved, ours) = (names(&restored), names(&state.history));
                return Err(Error::Checkpoint {
                    path,
                    message: format!(
                        "it tracked the metrics [{saved}], and this run asks for [{ours}]; resume with the metrics the run began with (--metrics {saved}), or start a new run with --out"
                    ),
                });
            }
            state.history = restored;
        } else {
            notes.push("the run's history file is missing: the history restarts here".into());
        }
        state.first_epoch = epoch + 1;
        notes.push(format!(
            "resuming from {} (epoch {epoch}, step {step})",
            path.display()
        ));
        Ok(notes)
    }

    /// After each epoch: the history, the checkpoint, the best model.
    pub(crate) fn epoch_end(&mut self, state: &FitState) -> Result<()> {
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
        .save(&epoch_path(&self.dir(), epoch))?;
        let all = all(&self.dir());
        for (_, old) in &all[..all.len().saturating_sub(self.keep)] {
            std::fs::remove_file(old).map_err(|e| Error::io(old, e))?;
        }
        // The best epoch so far by the validation metric (or the monitored figure) is kept as a
        // model of its own: a run that overfits later does not lose it.
        let best = match self.watch {
            Some(m) => state.history.best_by(m),
            None if e.val_loss.is_some() => state.history.best_val(),
            None => None,
        };
        if best.map(|b| b.0) == Some(epoch) {
            save_model(
                &self.out.join("best.safetensors"),
                state.model,
                state.params,
                &self.model_metadata(state),
            )?;
        }
        Ok(())
    }

    /// After the last epoch: the model.
    pub(crate) fn train_end(&mut self, state: &FitState) -> Result<()> {
        save_model(
            &self.out.join("model.safetensors"),
            state.model,
            state.params,
            &self.model_metadata(state),
        )
    }

    /// A saved model's metadata: the run's (its data), and the metrics it tracked (under
    /// [`METRICS_KEY`]), so that evaluating the model later reports them too, as Keras's
    /// `evaluate` reports a compiled model's metrics.
    fn model_metadata(&self, state: &FitState) -> Vec<(String, String)> {
        let mut metadata = self.metadata.clone();
        if !state.history.tracked.is_empty() {
            let names = serde_json::to_string(&state.history.tracked).expect("names serialize");
            metadata.push((METRICS_KEY.into(), names));
        }
        metadata
    }
}
