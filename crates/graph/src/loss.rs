//! Losses and their metrics: the ones Keras users expect ([`LossKind`]), and any loss of the
//! user's own built from tape ops ([`LossFn`]); both are an [`Objective`], which is what
//! `train_step`, `fit` and `evaluate` take.

use kiln_device::{Device, Loss, Metric, ReduceOp, Tensor};
use serde::{Deserialize, Serialize};

use crate::tape::{Tape, Var};
use crate::{Error, Result};

/// What training minimises, and the metric reported beside it.
pub trait Objective {
    /// The batch's mean loss, a `[1]` value on the tape. `pred` is the model's output, `target`
    /// the batch's targets (as the dataset holds them).
    fn loss(&self, tape: &Tape, pred: &Var, target: &Tensor) -> Result<Var>;

    /// The metric's name (`accuracy`, `mae`), or None for no metric.
    fn metric_name(&self) -> Option<&'static str> {
        None
    }

    /// The batch's metric summed over its samples, a `[1]` tensor on the device (accuracy: the
    /// number right; mae: the sum of the per-sample mean absolute errors). Nothing is read back.
    fn metric_sum(
        &self,
        _device: &Device,
        _pred: &Tensor,
        _target: &Tensor,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// Whether a higher metric is better (accuracy) or a lower one (errors); picks the best epoch.
    fn higher_is_better(&self) -> bool {
        true
    }
}

/// The built-in losses, as Keras names them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// On probabilities (a sigmoid output), clamped as Keras does. Metric: accuracy at 0.5.
    BinaryCrossentropy,
    /// On logits. Metric: accuracy at 0.
    BinaryCrossentropyFromLogits,
    /// On probabilities (a softmax output), with one-hot (or distribution) targets.
    CategoricalCrossentropy,
    /// On logits, with one-hot (or distribution) targets.
    CategoricalCrossentropyFromLogits,
    /// On probabilities, with class-index targets (ids, one per sample).
    SparseCategoricalCrossentropy,
    /// On logits, with class-index targets (ids, one per sample).
    SparseCategoricalCrossentropyFromLogits,
    /// (pred - target)^2, averaged. Metric: mean absolute error.
    MeanSquaredError,
    /// |pred - target|, averaged. Metric: mean absolute error.
    MeanAbsoluteError,
    /// Quadratic within `delta`, linear beyond (Keras's default delta is 1). Metric: mean
    /// absolute error.
    Huber {
        /// Where the quadratic part ends.
        delta: f32,
    },
}

impl LossKind {
    /// The device loss kernel.
    pub fn device_loss(self) -> Loss {
        match self {
            LossKind::BinaryCrossentropy => Loss::Bce,
            LossKind::BinaryCrossentropyFromLogits => Loss::BceLogits,
            LossKind::CategoricalCrossentropy | LossKind::SparseCategoricalCrossentropy => {
                Loss::Cce
            }
            LossKind::CategoricalCrossentropyFromLogits
            | LossKind::SparseCategoricalCrossentropyFromLogits => Loss::CceLogits,
            LossKind::MeanSquaredError => Loss::Mse,
            LossKind::MeanAbsoluteError => Loss::Mae,
            LossKind::Huber { delta } => Loss::Huber { delta },
        }
    }

    fn sparse(self) -> bool {
        matches!(
            self,
            LossKind::SparseCategoricalCrossentropy
                | LossKind::SparseCategoricalCrossentropyFromLogits
        )
    }

    fn regression(self) -> bool {
        matches!(
            self,
            LossKind::MeanSquaredError | LossKind::MeanAbsoluteError | LossKind::Huber { .. }
        )
    }

    /// Checks the loss's own settings (Huber's delta).
    pub fn validate(self) -> Result<()> {
        if let LossKind::Huber { delta } = self {
            if !(delta.is_finite() && delta > 0.0) {
                return Err(Error::model(
                    "huber loss",
                    format!("delta {delta} must be positive and finite (Keras's default is 1)"),
                ));
            }
        }
        Ok(())
    }

    /// The targets the device kernels compare `pred` with: class ids become one-hot rows for the
    /// sparse losses (kiln-device's `one_hot`); others must hold as many values as
    /// the prediction and take its shape.
    pub fn dense_target(self, device: &Device, pred: &[usize], target: &Tensor) -> Result<Tensor> {
        let pred_len: usize = pred.iter().product();
        if self.sparse() {
            let classes = *pred.last().unwrap_or(&0);
            let rows = pred_len / classes.max(1);
            if target.len() != rows || target.dtype() != kiln_device::DType::U32 {
                return Err(Error::model(
                    "sparse categorical loss",
                    format!(
                        "wants one class id (u32) per sample, got {:?} {:?} targets for predictions {pred:?}; give the targets as an ids column, or use categorical_crossentropy with one-hot targets",
                        target.dtype(),
                        target.shape()
                    ),
                ));
            }
            return Ok(device
                .one_hot(&target.reshape(&[rows])?, classes)?
                .reshape(pred)?);
        }
        if target.len() != pred_len {
            return Err(Error::model(
                "loss",
                format!(
                    "targets of shape {:?} for predictions {pred:?}: each sample needs as many target values as the model outputs",
                    target.shape()
                ),
            ));
        }
        Ok(target.reshape(pred)?)
    }
}

impl Objective for LossKind {
    fn loss(&self, tape: &Tape, pred: &Var, target: &Tensor) -> Result<Var> {
        let target = self.dense_target(tape.device(), pred.shape(), target)?;
        tape.loss(self.device_loss(), pred, &target)
    }

    fn metric_name(&self) -> Option<&'static str> {
        Some(if self.regression() { "mae" } else { "accuracy" })
    }

    fn metric_sum(&self, d: &Device, pred: &Tensor, target: &Tensor) -> Result<Option<Tensor>> {
        let target = self.dense_target(d, pred.shape(), target)?;
        let (per, scale) = match self {
            LossKind::BinaryCrossentropy => (
                d.metric(Metric::BinaryAccuracy { threshold: 0.5 }, pred, &target)?,
                1.0,
            ),
            LossKind::BinaryCrossentropyFromLogits => (
                d.metric(Metric::BinaryAccuracy { threshold: 0.0 }, pred, &target)?,
                1.0,
            ),
            _ if self.regression() => {
                // The mean over each sample's outputs, summed over samples.
                let rows = *pred.shape().first().unwrap_or(&1);
                let per_sample = pred.len() / rows.max(1);
                (
                    d.loss_forward(Loss::Mae, pred, &target)?,
                    1.0 / per_sample.max(1) as f32,
                )
            }
            _ => (d.metric(Metric::CategoricalAccuracy, pred, &target)?, 1.0),
        };
        let total = d.reduce(ReduceOp::Sum, &per.reshape(&[1, per.len()])?, 1)?;
        Ok(Some(if scale == 1.0 {
            total
        } else {
            d.scale(&total, scale)?
        }))
    }

    fn higher_is_better(&self) -> bool {
        !self.regression()
    }
}

/// A loss of the user's own, built from tape ops: `LossFn::new(|tape, pred, target| ...)`.
/// It has no metric.
pub struct LossFn<F>(F);

impl<F: Fn(&Tape, &Var, &Tensor) -> Result<Var>> LossFn<F> {
    /// Wraps `f`, which returns the batch's mean loss as a `[1]` value.
    pub fn new(f: F) -> Self {
        LossFn(f)
    }
}

impl<F: Fn(&Tape, &Var, &Tensor) -> Result<Var>> Objective for LossFn<F> {
    fn loss(&self, tape: &Tape, pred: &Var, target: &Tensor) -> Result<Var> {
        let l = (self.0)(tape, pred, target)?;
        if l.value().len() != 1 {
            return Err(Error::model(
                "custom loss",
                format!(
                    "returned shape {:?}; a loss is one value (take the mean over the batch)",
                    l.shape()
                ),
            ));
        }
        Ok(l)
    }
}
