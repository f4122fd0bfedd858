//! Metrics tracked beside the loss's own, as Keras's `compile(metrics=[...])` takes them:
//! accuracy, cross-entropies, mae, mse, precision, recall, ROC AUC and top-k accuracy.
//!
//! Each is computed in two halves. On the device, every batch adds its *statistics* to a running
//! sum without a readback ([`TrackedMetric::batch_stats`]): a sum over samples (the errors,
//! accuracies), counts (true, predicted and actual positives for precision and recall), or a
//! fixed-bin histogram of the scores by class (AUC). On the host, once per epoch, the value
//! comes from the summed statistics ([`TrackedMetric::value`]), so that precision, recall and AUC
//! are the whole epoch's, not an average of batches'.

use std::str::FromStr;

use kiln_device::{Device, Loss, Metric, ReduceOp, Tensor, UnaryOp};
use serde::{Deserialize, Serialize};

use crate::{Error, LossKind, Result};

/// Bins of the score histogram AUC is computed from (Keras's AUC uses 200 thresholds). Pairs of
/// scores in different bins are ranked exactly; pairs within one bin count as ties, so the value
/// differs from the exact ROC AUC by at most half the share of pairs that share a bin.
pub const AUC_BINS: usize = 200;

/// A metric tracked beside the loss's own (`--metrics` on the CLI, `TrainConfig::metrics` in
/// kiln-train), named as Keras names it in history files and progress lines.
///
///
/// In files (checkpoints, model files) it is its name, a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackedMetric {
    /// The loss's accuracy (binary at its threshold, categorical, sparse categorical).
    Accuracy,
    /// Binary cross-entropy of the outputs (probabilities, or logits with a from-logits loss).
    BinaryCrossentropy,
    /// Categorical cross-entropy of each sample's outputs.
    CategoricalCrossentropy,
    /// Mean absolute error.
    Mae,
    /// Mean squared error.
    Mse,
    /// True positives over predicted positives, at 0.5 on probabilities (0 with no prediction
    /// positive, as Keras and scikit-learn's `zero_division=0`).
    Precision,
    /// True positives over actual positives, at 0.5.
    Recall,
    /// Area under the ROC curve, from a [`AUC_BINS`]-bin histogram of the scores by class.
    Auc,
    /// The target class among the k largest outputs (Keras's top_k_categorical_accuracy).
    TopK {
        /// How many of the largest outputs count (Keras's default is 5).
        k: u32,
    },
}

impl TrackedMetric {
    /// Every metric `--metrics` takes, by name.
    pub const NAMES: [&'static str; 9] = [
        "accuracy",
        "binary_crossentropy",
        "categorical_crossentropy",
        "mae",
        "mse",
        "precision",
        "recall",
        "auc",
        "top_k_categorical_accuracy",
    ];

    /// Its name in history files, progress lines and TensorBoard, as Keras's.
    pub fn name(self) -> String {
        match self {
            TrackedMetric::Accuracy => "accuracy".into(),
            TrackedMetric::BinaryCrossentropy => "binary_crossentropy".into(),
            TrackedMetric::CategoricalCrossentropy => "categorical_crossentropy".into(),
            TrackedMetric::Mae => "mae".into(),
            TrackedMetric::Mse => "mse".into(),
            TrackedMetric::Precision => "precision".into(),
            TrackedMetric::Recall => "recall".into(),
            TrackedMetric::Auc => "auc".into(),
            TrackedMetric::TopK { k: 5 } => "top_k_categorical_accuracy".into(),
            TrackedMetric::TopK { k } => format!("top_{k}_categorical_accuracy"),
        }
    }

    /// Whether a higher value is better (not for the errors and cross-entropies).
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            TrackedMetric::BinaryCrossentropy
                | TrackedMetric::CategoricalCrossentropy
                | TrackedMetric::Mae
                | TrackedMetric::Mse
        )
    }

    /// Statistics per batch: the length of [`Self::batch_stats`]'s tensor.
    pub fn stats_len(self) -> usize {
        match self {
            TrackedMetric::Precision | TrackedMetric::Recall => 3,
            TrackedMetric::Auc => 2 * AUC_BINS,
            _ => 1,
        }
    }

    /// The batch's statistics, a [`Self::stats_len`] tensor on the device to be summed over
    /// batches; nothing is read back. `loss` (the run's built-in loss, if any) says whether the
    /// outputs are logits (a sigmoid or softmax is applied first where the metric needs
    /// probabilities) and which accuracy the loss's is.
    pub fn batch_stats(
        self,
        d: &Device,
        pred: &Tensor,
        target: &Tensor,
        loss: Option<LossKind>,
    ) -> Result<Tensor> {
        let from_logits = loss.is_some_and(LossKind::from_logits);
        let target = dense(d, pred, target, loss)?;
        // Probabilities from logits: a sigmoid per output for a binary loss, a softmax per
        // sample for a categorical one.
        let probs = || -> Result<Tensor> {
            Ok(match loss {
                Some(LossKind::BinaryCrossentropyFromLogits) => d.unary(UnaryOp::Sigmoid, pred)?,
                Some(_) if from_logits => d.softmax(pred)?,
                _ => pred.clone(),
            })
        };
        let per_sample =
            |loss: Loss| per_sample_sum(d, &d.loss_forward(loss, pred, &target)?, pred);
        match self {
            TrackedMetric::Accuracy => {
                let kind = loss.map_or(crate::MetricKind::BinaryAccuracy { threshold: 0.5 }, |l| {
                    l.metric()
                });
                if kind == crate::MetricKind::MeanAbsoluteError {
                    return Err(Error::model(
                        "metrics",
                        "accuracy needs a classification loss; this run's is a regression loss (track mae or mse)",
                    ));
                }
                kind.sum(d, pred, &target)
            }
            TrackedMetric::BinaryCrossentropy => per_sample(if from_logits {
                Loss::BceLogits
            } else {
                Loss::Bce
            }),
            TrackedMetric::CategoricalCrossentropy => {
                let per_row = d.loss_forward(
                    if from_logits {
                        Loss::CceLogits
                    } else {
                        Loss::Cce
                    },
                    pred,
                    &target,
                )?;
                sum_all(d, &per_row)
            }
            TrackedMetric::Mae => per_sample(Loss::Mae),
            TrackedMetric::Mse => per_sample(Loss::Mse),
            TrackedMetric::Precision | TrackedMetric::Recall => {
                Ok(d.binary_counts(&probs()?, &target, 0.5)?)
            }
            TrackedMetric::Auc => Ok(d.score_histogram(&probs()?, &target, AUC_BINS)?),
            TrackedMetric::TopK { k } => sum_all(d, &d.metric(Metric::TopK { k }, pred, &target)?),
        }
    }

    /// The metric's value from its statistics summed over `samples` samples.
    pub fn value(self, stats: &[f32], samples: usize) -> f32 {
        let ratio = |a: f32, b: f32| if b > 0.0 { a / b } else { 0.0 };
        match self {
            TrackedMetric::Precision => ratio(stats[0], stats[1]),
            TrackedMetric::Recall => ratio(stats[0], stats[2]),
            TrackedMetric::Auc => auc_from_histogram(&stats[..AUC_BINS], &stats[AUC_BINS..]),
            _ => ratio(stats[0], samples as f32),
        }
    }
}

impl std::fmt::Display for TrackedMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for TrackedMetric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for TrackedMetric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for TrackedMetric {
    type Err = String;

    /// Keras's names (`accuracy`, `mae`, `auc`, `top_k_categorical_accuracy`, ...), and
    /// `top_<k>_categorical_accuracy` for another k.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let name = s.trim().to_ascii_lowercase();
        let known = match name.as_str() {
            "accuracy" | "acc" => Some(TrackedMetric::Accuracy),
            "binary_crossentropy" => Some(TrackedMetric::BinaryCrossentropy),
            "categorical_crossentropy" => Some(TrackedMetric::CategoricalCrossentropy),
            "mae" | "mean_absolute_error" => Some(TrackedMetric::Mae),
            "mse" | "mean_squared_error" => Some(TrackedMetric::Mse),
            "precision" => Some(TrackedMetric::Precision),
            "recall" => Some(TrackedMetric::Recall),
            "auc" => Some(TrackedMetric::Auc),
            "top_k_categorical_accuracy" => Some(TrackedMetric::TopK { k: 5 }),
            other => other
                .strip_prefix("top_")
                .and_then(|r| r.strip_suffix("_categorical_accuracy"))
                .and_then(|k| k.parse::<u32>().ok())
                .filter(|&k| k >= 1)
                .map(|k| TrackedMetric::TopK { k }),
        };
        known.ok_or_else(|| {
            format!(
                "unknown metric `{s}`; kiln tracks {} (and top_<k>_categorical_accuracy)",
                TrackedMetric::NAMES.join(", ")
            )
        })
    }
}

/// The targets as values of the outputs' shape (class ids one-hot).
fn dense(d: &Device, pred: &Tensor, target: &Tensor, loss: Option<LossKind>) -> Result<Tensor> {
    let as_kind = match loss {
        Some(l) if l.sparse() => l,
        _ if target.dtype() == kiln_device::DType::U32 => LossKind::SparseCategoricalCrossentropy,
        _ => LossKind::MeanSquaredError,
    };
    as_kind.dense_target(d, pred.shape(), target)
}

/// The sum of every element, a [1] tensor.
fn sum_all(d: &Device, per: &Tensor) -> Result<Tensor> {
    Ok(d.reduce(ReduceOp::Sum, &per.reshape(&[1, per.len()])?, 1)?)
}

/// Per-element values summed as the per-sample means' sum, a [1] tensor.
fn per_sample_sum(d: &Device, per: &Tensor, pred: &Tensor) -> Result<Tensor> {
    let rows = *pred.shape().first().unwrap_or(&1);
    let per_sample = pred.len() / rows.max(1);
    let total = sum_all(d, per)?;
    Ok(if per_sample == 1 {
        total
    } else {
        d.scale(&total, 1.0 / per_sample as f32)?
    })
}

/// ROC AUC from score histograms by class (bins over [0, 1], ascending): thresholds at the bin
/// edges, the trapezoid between them, so that scores sharing a bin count as ties (half a pair
/// each). 0 when a class is missing, as there is no curve.
pub fn auc_from_histogram(negatives: &[f32], positives: &[f32]) -> f32 {
    let (n_total, p_total): (f64, f64) = (
        negatives.iter().map(|&v| v as f64).sum(),
        positives.iter().map(|&v| v as f64).sum(),
    );
    if n_total == 0.0 || p_total == 0.0 {
        return 0.0;
    }
    let (mut tp, mut fp, mut area) = (0.0f64, 0.0f64, 0.0f64);
    for (&n, &p) in negatives.iter().zip(positives).rev() {
        let (tp_next, fp_next) = (tp + p as f64, fp + n as f64);
        area += (fp_next - fp) * (tp_next + tp) / 2.0;
        (tp, fp) = (tp_next, fp_next);
    }
    (area / (n_total * p_total)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_list_the_known() {
        for name in TrackedMetric::NAMES {
            let m: TrackedMetric = name.parse().unwrap();
            assert_eq!(m.name(), name);
        }
        assert_eq!(
            "top_3_categorical_accuracy".parse::<TrackedMetric>(),
            Ok(TrackedMetric::TopK { k: 3 })
        );
        let e = "f1".parse::<TrackedMetric>().unwrap_err();
        assert!(e.contains("precision") && e.contains("auc"), "{e}");
        assert!("top_0_categorical_accuracy"
            .parse::<TrackedMetric>()
            .is_err());
    }

    #[test]
    fn auc_of_separated_tied_and_reversed_scores() {
        let mut neg = vec![0.0; 4];
        let mut pos = vec![0.0; 4];
        (neg[0], pos[3]) = (5.0, 5.0);
        assert_eq!(auc_from_histogram(&neg, &pos), 1.0);
        assert_eq!(auc_from_histogram(&pos, &neg), 0.0);
        // Everything in one bin: every pair a tie.
        let (neg, pos) = ([0.0, 3.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]);
        assert_eq!(auc_from_histogram(&neg, &pos), 0.5);
        assert_eq!(auc_from_histogram(&[0.0; 4], &pos), 0.0);
    }
}
