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

/// Checkpoints in `out/checkpoints/epoch-NNNN.safetensors` (atomically, after every epoch:
/// parameters, optimizer state, epoch, step, seed, configs, history), `out/best.safetensors`
/// (the epoch with the best validation metric so far) and `out/model.safetensors` (the last).
/// With `resume`, the run continues from the newest checkpoint and reaches the same weights as an
/// uninterrupted run on the same device.
pub struct Checkpoints {
    out: PathBuf,
    resume: bool,
    metadata: Vec<(String, String)>,
}

impl Checkpoints {
    /// Keeps checkpoints and models in `out`; `metadata` (e.g. a tokenizer's vocabulary) goes
    /// into every file, so that a model file is self-contained.
    pub fn new(out: impl Into<PathBuf>, resume: bool, metadata: Vec<(String, String)>) -> Self {
        Checkpoints {
            out: out.into(),
            resume,
            metadata,
        }
    }

    fn dir(&self) -> PathBuf {
        self.out.join("checkpoints")
    }
}

impl Callback for Checkpoints {
    fn on_train_begin(&mut self, state: &mut FitState) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        state.checkpoints = Some(dir.clone());
        if !self.resume {
            return Ok(());
        }
        let Some((epoch, path)) = checkpoint::latest(&dir) else {
            return Ok(());
        };
        let ck = Checkpoint::load(&path)?;
        if let (Some(saved), Some(ours)) = (ck.meta("model_config"), state.model.config_json()) {
            if saved != ours {
                return Err(Error::Checkpoint {
                    path,
                    message: "it was written by a different model configuration".into(),
                });
            }
        }
        state.params.load(&ck.params)?;
        let (step, m, v) = ck.optimizer.clone().ok_or_else(|| Error::Checkpoint {
            path: path.clone(),
            message: "no optimizer state".into(),
        })?;
        state.optimizer.load_state(state.params, step, &m, &v)?;
        if let Some(h) = ck.meta("history") {
            state.history = serde_json::from_str(h).map_err(|e| Error::Checkpoint {
                path: path.clone(),
                message: format!("history: {e}"),
            })?;
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
        metadata.insert(
            "history".into(),
            serde_json::to_string(&state.history).expect("serializes"),
        );
        Checkpoint {
            params: state.params.to_host()?,
            optimizer: Some(state.optimizer.state(state.params)?),
            metadata,
        }
        .save(&checkpoint::epoch_path(&self.dir(), epoch))?;
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
