//! Losses (cross-entropies and regression): per-sample values, and gradients scaled for a mean.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::{groups, shape_str};
use crate::params::LossParams;
use crate::shaders::ShaderFamily;
use crate::{reference, DType, Device, Error, Result, Tensor};

/// Which loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// Binary cross-entropy on probabilities, clamped as Keras does.
    Bce,
    /// Binary cross-entropy on logits.
    BceLogits,
    /// Categorical cross-entropy on probabilities (last axis = classes), normalised and clamped as
    /// Keras does.
    Cce,
    /// Categorical cross-entropy on logits (last axis = classes), targets as distributions.
    CceLogits,
    /// Squared error (p - y)^2, per element.
    Mse,
    /// Absolute error |p - y|, per element (gradient sign(p - y), 0 at 0).
    Mae,
    /// Huber: (p - y)^2 / 2 within `delta` of the target, delta * (|p - y| - delta / 2) beyond.
    Huber {
        /// The threshold between the quadratic and the linear part.
        delta: f32,
    },
}

/// Which per-sample accuracy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// (pred > threshold) == (label > 0.5): pred holds probabilities (threshold 0.5) or logits
    /// (threshold 0).
    BinaryAccuracy {
        /// 0.5 for probabilities, 0 for logits.
        threshold: f32,
    },
    /// argmax(pred) == argmax(labels) over the last axis.
    CategoricalAccuracy,
    /// The label's class (argmax of the label row) among the k largest predictions of the row,
    /// ties with it included (Keras's top_k_categorical_accuracy).
    TopK {
        /// How many of the largest predictions count.
        k: u32,
    },
}

type RefFn = fn(&LossParams, &[f32], &[f32], &mut [f32]);

impl Loss {
    fn entries(self) -> (&'static str, &'static str, RefFn, RefFn) {
        match self {
            Loss::Bce => (
                "bce_forward",
                "bce_backward",
                reference::bce_forward,
                reference::bce_backward,
            ),
            Loss::BceLogits => (
                "bce_logits_forward",
                "bce_logits_backward",
                reference::bce_logits_forward,
                reference::bce_logits_backward,
            ),
            Loss::Cce => (
                "cce_forward",
                "cce_backward",
                reference::cce_forward,
                reference::cce_backward,
            ),
            Loss::CceLogits => (
                "cce_logits_forward",
                "cce_logits_backward",
                reference::cce_logits_forward,
                reference::cce_logits_backward,
            ),
            Loss::Mse => (
                "mse_forward",
                "mse_backward",
                reference::mse_forward,
                reference::mse_backward,
            ),
            Loss::Mae => (
                "mae_forward",
                "mae_backward",
                reference::mae_forward,
                reference::mae_backward,
            ),
            Loss::Huber { .. } => (
                "huber_forward",
                "huber_backward",
                reference::huber_forward,
                reference::huber_backward,
            ),
        }
    }
}

impl Loss {
    fn delta(self) -> f32 {
        match self {
            Loss::Huber { delta } => delta,
            _ => 0.0,
        }
    }
}

impl Device {
    /// (params, shape of the per-sample losses)
    fn loss_params(
        &self,
        loss: Loss,
        pred: &Tensor,
        target: &Tensor,
        scale: f32,
    ) -> Result<(LossParams, Vec<usize>)> {
        let op = "loss";
        self.check(op, pred)?;
        self.check(op, target)?;
        if pred.shape() != target.shape() {
            return Err(Error::shape(
                op,
                format!("targets of shape {:?}", pred.shape()),
                shape_str(target.shape()),
            ));
        }
        if let Loss::Huber { delta } = loss {
            if !(delta.is_finite() && delta > 0.0) {
                return Err(Error::invalid(
                    op,
                    format!("Huber delta {delta}: must be positive and finite"),
                ));
            }
        }
        if matches!(loss, Loss::Cce | Loss::CceLogits) {
            let classes = *pred
                .shape()
                .last()
                .ok_or_else(|| Error::invalid(op, "scalar logits"))?;
            let rows = pred.len() / classes;
            let shape = pred.shape()[..pred.rank() - 1].to_vec();
            let shape = if shape.is_empty() { vec![1] } else { shape };
            return Ok((
                LossParams {
                    n: rows as u32,
                    classes: classes as u32,
                    scale,
                    delta: 0.0,
                },
                shape,
            ));
        }
        Ok((
            LossParams {
                n: pred.len() as u32,
                classes: 1,
                scale,
                delta: loss.delta(),
            },
            pred.shape().to_vec(),
        ))
    }

    fn loss_run(
        &self,
        entry: &'static str,
        f: RefFn,
        p: &LossParams,
        pred: &Tensor,
        target: &Tensor,
        shape: &[usize],
    ) -> Result<Tensor> {
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span(entry);
                let mut out = self.host_zeros(shape.iter().product());
                f(p, &self.host_f32(pred), &self.host_f32(target), &mut out);
                Ok(self.host_tensor(out, shape))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(entry, DType::F32, shape)?;
                g.launch(Launch {
                    family: ShaderFamily::Loss,
                    entry,
                    overrides: &[],
                    params: bytemuck::bytes_of(p),
                    bindings: &[(1, pred), (2, target), (3, &out)],
                    workgroups: groups(p.n as usize, 256),
                })?;
                Ok(out)
            }
        }
    }

    /// Per-sample losses (per element for the binary and regression losses, per row for
    /// categorical).
    pub fn loss_forward(&self, loss: Loss, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        let (p, shape) = self.loss_params(loss, pred, target, 1.0)?;
        let (fwd, _, f, _) = loss.entries();
        self.loss_run(fwd, f, &p, pred, target, &shape)
    }

    /// d(scale * sum of per-sample losses)/d(pred); scale = 1 / samples gives the mean's gradient.
    pub fn loss_backward(
        &self,
        loss: Loss,
        pred: &Tensor,
        target: &Tensor,
        scale: f32,
    ) -> Result<Tensor> {
        let (p, _) = self.loss_params(loss, pred, target, scale)?;
        let (_, bwd, _, f) = loss.entries();
        self.loss_run(bwd, f, &p, pred, target, pred.shape())
    }

    /// Per-sample 1 (right) or 0 (wrong); sum or average them on the device.
    pub fn metric(&self, metric: Metric, pred: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let (loss, entry, f, scale): (Loss, _, RefFn, f32) = match metric {
            Metric::BinaryAccuracy { threshold } => (
                Loss::Bce,
                "binary_correct",
                reference::binary_correct,
                threshold,
            ),
            Metric::CategoricalAccuracy => (
                Loss::CceLogits,
                "categorical_correct",
                reference::categorical_correct,
                0.0,
            ),
            Metric::TopK { k } => (
                Loss::CceLogits,
                "top_k_correct",
                reference::top_k_correct,
                k as f32,
            ),
        };
        let (p, shape) = self.loss_params(loss, pred, labels, scale)?;
        self.loss_run(entry, f, &p, pred, labels, &shape)
    }

    /// True positives, predicted positives and actual positives (a `[3]` tensor) over every element
    /// of `probs` against 0/1 `labels` of its shape, a prediction positive above `threshold`: what
    /// precision and recall are computed from. Nothing is read back.
    pub fn binary_counts(&self, probs: &Tensor, labels: &Tensor, threshold: f32) -> Result<Tensor> {
        let (mut p, _) = self.loss_params(Loss::Bce, probs, labels, threshold)?;
        p.classes = 3;
        self.counts_run(
            "binary_counts",
            reference::binary_counts,
            &p,
            probs,
            labels,
            3,
        )
    }

    /// A histogram of `probs` (clamped to 0..=1) in `bins` equal bins by class: a
    /// `[2 * bins]` tensor, the negatives' counts (label <= 0.5) then the positives'. ROC AUC is
    /// computed from the sums over batches. Nothing is read back.
    pub fn score_histogram(&self, probs: &Tensor, labels: &Tensor, bins: usize) -> Result<Tensor> {
        if bins == 0 || bins > 1 << 16 {
            return Err(Error::invalid(
                "score_histogram",
                format!("{bins} bins; give 1 to 65536"),
            ));
        }
        let (mut p, _) = self.loss_params(Loss::Bce, probs, labels, 0.0)?;
        p.classes = bins as u32;
        let f = reference::score_histogram;
        self.counts_run("score_histogram", f, &p, probs, labels, 2 * bins)
    }

    /// Runs a counting entry: `len` outputs, one thread each.
    fn counts_run(
        &self,
        entry: &'static str,
        f: RefFn,
        p: &LossParams,
        pred: &Tensor,
        labels: &Tensor,
        len: usize,
    ) -> Result<Tensor> {
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span(entry);
                let mut out = self.host_zeros(len);
                f(p, &self.host_f32(pred), &self.host_f32(labels), &mut out);
                self.count_dispatch();
                Ok(self.host_tensor(out, &[len]))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(entry, DType::F32, &[len])?;
                g.launch(Launch {
                    family: ShaderFamily::Loss,
                    entry,
                    overrides: &[],
                    params: bytemuck::bytes_of(p),
                    bindings: &[(1, pred), (2, labels), (3, &out)],
                    workgroups: groups(len, 256),
                })?;
                Ok(out)
            }
        }
    }
}
