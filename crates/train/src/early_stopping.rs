//! [`EarlyStopping`]: stops a run whose watched figure has stopped improving, as Keras's
//! `EarlyStopping` callback, optionally putting back the best epoch's weights.

use kiln_graph::Snapshot;
use serde::{Deserialize, Serialize};

use crate::callback::{Callback, FitState};
use crate::history::{EpochStats, History};
use crate::{Error, Result};

/// The file [`EarlyStopping::persist_in`] keeps the best weights in (a forced new run removes it).
pub(crate) const BEST_WEIGHTS_FILE: &str = "early-stopping-best.safetensors";

/// An epoch figure a callback can watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// The epoch's mean training loss.
    Loss,
    /// The epoch's training metric (accuracy or mae).
    Metric,
    /// The validation loss (Keras's default).
    #[default]
    ValLoss,
    /// The validation metric.
    ValMetric,
    /// A tracked metric over the training samples ([`History::tracked`], by position).
    Tracked(u8),
    /// A tracked metric on the validation data.
    ValTracked(u8),
}

impl Monitor {
    /// Its name in the history files: `loss`, `val_loss`, or the metric's (`val_accuracy`).
    pub fn name(self, history: &History) -> String {
        let metric = history.metric.as_deref().unwrap_or("metric");
        let tracked = |i: u8| {
            history
                .tracked
                .get(i as usize)
                .map_or("metric".into(), |m| m.name())
        };
        match self {
            Monitor::Loss => "loss".into(),
            Monitor::ValLoss => "val_loss".into(),
            Monitor::Metric => metric.into(),
            Monitor::ValMetric => format!("val_{metric}"),
            Monitor::Tracked(i) => tracked(i),
            Monitor::ValTracked(i) => format!("val_{}", tracked(i)),
        }
    }

    /// Its value in `epoch`, if the run has it.
    pub fn value(self, epoch: &EpochStats) -> Option<f32> {
        match self {
            Monitor::Loss => Some(epoch.loss),
            Monitor::Metric => epoch.metric,
            Monitor::ValLoss => epoch.val_loss,
            Monitor::ValMetric => epoch.val_metric,
            Monitor::Tracked(i) => epoch.tracked.get(i as usize).copied(),
            Monitor::ValTracked(i) => epoch.val_tracked.get(i as usize).copied(),
        }
    }

    /// The figure `name` names in a run with `history`'s metrics, as Keras names them: `loss`,
    /// `val_loss`, the metric's name (`accuracy`, `mae`), a tracked metric's (`auc`), and `val_`
    /// before them.
    pub fn parse(name: &str, history: &History) -> Option<Monitor> {
        let metric = history.metric.as_deref();
        let tracked = |n: &str| {
            history
                .tracked
                .iter()
                .position(|m| m.name() == n)
                .and_then(|i| u8::try_from(i).ok())
        };
        if let Some(i) = tracked(name) {
            return Some(Monitor::Tracked(i));
        }
        if let Some(i) = name.strip_prefix("val_").and_then(tracked) {
            return Some(Monitor::ValTracked(i));
        }
        match name {
            "loss" => Some(Monitor::Loss),
            "val_loss" => Some(Monitor::ValLoss),
            n if Some(n) == metric => Some(Monitor::Metric),
            n if n.strip_prefix("val_").is_some() && n.strip_prefix("val_") == metric => {
                Some(Monitor::ValMetric)
            }
            _ => None,
        }
    }

    /// Whether a run with `history`'s metric computes it: the training loss always, the metric
    /// when the loss has one, the validation figures when the run `validates`.
    pub fn computed(self, history: &History, validates: bool) -> bool {
        let metric = history.metric.is_some();
        match self {
            Monitor::Loss => true,
            Monitor::Metric => metric,
            Monitor::ValLoss => validates,
            Monitor::ValMetric => validates && metric,
            Monitor::Tracked(i) => (i as usize) < history.tracked.len(),
            Monitor::ValTracked(i) => validates && (i as usize) < history.tracked.len(),
        }
    }

    /// Whether a higher value is better: losses fall, the metrics go the way they go.
    pub fn higher_is_better(self, history: &History) -> bool {
        match self {
            Monitor::Metric | Monitor::ValMetric => history.higher_is_better,
            Monitor::Tracked(i) | Monitor::ValTracked(i) => history
                .tracked
                .get(i as usize)
                .is_some_and(|m| m.higher_is_better()),
            Monitor::Loss | Monitor::ValLoss => false,
        }
    }
}

/// Stops the run when the watched figure ([`Monitor`], the validation loss unless told) has
/// not improved by more than `min_delta` for `patience` epochs in a row, as Keras's
/// `EarlyStopping(monitor, min_delta, patience, restore_best_weights)`. The run then ends with
/// `Ok`, [`Trained::stopped`](crate::Trained::stopped) saying why. With
/// [`EarlyStopping::restore_best_weights`] the parameters of the best epoch (kept as a copy on
/// the device, never read back) are put back when it stops, before the final model is saved;
/// like Keras, a run that ends on its own keeps its last weights.
///
/// ```no_run
/// # use kiln_train::{EarlyStopping, Fit, TrainConfig, Dataset};
/// # use kiln_graph::{LossKind, Model, ParamStore};
/// # fn run(m: &dyn Model, p: &ParamStore, train: &Dataset, val: &Dataset) -> kiln_train::Result<()> {
/// let trained = Fit::new(TrainConfig::new(LossKind::BinaryCrossentropy).epochs(100))
///     .callback(EarlyStopping::new(5).restore_best_weights(true))
///     .run(m, p, train, Some(val))?;
/// if let Some(why) = &trained.stopped {
///     println!("{why}");
/// }
/// # Ok(()) }
/// ```
pub struct EarlyStopping {
    monitor: Monitor,
    patience: usize,
    min_delta: f32,
    restore: bool,
    /// The best value so far and its epoch.
    best: Option<(usize, f32)>,
    /// Epochs since the best.
    wait: usize,
    best_weights: Option<Snapshot>,
    /// Where the best weights are also written, so that a resumed run can put them back.
    dir: Option<std::path::PathBuf>,
}

impl EarlyStopping {
    /// Watches the validation loss; stops after `patience` epochs without improvement.
    pub fn new(patience: usize) -> Self {
        EarlyStopping {
            monitor: Monitor::ValLoss,
            patience,
            min_delta: 0.0,
            restore: false,
            best: None,
            wait: 0,
            best_weights: None,
            dir: None,
        }
    }

    /// Also writes the best weights to `dir/early-stopping-best.safetensors` (atomically), so
    /// that a run resumed after a kill stops at the same epoch with the same weights as one
    /// that was never interrupted. [`fit`](crate::fit) gives the run folder's `checkpoints/`.
    pub fn persist_in(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    fn best_path(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.join(BEST_WEIGHTS_FILE))
    }

    /// Replays the restored history (a resumed run): the best so far and the epochs since, as
    /// an uninterrupted run would hold them, and the best weights from their file.
    fn replay(&mut self, state: &FitState) -> Result<()> {
        let higher = self.monitor.higher_is_better(&state.history);
        for epoch in &state.history.epochs {
            let Some(value) = self.monitor.value(epoch) else {
                continue;
            };
            if value.is_finite() && self.improved(value, higher) {
                self.best = Some((epoch.epoch, value));
                self.wait = 0;
            } else {
                self.wait += 1;
            }
        }
        let (Some((best_epoch, _)), Some(path), true) = (self.best, self.best_path(), self.restore)
        else {
            return Ok(());
        };
        if !path.exists() {
            return Ok(());
        }
        // The file's weights, taken as a snapshot without disturbing the current ones.
        let current = state.params.snapshot()?;
        let loaded = state.params.load_weights(&path);
        if let Ok(meta) = &loaded {
            if meta.get("epoch").map(String::as_str) == Some(best_epoch.to_string().as_str()) {
                self.best_weights = Some(state.params.snapshot()?);
            }
        }
        state.params.restore(&current)?;
        loaded.map(|_| ()).map_err(|e| Error::Checkpoint {
            path,
            message: format!(
                "the best weights early stopping kept cannot be read ({e}); delete the file to resume without them (a stop then puts back the best epoch after the resume, if any)"
            ),
        })
    }

    /// Watches `monitor` instead.
    pub fn monitor(mut self, monitor: Monitor) -> Self {
        self.monitor = monitor;
        self
    }

    /// Counts only changes larger than `min_delta` as improvements (Keras's `min_delta`).
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.min_delta = min_delta.abs();
        self
    }

    /// Puts the best epoch's weights back when stopping (Keras's `restore_best_weights`).
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore = restore;
        self
    }

    /// The best value seen and its epoch.
    pub fn best(&self) -> Option<(usize, f32)> {
        self.best
    }

    fn improved(&self, value: f32, higher_is_better: bool) -> bool {
        match self.best {
            None => true,
            Some((_, best)) if higher_is_better => value > best + self.min_delta,
            Some((_, best)) => value < best - self.min_delta,
        }
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, state: &FitState) -> Result<()> {
        let name = self.monitor.name(&state.history);
        if matches!(self.monitor, Monitor::Metric | Monitor::ValMetric)
            && state.history.metric.is_none()
        {
            return Err(Error::config(
                "early stopping",
                format!("watches {name}, but the run's loss has no metric; watch Monitor::ValLoss or give the loss one (LossFn::with_metric)"),
            ));
        }
        if matches!(self.monitor, Monitor::ValLoss | Monitor::ValMetric) && !state.validates {
            return Err(Error::config(
                "early stopping",
                format!("watches {name}, but the run has no validation set: give one, or watch Monitor::Loss"),
            ));
        }
        self.best = None;
        self.wait = 0;
        self.best_weights = None;
        // A resumed run carries on counting where the interrupted one was (a new Keras fit
        // would start afresh; a resume is the same run).
        self.replay(state)
    }

    fn on_epoch_end(&mut self, state: &FitState) -> Result<()> {
        let epoch = state.history.epochs.last().expect("an epoch ended");
        let name = self.monitor.name(&state.history);
        let Some(value) = self.monitor.value(epoch) else {
            return Err(Error::config(
                "early stopping",
                format!("watches {name}, which this run does not compute"),
            ));
        };
        if !value.is_finite() {
            self.wait += 1;
        } else if self.improved(value, self.monitor.higher_is_better(&state.history)) {
            self.best = Some((epoch.epoch, value));
            self.wait = 0;
            if self.restore {
                self.best_weights = Some(state.params.snapshot()?);
                if let Some(path) = self.best_path() {
                    let meta = [("epoch".to_string(), epoch.epoch.to_string())];
                    state.params.save_weights(&path, &meta)?;
                }
            }
            return Ok(());
        } else {
            self.wait += 1;
        }
        if self.wait < self.patience.max(1) {
            return Ok(());
        }
        let mut reason = format!(
            "early stopping at epoch {}: {name} has not improved for {} epoch{}",
            epoch.epoch,
            self.wait,
            if self.wait == 1 { "" } else { "s" }
        );
        if let Some((best_epoch, best)) = self.best {
            reason += &format!(" (best {best:.4} at epoch {best_epoch}");
            if let Some(weights) = &self.best_weights {
                state.params.restore(weights)?;
                reason += ", whose weights were restored";
            }
            reason += ")";
        }
        state.stop(reason);
        Ok(())
    }
}
