//! The [`Callback`] trait: what a run does beside training, hooked into [`Fit::run`] at the
//! train's, each epoch's and each batch's start and end. Callbacks learn about the run only
//! through their hooks' arguments ([`FitState`], [`BatchEnd`], log messages), so the order in
//! which they were added never changes what any of them sees.
//!
//! [`Fit::run`]: crate::Fit::run

use kiln_graph::{Model, Optimizer, ParamStore};

use crate::config::TrainConfig;
use crate::history::History;
use crate::Result;

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
    /// Whether the run validates after every epoch (it was given a validation set).
    pub validates: bool,
    /// Why a callback asked the run to stop ([`FitState::stop`]).
    pub(crate) stop: std::cell::RefCell<Option<String>>,
}

impl FitState<'_> {
    /// Asks the run to stop, for `reason`: after the current step when called from
    /// `on_batch_end` (the epoch ends there, with its validation and epoch-end hooks), after the
    /// epoch from `on_epoch_end`. `fit` then runs the train-end hooks (the model is saved) and
    /// returns `Ok`, its [`Trained::stopped`](crate::Trained::stopped) holding the first reason
    /// given. The parameters can be replaced first (`state.params.restore(&best)`).
    pub fn stop(&self, reason: impl Into<String>) {
        let mut stop = self.stop.borrow_mut();
        if stop.is_none() {
            *stop = Some(reason.into());
        }
    }

    /// Whether a callback has asked the run to stop, and why.
    pub fn stopping(&self) -> Option<String> {
        self.stop.borrow().clone()
    }
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
    /// At each reporting interval: the epoch's mean loss and metric (None without one) so far
    /// (the only point at which the device is read).
    pub running: Option<(f32, Option<f32>)>,
}

/// Hooks into [`Fit::run`](crate::Fit::run); every method defaults to doing nothing.
pub trait Callback {
    /// Before the first epoch, after a resumed run's state is restored (`first_epoch`,
    /// `history`).
    fn on_train_begin(&mut self, _state: &FitState) -> Result<()> {
        Ok(())
    }

    /// A message for the user from the run ("resuming from ..."), given to every callback.
    fn on_log(&mut self, _message: &str) {}

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
    fn on_train_begin(&mut self, state: &FitState) -> Result<()> {
        (**self).on_train_begin(state)
    }
    fn on_log(&mut self, message: &str) {
        (**self).on_log(message)
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
