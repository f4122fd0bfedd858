//! [`LrSchedule`]: the learning rate as a function of the step and of the finished epochs, as
//! Keras's `ExponentialDecay`, `PiecewiseConstantDecay`, `CosineDecay` (with warmup) and the
//! `ReduceLROnPlateau` callback compute it. A rate depends only on the step count and the
//! history, both restored by a resume, so a resumed run takes the same rates, bit for bit.

use serde::{Deserialize, Serialize};

use crate::early_stopping::Monitor;
use crate::history::History;
use crate::{Error, Result};

/// How the learning rate moves during a run. `step` counts the optimizer's updates before the
/// one the rate is for (Keras's `optimizer.iterations`: 0 for the first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// `lr * decay_rate ^ (step / decay_steps)`, the exponent floored when `staircase`
    /// (Keras's `ExponentialDecay`).
    Exponential {
        /// Steps over which the rate falls by `decay_rate`.
        decay_steps: u64,
        /// The factor per `decay_steps`.
        decay_rate: f32,
        /// Falls in whole steps of `decay_steps`.
        #[serde(default)]
        staircase: bool,
    },
    /// `values[0]` up to and including step `boundaries[0]`, `values[1]` up to
    /// `boundaries[1]`, ..., the last value after the last boundary (Keras's
    /// `PiecewiseConstantDecay`; the values are the rates, the optimizer's own is unused).
    Piecewise {
        /// Increasing steps.
        boundaries: Vec<u64>,
        /// One more rate than boundaries.
        values: Vec<f32>,
    },
    /// A cosine decay from the optimizer's rate `lr` to `alpha * lr` over `decay_steps`, after
    /// `warmup_steps` rising in a straight line from `warmup_from` to `lr` (Keras's
    /// `CosineDecay(initial_learning_rate=warmup_from, warmup_target=lr, ...)`; without warmup
    /// `CosineDecay(initial_learning_rate=lr, ...)`). Past the decay the rate stays at its end.
    Cosine {
        /// Steps of the cosine (after the warmup).
        decay_steps: u64,
        /// The final rate as a fraction of the peak.
        #[serde(default)]
        alpha: f32,
        /// Steps of the linear warmup (0: none).
        #[serde(default)]
        warmup_steps: u64,
        /// The rate the warmup starts from.
        #[serde(default)]
        warmup_from: f32,
    },
    /// Keras's `ReduceLROnPlateau`: after `patience` epochs in which `monitor` has not improved
    /// by more than `min_delta`, the rate is multiplied by `factor` (not below `min_lr`), then
    /// `cooldown` epochs pass before waiting resumes.
    Plateau {
        /// The epoch figure watched (the validation loss by default).
        #[serde(default)]
        monitor: Monitor,
        /// The factor of each reduction.
        factor: f32,
        /// Epochs without improvement before a reduction.
        patience: usize,
        /// Smallest change that counts as an improvement.
        min_delta: f32,
        /// Epochs after a reduction before waiting resumes.
        #[serde(default)]
        cooldown: usize,
        /// The rate never goes below this.
        #[serde(default)]
        min_lr: f32,
    },
}

impl LrSchedule {
    /// Keras's `ReduceLROnPlateau()` defaults: the validation loss, factor 0.1, patience 10,
    /// min_delta 1e-4, no cooldown, no floor.
    pub fn plateau() -> Self {
        LrSchedule::Plateau {
            monitor: Monitor::ValLoss,
            factor: 0.1,
            patience: 10,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        }
    }

    /// A cosine decay over `decay_steps` to 0, after `warmup_steps` rising from 0 to the
    /// optimizer's rate: the usual transformer schedule.
    pub fn cosine_with_warmup(decay_steps: u64, warmup_steps: u64) -> Self {
        LrSchedule::Cosine {
            decay_steps,
            alpha: 0.0,
            warmup_steps,
            warmup_from: 0.0,
        }
    }

    /// Refuses settings no run can use: no steps, factors outside (0, 1], boundaries out of
    /// order or not one fewer than the values.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |what: &str, msg: String| Err(Error::config("schedule", format!("{what}: {msg}")));
        let rate = |what: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(what, format!("{v:?} must be a finite rate, at least 0"))
            }
        };
        match self {
            LrSchedule::Exponential {
                decay_steps,
                decay_rate,
                ..
            } => {
                if *decay_steps == 0 {
                    return bad("decay_steps", "0; give at least 1".into());
                }
                if !(decay_rate.is_finite() && *decay_rate > 0.0) {
                    return bad("decay_rate", format!("{decay_rate:?} must be positive"));
                }
            }
            LrSchedule::Piecewise { boundaries, values } => {
                if values.len() != boundaries.len() + 1 {
                    return bad(
                        "values",
                        format!(
                            "{} values for {} boundaries: give one more value than boundaries",
                            values.len(),
                            boundaries.len()
                        ),
                    );
                }
                if boundaries.windows(2).any(|w| w[0] >= w[1]) {
                    return bad("boundaries", format!("{boundaries:?} must increase"));
                }
                for v in values {
                    rate("values", *v)?;
                }
            }
            LrSchedule::Cosine {
                decay_steps,
                alpha,
                warmup_from,
                ..
            } => {
                if *decay_steps == 0 {
                    return bad("decay_steps", "0; give at least 1".into());
                }
                if !(0.0..=1.0).contains(alpha) {
                    return bad("alpha", format!("{alpha:?} must be in [0, 1]"));
                }
                rate("warmup_from", *warmup_from)?;
            }
            LrSchedule::Plateau {
                factor,
                min_delta,
                min_lr,
                ..
            } => {
                if !(*factor > 0.0 && *factor < 1.0) {
                    return bad("factor", format!("{factor:?} must be in (0, 1)"));
                }
                if !(min_delta.is_finite() && *min_delta >= 0.0) {
                    return bad("min_delta", format!("{min_delta:?} must be at least 0"));
                }
                rate("min_lr", *min_lr)?;
            }
        }
        Ok(())
    }

    /// The rate of the update after `step` updates, from the optimizer's rate `lr` and the
    /// finished epochs (which only [`LrSchedule::Plateau`] reads).
    pub fn lr(&self, lr: f32, step: u64, history: &History) -> f32 {
        let s = step as f64;
        let base = lr as f64;
        let rate = match self {
            LrSchedule::Exponential {
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let p = s / *decay_steps as f64;
                let p = if *staircase { p.floor() } else { p };
                base * (*decay_rate as f64).powf(p)
            }
            LrSchedule::Piecewise { boundaries, values } => {
                let i = boundaries.iter().take_while(|&&b| step > b).count();
                values[i] as f64
            }
            LrSchedule::Cosine {
                decay_steps,
                alpha,
                warmup_steps,
                warmup_from,
            } => {
                let w = *warmup_steps as f64;
                if s < w {
                    let from = *warmup_from as f64;
                    (base - from) * (s / w) + from
                } else {
                    let done = (s - w).min(*decay_steps as f64) / *decay_steps as f64;
                    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
                    base * ((1.0 - *alpha as f64) * cosine + *alpha as f64)
                }
            }
            LrSchedule::Plateau { .. } => return self.plateau_lr(lr, history),
        };
        rate as f32
    }

    /// ReduceLROnPlateau's rate after the finished epochs: Keras's callback replayed over the
    /// history (the state it would hold is a function of it).
    fn plateau_lr(&self, lr: f32, history: &History) -> f32 {
        let LrSchedule::Plateau {
            monitor,
            factor,
            patience,
            min_delta,
            cooldown,
            min_lr,
        } = *self
        else {
            unreachable!("a plateau schedule")
        };
        let higher = monitor.higher_is_better(history);
        let (mut rate, mut best, mut wait, mut cooling) = (lr, None::<f32>, 0usize, 0usize);
        for epoch in &history.epochs {
            let Some(value) = monitor.value(epoch) else {
                continue;
            };
            if cooling > 0 {
                cooling -= 1;
                wait = 0;
            }
            let improved = match best {
                None => true,
                Some(b) if higher => value > b + min_delta,
                Some(b) => value < b - min_delta,
            };
            if improved {
                best = Some(value);
                wait = 0;
            } else if cooling == 0 {
                wait += 1;
                if wait >= patience && rate > min_lr {
                    rate = (rate * factor).max(min_lr);
                    cooling = cooldown;
                    wait = 0;
                }
            }
        }
        rate
    }
}
