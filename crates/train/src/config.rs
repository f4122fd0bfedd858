//! [`TrainConfig`]: how to train, saved in every checkpoint.

use kiln_graph::{GradClip, LossKind, OptimizerConfig, TrackedMetric};

use crate::schedule::LrSchedule;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How to train; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per step.
    pub batch: usize,
    /// Seeds the shuffles and the dropout masks.
    pub seed: u64,
    /// The loss; None when the run is given one of its own ([`Fit::loss`](crate::Fit::loss)).
    #[serde(default)]
    pub loss: Option<LossKind>,
    /// The optimizer and its settings (its rate is a schedule's starting or peak rate).
    pub optimizer: OptimizerConfig,
    /// How the learning rate moves (None: it stays the optimizer's).
    #[serde(default)]
    pub schedule: Option<LrSchedule>,
    /// Gradient clipping before each update (None: none).
    #[serde(default)]
    pub clip: Option<GradClip>,
    /// Steps between reads of the running loss (also the NaN check's granularity).
    pub report_every: usize,
    /// Metrics tracked beside the loss's own (Keras's `compile(metrics=[...])`), in the history
    /// files, progress lines and TensorBoard under Keras's names; one the loss already reports
    /// (its accuracy, its mae) is not repeated.
    #[serde(default)]
    pub metrics: Vec<TrackedMetric>,
}

impl Default for TrainConfig {
    /// Keras's defaults (10 epochs, batch 32, Adam(1e-3), reports every 50 steps) and no loss:
    /// for a run given a loss of its own ([`Fit::loss`](crate::Fit::loss)).
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch: 32,
            seed: 0,
            loss: None,
            optimizer: OptimizerConfig::adam(),
            schedule: None,
            clip: None,
            report_every: 50,
            metrics: vec![],
        }
    }
}

impl TrainConfig {
    /// Keras's defaults (10 epochs, batch 32, Adam(1e-3), reports every 50 steps) with `loss`.
    pub fn new(loss: LossKind) -> Self {
        TrainConfig {
            loss: Some(loss),
            ..TrainConfig::default()
        }
    }

    /// Passes over the data.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Samples per step.
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// The seed of shuffles and dropout.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The optimizer.
    pub fn optimizer(mut self, optimizer: OptimizerConfig) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// Gradient clipping.
    pub fn clip(mut self, clip: GradClip) -> Self {
        self.clip = Some(clip);
        self
    }

    /// Tracks `metrics` beside the loss's own.
    pub fn metrics(mut self, metrics: &[TrackedMetric]) -> Self {
        self.metrics = metrics.to_vec();
        self
    }

    /// A learning-rate schedule.
    pub fn schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = Some(schedule);
        self
    }

    /// Refuses settings that cannot train, before anything is allocated: no epochs, an empty
    /// batch, a loss's or an optimizer's setting out of range.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("epochs", "0 trains nothing; give at least 1"));
        }
        if self.batch == 0 {
            return Err(Error::config(
                "batch",
                "0 samples per step; give at least 1",
            ));
        }
        if let Some(loss) = self.loss {
            loss.validate()?;
        }
        self.optimizer.validate()?;
        if let Some(s) = &self.schedule {
            s.validate()?;
        }
        if let Some(c) = &self.clip {
            c.validate()?;
        }
        Ok(())
    }
}
