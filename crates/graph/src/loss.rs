//! Losses and their metrics: the ones Keras users expect ([`LossKind`], each with its metric),
//! and any loss of the user's own built from tape ops ([`LossFn`], with a metric of
//! [`MetricKind`] or none); both are an [`Objective`], which is what `train_step`, `fit` and
//! `evaluate` take. A type of one's own can implement [`Objective`] too: its loss on the tape,
//! and optionally a metric (delegate to a [`MetricKind`] for the usual ones).

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

    /// Whether the loss takes logits (its outputs are not probabilities).
    pub fn from_logits(self) -> bool {
        matches!(
            self,
            LossKind::BinaryCrossentropyFromLogits
                | LossKind::CategoricalCrossentropyFromLogits
                | LossKind::SparseCategoricalCrossentropyFromLogits
        )
    }

    /// Whether the targets are class ids, one per sample.
    pub(crate) fn sparse(self) -> bool {
        matches!(
            self,
            LossKind::SparseCategoricalCrossentropy
                | LossKind::SparseCategoricalCrossentropyFromLogits
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
        if target.dtype() == kiln_device::DType::U32 {
            return Err(Error::model(
                "loss",
                format!(
                    "{self:?} compares predictions with values, but the targets are u32 ids; give them as f32 values (Column::f32, 0/1 for two classes), or use a sparse categorical loss for class ids"
                ),
            ));
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

impl LossKind {
    /// The metric reported beside the loss: accuracy (at 0.5 on probabilities, 0 on logits, or
    /// by the largest output), or the mean absolute error for the regression losses.
    pub fn metric(self) -> MetricKind {
        match self {
            LossKind::BinaryCrossentropy => MetricKind::BinaryAccuracy { threshold: 0.5 },
            LossKind::BinaryCrossentropyFromLogits => MetricKind::BinaryAccuracy { threshold: 0.0 },
            LossKind::SparseCategoricalCrossentropy
            | LossKind::SparseCategoricalCrossentropyFromLogits => {
                MetricKind::SparseCategoricalAccuracy
            }
            LossKind::CategoricalCrossentropy | LossKind::CategoricalCrossentropyFromLogits => {
                MetricKind::CategoricalAccuracy
            }
            LossKind::MeanSquaredError | LossKind::MeanAbsoluteError | LossKind::Huber { .. } => {
                MetricKind::MeanAbsoluteError
            }
        }
    }
}

impl Objective for LossKind {
    fn loss(&self, tape: &Tape, pred: &Var, target: &Tensor) -> Result<Var> {
        let target = self.dense_target(tape.device(), pred.shape(), target)?;
        tape.loss(self.device_loss(), pred, &target)
    }

    fn metric_name(&self) -> Option<&'static str> {
        Some(self.metric().name())
    }

    fn metric_sum(&self, d: &Device, pred: &Tensor, target: &Tensor) -> Result<Option<Tensor>> {
        self.metric().sum(d, pred, target).map(Some)
    }

    fn higher_is_better(&self) -> bool {
        self.metric().higher_is_better()
    }
}

/// The metrics reported beside a loss, summed on the device over a batch's samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// One output per sample, right when on the target's side of `threshold` (0.5 for
    /// probabilities, 0 for logits); targets 0 or 1.
    BinaryAccuracy {
        /// The decision threshold.
        threshold: f32,
    },
    /// Right when the largest output is the target's largest (one-hot or distribution targets).
    CategoricalAccuracy,
    /// Right when the largest output's index is the target's class id (one id per sample).
    SparseCategoricalAccuracy,
    /// The mean absolute error of each sample's outputs (named `mae`).
    MeanAbsoluteError,
}

impl MetricKind {
    /// Its name in progress lines and history files: `accuracy` or `mae`.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::MeanAbsoluteError => "mae",
            _ => "accuracy",
        }
    }

    /// Whether a higher value is better (accuracy) or a lower (errors).
    pub fn higher_is_better(self) -> bool {
        self != MetricKind::MeanAbsoluteError
    }

    /// The batch's metric summed over its samples, a `[1]` tensor on the device.
    pub fn sum(self, d: &Device, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let target = match self {
            MetricKind::SparseCategoricalAccuracy => {
                LossKind::SparseCategoricalCrossentropy.dense_target(d, pred.shape(), target)?
            }
            _ => LossKind::MeanSquaredError.dense_target(d, pred.shape(), target)?,
        };
        let (per, scale) = match self {
            MetricKind::BinaryAccuracy { threshold } => (
                d.metric(Metric::BinaryAccuracy { threshold }, pred, &target)?,
                1.0,
            ),
            MetricKind::MeanAbsoluteError => {
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
        Ok(if scale == 1.0 {
            total
        } else {
            d.scale(&total, scale)?
        })
    }
}

/// A loss of the user's own, built from tape ops: `LossFn::new(|tape, pred, target| ...)`, the
/// prediction and the batch's targets both values on the tape. It has no metric unless given
/// one ([`LossFn::with_metric`]); without one, no metric is printed or stored.
pub struct LossFn<F> {
    f: F,
    metric: Option<MetricKind>,
}

impl<F: Fn(&Tape, &Var, &Var) -> Result<Var>> LossFn<F> {
    /// Wraps `f`, which returns the batch's mean loss as a `[1]` value.
    pub fn new(f: F) -> Self {
        LossFn { f, metric: None }
    }

    /// Reports `metric` beside the loss (`accuracy`, `mae`), as the built-in losses do.
    pub fn with_metric(mut self, metric: MetricKind) -> Self {
        self.metric = Some(metric);
        self
    }
}

impl<F: Fn(&Tape, &Var, &Var) -> Result<Var>> Objective for LossFn<F> {
    fn loss(&self, tape: &Tape, pred: &Var, target: &Tensor) -> Result<Var> {
        let target = tape.constant(target.clone());
        let l = (self.f)(tape, pred, &target)?;
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

    fn metric_name(&self) -> Option<&'static str> {
        self.metric.map(MetricKind::name)
    }

    fn metric_sum(&self, d: &Device, pred: &Tensor, target: &Tensor) -> Result<Option<Tensor>> {
        self.metric.map(|m| m.sum(d, pred, target)).transpose()
    }

    fn higher_is_better(&self) -> bool {
        self.metric.is_none_or(MetricKind::higher_is_better)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_the_wrong_kind_are_refused_naming_the_fix() {
        let d = Device::cpu();
        let ids = d.from_u32(&[0, 1, 1], &[3, 1]).unwrap();
        let values = d.from_f32(&[0.0, 1.0, 1.0], &[3, 1]).unwrap();
        let err = LossKind::BinaryCrossentropy
            .dense_target(&d, &[3, 1], &ids)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("targets are u32 ids") && err.contains("Column::f32"),
            "{err}"
        );
        let err = LossKind::SparseCategoricalCrossentropy
            .dense_target(&d, &[3, 2], &values)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wants one class id (u32) per sample") && err.contains("ids column"),
            "{err}"
        );
        let err = LossKind::MeanSquaredError
            .dense_target(&d, &[3, 2], &values)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("as many target values as the model outputs"),
            "{err}"
        );
        assert!(LossKind::BinaryCrossentropy
            .dense_target(&d, &[3, 1], &values)
            .is_ok());
        assert!(LossKind::SparseCategoricalCrossentropy
            .dense_target(&d, &[3, 2], &ids)
            .is_ok());
    }
}
