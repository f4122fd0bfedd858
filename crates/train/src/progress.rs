//! [`Progress`]: bars and epoch lines on stderr, as Keras's `verbose`.

use indicatif::{ProgressBar, ProgressStyle};

use crate::callback::{BatchEnd, Callback, FitState};
use crate::Result;

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
    fn on_log(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
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
                let metric = named(&state.history.metric, " ", metric);
                bar.set_message(format!("loss {loss:.4}{metric}"));
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
        let tracked = |values: &[f32], prefix: &str| -> String {
            state
                .history
                .tracked
                .iter()
                .zip(values)
                .map(|(t, v)| format!(" - {prefix}{t} {v:.4}"))
                .collect()
        };
        let val_text = match e.val_loss {
            Some(l) => format!(
                " - val_loss {l:.4}{}{}",
                named(m, " - val_", e.val_metric),
                tracked(&e.val_tracked, "val_")
            ),
            None => String::new(),
        };
        eprintln!(
            "epoch {}/{} - {:.1}s - loss {:.4}{}{}{val_text} - {:.0} samples/s - per step: {:.0} dispatches, {:.1} submits, {:.2} readbacks",
            e.epoch,
            state.config.epochs,
            e.seconds,
            e.loss,
            named(m, " - ", e.metric),
            tracked(&e.tracked, ""),
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

/// ` - accuracy 0.9500` (with `prefix` before the name), or nothing for a run without a metric.
fn named(name: &Option<String>, prefix: &str, value: Option<f32>) -> String {
    match (name, value) {
        (Some(name), Some(v)) => format!("{prefix}{name} {v:.4}"),
        _ => String::new(),
    }
}
