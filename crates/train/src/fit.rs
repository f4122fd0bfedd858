//! The training loop: what Keras's `fit` gives its users. Epochs over seeded shuffles, batches
//! through [`train_step`], validation, and callbacks at the train's, each batch's and each
//! epoch's end, through which progress, history files and checkpoints attach (a run with none
//! writes nothing). Training stops with the exact step when the loss stops being finite.
//!
//! Nothing is read back until the reporting interval ends (`report_every` steps, and every
//! epoch's end): the step's loss and metric are added to device accumulators.

use std::time::Instant;

use kiln_device::{Counters, Device, ReduceOp, Tensor};
use kiln_graph::{
    kiln_device, shard_of, train_step, train_step_shared, Batch, Collective, LossKind, Model,
    Objective, Optimizer, ParamStore, Replicas, StepOutput, Tape, TrackedMetric,
};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::callback::{BatchEnd, Callback, FitState};
use crate::checkpoints::Checkpoints;
use crate::config::TrainConfig;
use crate::data::{Column, Dataset};
use crate::history::{EpochStats, History};
use crate::{Error, Result};

/// What `fit` returns.
pub struct Trained {
    /// Every epoch's figures.
    pub history: History,
    /// The optimizer, with its state after the last step.
    pub optimizer: Optimizer,
    /// Why the run ended before its last epoch, when a callback stopped it
    /// ([`FitState::stop`]).
    pub stopped: Option<String>,
}

/// Loss and metric (None when the objective has none) of a model on a dataset, computed on the
/// device, read once.
pub fn evaluate(
    model: &dyn Model,
    params: &ParamStore,
    data: &Dataset,
    batch: usize,
    objective: &dyn Objective,
) -> Result<(f32, Option<f32>)> {
    let e = evaluate_tracked(model, params, data, batch, objective, &Tracked::default())?;
    Ok((e.loss, e.metric))
}

/// Metrics tracked beside the objective's own ([`TrainConfig::metrics`] without the one the
/// objective reports), and the built-in loss they read the outputs by (logits or probabilities,
/// which accuracy), if any.
///
/// [`TrainConfig::metrics`]: crate::TrainConfig::metrics
#[derive(Clone, Debug, Default)]
pub struct Tracked {
    /// The metrics, in order, each once.
    pub metrics: Vec<TrackedMetric>,
    /// The run's built-in loss.
    pub loss: Option<LossKind>,
}

impl Tracked {
    /// `metrics` less duplicates and the one `objective` already reports.
    pub fn new(
        metrics: &[TrackedMetric],
        objective: &dyn Objective,
        loss: Option<LossKind>,
    ) -> Self {
        let own = objective.metric_name();
        let mut kept: Vec<TrackedMetric> = vec![];
        for &m in metrics {
            if Some(m.name().as_str()) != own && !kept.contains(&m) {
                kept.push(m);
            }
        }
        Tracked {
            metrics: kept,
            loss,
        }
    }
}

/// A model's loss, metric and tracked metrics on a dataset ([`evaluate_tracked`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The mean loss.
    pub loss: f32,
    /// The objective's metric, if it has one.
    pub metric: Option<f32>,
    /// The tracked metrics' values, in their order.
    pub tracked: Vec<f32>,
}

/// [`evaluate`] with `tracked` metrics too: everything summed on the device, read once.
pub fn evaluate_tracked(
    model: &dyn Model,
    params: &ParamStore,
    data: &Dataset,
    batch: usize,
    objective: &dyn Objective,
    tracked: &Tracked,
) -> Result<Evaluation> {
    data.validate()?;
    let d = params.device();
    let sums = Sums::new(d, tracked)?;
    for start in (0..data.len()).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch).min(data.len())).collect();
        let b = data.batch(&idx, d)?;
        let tape = Tape::inference(d);
        let inputs: Vec<_> = b.inputs.iter().map(|x| tape.constant(x.clone())).collect();
        let out = model.forward(&tape, params, &inputs)?;
        let loss = objective.loss(&tape, &out, &b.target)?;
        sums.add(
            d,
            loss.value(),
            idx.len(),
            out.value(),
            &b.target,
            objective,
        )?;
    }
    let (l, c, stats) = sums.read(d)?;
    let n = data.len().max(1) as f32;
    Ok(Evaluation {
        loss: l / n,
        metric: objective.metric_name().map(|_| c / n),
        tracked: tracked_values(&sums.tracked, &stats, data.len()),
    })
}

/// Each tracked metric's value from its summed statistics over `samples` samples.
fn tracked_values(tracked: &Tracked, stats: &[Vec<f32>], samples: usize) -> Vec<f32> {
    tracked
        .metrics
        .iter()
        .zip(stats)
        .map(|(m, s)| m.value(s, samples))
        .collect()
}

/// The model's outputs for `inputs` (one column per model input), in order, in batches of
/// `batch`: the values on the host and their shape (samples first).
pub fn predict(
    model: &dyn Model,
    params: &ParamStore,
    inputs: &[Column],
    batch: usize,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let d = params.device();
    let n = inputs.first().map_or(0, Column::samples);
    if inputs.iter().any(|c| c.samples() != n) {
        return Err(Error::config(
            "predict",
            "input columns hold different numbers of samples",
        ));
    }
    let (mut values, mut shape) = (vec![], vec![n]);
    for start in (0..n).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
        let tape = Tape::inference(d);
        let vars = inputs
            .iter()
            .map(|c| Ok(tape.constant(c.select(&idx).upload(d)?)))
            .collect::<Result<Vec<_>>>()?;
        let out = model.forward(&tape, params, &vars)?;
        shape.truncate(1);
        shape.extend(&out.shape()[1..]);
        values.extend(d.to_f32(out.value())?);
    }
    Ok((values, shape))
}

/// Running sums of one pass over data, on the device: the loss summed over samples, the
/// metric's sum and each tracked metric's statistics, as aligned views of one buffer, so that
/// each is an `axpy` target and one readback returns them all.
struct Sums {
    flat: Tensor,
    loss: Tensor,
    metric: Tensor,
    /// The tracked metrics and their statistics' views.
    tracked: Tracked,
    stats: Vec<Tensor>,
}

impl Sums {
    fn new(d: &Device, tracked: &Tracked) -> Result<Sums> {
        let mut shapes = vec![vec![1], vec![1]];
        shapes.extend(tracked.metrics.iter().map(|m| vec![m.stats_len()]));
        let (flat, mut views) = d.packed_zeros(&shapes)?;
        let stats = views.split_off(2);
        let metric = views.pop().expect("two views");
        let loss = views.pop().expect("two views");
        Ok(Sums {
            flat,
            loss,
            metric,
            tracked: tracked.clone(),
            stats,
        })
    }

    /// Adds `n` samples' mean loss (a [1] tensor already on the device) and their metric.
    fn add(
        &self,
        d: &Device,
        mean_loss: &Tensor,
        n: usize,
        pred: &Tensor,
        target: &Tensor,
        objective: &dyn Objective,
    ) -> Result<()> {
        d.axpy(&self.loss, mean_loss, n as f32)?;
        if let Some(total) = objective.metric_sum(d, pred, target)? {
            d.axpy(&self.metric, &total, 1.0)?;
        }
        for (m, sum) in self.tracked.metrics.iter().zip(&self.stats) {
            let batch = m.batch_stats(d, pred, target, self.tracked.loss)?;
            d.axpy(sum, &batch, 1.0)?;
        }
        Ok(())
    }

    /// (loss sum, metric sum, each tracked metric's statistics): one readback.
    fn read(&self, d: &Device) -> Result<(f32, f32, Vec<Vec<f32>>)> {
        let v = d.to_f32(&self.flat)?;
        let stats = self
            .stats
            .iter()
            .map(|s| {
                let at = s.offset() - self.flat.offset();
                v[at..at + s.len()].to_vec()
            })
            .collect();
        Ok((v[0], v[d.pack_alignment()], stats))
    }

    /// The tracked metrics' values over `samples` samples (one readback; none without any),
    /// their statistics summed over a group's ranks.
    fn tracked_values(
        &self,
        d: &Device,
        samples: usize,
        group: Option<&dyn Collective>,
    ) -> Result<Vec<f32>> {
        if self.tracked.metrics.is_empty() {
            return Ok(vec![]);
        }
        let (_, _, mut stats) = self.read(d)?;
        if let Some(g) = group {
            let mut all: Vec<f32> = stats.concat();
            g.all_reduce_sum(&mut all)?;
            let mut rest = &all[..];
            for s in &mut stats {
                let (mine, next) = rest.split_at(s.len());
                s.copy_from_slice(mine);
                rest = next;
            }
        }
        Ok(tracked_values(&self.tracked, &stats, samples))
    }
}

fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(
        seed.wrapping_add(epoch as u64)
            .wrapping_mul(0x2545_F491_4F6C_DD1D),
    ));
    idx
}

fn per_step(c: &Counters, steps: usize) -> [f64; 5] {
    let s = steps.max(1) as f64;
    [
        c.dispatches as f64 / s,
        c.submits as f64 / s,
        c.readbacks as f64 / s,
        c.bytes_up as f64 / s,
        c.bytes_down as f64 / s,
    ]
}

/// A training run: a config, optionally a loss of the user's own, checkpoints, and callbacks.
///
/// ```no_run
/// # use kiln_train::{Fit, TrainConfig, Progress, Dataset};
/// # use kiln_graph::{LossKind, Model, ParamStore};
/// # fn run(model: &dyn Model, params: &ParamStore, train: &Dataset) -> kiln_train::Result<()> {
/// let trained = Fit::new(TrainConfig::new(LossKind::MeanSquaredError).epochs(20))
///     .callback(Progress::new())
///     .run(model, params, train, None)?;
/// println!("final loss {}", trained.history.epochs.last().unwrap().loss);
/// # Ok(()) }
/// ```
pub struct Fit<'a> {
    config: TrainConfig,
    objective: Option<&'a dyn Objective>,
    checkpoints: Option<Checkpoints>,
    callbacks: Vec<Box<dyn Callback + 'a>>,
    /// Devices for replicas beyond the first ([`Fit::replicas`]).
    devices: Vec<Device>,
    /// Those replicas, while the run trains.
    replicas: Option<Replicas>,
    /// The process group this run is one rank of ([`Fit::collective`]).
    group: Option<&'a dyn Collective>,
}

/// The running state of one epoch's steps.
struct EpochRun {
    epoch: usize,
    /// Step losses not yet read, in `step_losses`.
    pending: usize,
    /// Samples seen this epoch.
    seen: usize,
    /// Steps taken this epoch.
    steps: usize,
    /// The epoch's loss and metric sums as last read.
    sums_read: (f32, f32),
}

impl<'a> Fit<'a> {
    /// A run with `config` and no callbacks: it writes and prints nothing.
    pub fn new(config: TrainConfig) -> Self {
        Fit {
            config,
            objective: None,
            checkpoints: None,
            callbacks: vec![],
            devices: vec![],
            replicas: None,
            group: None,
        }
    }

    /// Trains as one rank of a process group (MPI's: each rank a process with its own device),
    /// with DistributedDataParallel's semantics: every rank reads the same global batches, takes
    /// its share of each in sample order, and the ranks' gradients are summed every step
    /// ([`kiln_graph::train_step_shared`]), so that N ranks train what one process with the same
    /// global batch trains. Rank 0's parameters and optimizer state (a resumed checkpoint's)
    /// are every rank's at the start, and a rank whose model, settings, data or kiln version
    /// differ from rank 0's is refused there, on every rank. Losses and metrics are summed over
    /// the ranks, so every rank reports the global figures; give checkpoints and callbacks that
    /// write to rank 0 alone. A stop (early stopping, a callback's) on any rank stops all.
    pub fn collective(mut self, group: &'a dyn Collective) -> Self {
        self.group = Some(group);
        self
    }

    /// Trains data-parallel: a replica of the parameters and optimizer on each of `devices`
    /// besides the first (the parameters given to [`Fit::run`]), each global batch split
    /// between them in sample order and their gradients summed every step
    /// ([`kiln_graph::Replicas`]), so that the run trains what one device would, within float
    /// rounding. Checkpoints, history and callbacks see the first replica, which holds the
    /// model; the others are made its copies again at each epoch's start (after a resume, or a
    /// callback that set the weights).
    pub fn replicas(mut self, devices: Vec<Device>) -> Self {
        self.devices = devices;
        self
    }

    /// Trains on `objective` (e.g. a [`kiln_graph::LossFn`]) instead of the config's loss.
    pub fn loss(mut self, objective: &'a dyn Objective) -> Self {
        self.objective = Some(objective);
        self
    }

    /// Keeps checkpoints (and resumes from them) in a run folder: restored before any callback
    /// starts, written after every epoch before the callbacks see it.
    pub fn checkpoints(mut self, checkpoints: Checkpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Adds a callback; callbacks run in the order added.
    pub fn callback(mut self, callback: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Trains `model` on `train`, validating on `val` after every epoch.
    pub fn run(
        mut self,
        model: &dyn Model,
        params: &ParamStore,
        train: &Dataset,
        val: Option<&Dataset>,
    ) -> Result<Trained> {
        let cfg = self.config.clone();
        check_inputs(&cfg, train, val)?;
        let (objective, tracked) = objective_and_tracked(self.objective, &cfg)?;
        let mut optimizer = Optimizer::new(cfg.optimizer, params)?.with_clip(cfg.clip);
        let history = History {
            metric: objective.metric_name().map(str::to_string),
            higher_is_better: objective.higher_is_better(),
            tracked: tracked.metrics.clone(),
            ..History::default()
        };
        let mut state = FitState {
            model,
            params,
            optimizer: &mut optimizer,
            config: &cfg,
            history,
            first_epoch: 1,
            steps_per_epoch: train.len().div_ceil(cfg.batch),
            validates: val.is_some_and(|v| !v.is_empty()),
            stop: Default::default(),
        };
        check_schedule(&cfg, &state)?;
        let notes = match &mut self.checkpoints {
            Some(c) => c.begin(&mut state)?,
            None => vec![],
        };
        self.start_parallel(&mut state, train)?;
        // A resumed run tracks what the run began with.
        let tracked = Tracked {
            metrics: state.history.tracked.clone(),
            ..tracked
        };
        for cb in &mut self.callbacks {
            for note in &notes {
                cb.on_log(note);
            }
        }
        for cb in &mut self.callbacks {
            cb.on_train_begin(&state)?;
        }
        let d = params.device().clone();
        // The interval's step losses, the sum of every parameter, then the epoch's running loss
        // and metric sums: one readback per report interval checks the first two (a diverged
        // run's parameters are NaN or infinite even where a clamped loss is not) and reports the
        // running means.
        let step_losses = d.zeros(&[cfg.report_every.max(1) + 3])?;
        for epoch in state.first_epoch..=cfg.epochs {
            let stats = self.epoch(
                &mut state,
                epoch,
                (objective, &tracked),
                &step_losses,
                train,
            )?;
            let (val_loss, val_metric, val_tracked) = match val {
                Some(v) if !v.is_empty() => {
                    let e = evaluate_tracked(model, params, v, cfg.batch, objective, &tracked)?;
                    (Some(e.loss), e.metric, e.tracked)
                }
                _ => (None, None, vec![]),
            };
            state.history.epochs.push(EpochStats {
                val_loss,
                val_metric,
                val_tracked,
                ..stats
            });
            if let Some(c) = &mut self.checkpoints {
                c.epoch_end(&state)?;
            }
            for cb in &mut self.callbacks {
                cb.on_epoch_end(&state)?;
            }
            if self.stops_after_epoch(&state)? {
                break;
            }
        }
        if let Some(c) = &mut self.checkpoints {
            c.train_end(&state)?;
        }
        for cb in &mut self.callbacks {
            cb.on_train_end(&state)?;
        }
        let stopped = state.stop.take();
        let history = state.history;
        Ok(Trained {
            history,
            optimizer,
            stopped,
        })
    }

    /// Data parallelism's start, once the run's state is restored: a group's ranks agree and
    /// take rank 0's state; replicas are made on the other devices.
    fn start_parallel(&mut self, state: &mut FitState, train: &Dataset) -> Result<()> {
        if let Some(group) = self.group {
            crate::group::start(group, state, state.config, train)?;
        }
        if !self.devices.is_empty() {
            let replicas = Replicas::new(state.params, state.optimizer, &self.devices)?;
            self.replicas = Some(replicas);
        }
        Ok(())
    }

    /// Whether the run stops after this epoch: a callback asked to (its reason goes to every
    /// callback), on this rank or any other of a group.
    fn stops_after_epoch(&mut self, state: &FitState) -> Result<bool> {
        let reason = state.stopping();
        let stop = crate::group::any(self.group, reason.is_some())?;
        if let Some(reason) = reason.filter(|_| stop) {
            for cb in &mut self.callbacks {
                cb.on_log(&reason);
            }
        }
        Ok(stop)
    }

    /// One step on the global batch `global_chunk` (sample indices into `train`): this rank's
    /// share of it (all of it without a group), its batch (None when the share is empty) and the
    /// step's loss and predictions (None likewise), through the group, the replicas or alone.
    fn step<'c>(
        &mut self,
        state: &mut FitState,
        objective: &dyn Objective,
        train: &Dataset,
        global_chunk: &'c [usize],
    ) -> Result<(&'c [usize], Option<Batch>, Option<StepOutput>)> {
        let (model, params, seed) = (state.model, state.params, state.config.seed);
        let shard = match self.group {
            Some(g) => shard_of(global_chunk.len(), g.rank(), g.size()),
            None => shard_of(global_chunk.len(), 0, 1),
        };
        let chunk = &global_chunk[shard.start..shard.start + shard.len];
        let batch = match chunk {
            [] => None,
            _ => Some(train.batch(chunk, params.device())?),
        };
        let opt = &mut *state.optimizer;
        let out = match (&mut self.replicas, self.group, &batch) {
            (_, Some(group), _) => {
                let share = (batch.as_ref(), shard);
                train_step_shared(model, params, opt, objective, share, seed, group)?
            }
            (Some(r), None, Some(b)) => Some(r.step(model, (params, opt), objective, b, seed)?),
            (None, None, Some(b)) => Some(train_step(model, params, opt, objective, b, seed)?),
            (_, None, None) => unreachable!("a whole batch is never empty"),
        };
        Ok((chunk, batch, out))
    }

    /// One epoch's steps over a seeded shuffle; its figures (without validation).
    fn epoch(
        &mut self,
        state: &mut FitState,
        epoch: usize,
        (objective, tracked): (&dyn Objective, &Tracked),
        step_losses: &Tensor,
        train: &Dataset,
    ) -> Result<EpochStats> {
        let (params, cfg) = (state.params, state.config);
        let d = params.device().clone();
        let started = Instant::now();
        let before = d.counters();
        let order = epoch_order(train.len(), cfg.seed, epoch);
        let sums = Sums::new(&d, tracked)?;
        for cb in &mut self.callbacks {
            cb.on_epoch_begin(state, epoch)?;
        }
        if let Some(r) = &mut self.replicas {
            r.sync(params, state.optimizer)?;
        }
        let mut run = EpochRun {
            epoch,
            pending: 0,
            seen: 0,
            steps: 0,
            sums_read: (0.0, 0.0),
        };
        for (i, global_chunk) in order.chunks(cfg.batch).enumerate() {
            if let Some(schedule) = &cfg.schedule {
                let base = cfg.optimizer.lr();
                let lr = schedule.lr(base, state.optimizer.steps(), &state.history);
                state.optimizer.set_lr(lr);
            }
            let (chunk, batch, out) = self.step(state, objective, train, global_chunk)?;
            match (&out, &batch) {
                (Some(out), Some(batch)) => {
                    sums.add(
                        &d,
                        &out.loss,
                        chunk.len(),
                        &out.pred,
                        &batch.target,
                        objective,
                    )?;
                    d.copy_into(step_losses, run.pending, &out.loss)?;
                }
                // An empty share: its loss slot holds 0 in the ranks' sum.
                _ => d.copy_into(step_losses, run.pending, &d.zeros(&[1])?)?,
            }
            run.pending += 1;
            run.seen += global_chunk.len();
            run.steps += 1;
            let mut running = None;
            if run.pending == cfg.report_every.max(1) || i + 1 == state.steps_per_epoch {
                running = Some(self.report(state, &mut run, step_losses, &sums, objective)?);
            }
            let end = BatchEnd {
                epoch,
                batch: i,
                step: state.optimizer.steps(),
                running,
            };
            for cb in &mut self.callbacks {
                cb.on_batch_end(state, &end)?;
            }
            let stopped = state.stop.borrow().is_some();
            if crate::group::any(self.group, stopped)? {
                // A callback stopped the run: the epoch ends with the steps it took.
                if run.pending > 0 {
                    self.report(state, &mut run, step_losses, &sums, objective)?;
                }
                break;
            }
        }
        let tracked = sums.tracked_values(&d, run.seen, self.group)?;
        let seconds = started.elapsed().as_secs_f64();
        let work = d.counters().since(&before);
        let [dispatches, submits, readbacks, up, down] = per_step(&work, run.steps);
        let n = run.seen.max(1) as f32;
        Ok(EpochStats {
            epoch,
            loss: run.sums_read.0 / n,
            metric: objective.metric_name().map(|_| run.sums_read.1 / n),
            tracked,
            val_loss: None,
            val_metric: None,
            val_tracked: vec![],
            learning_rate: Some(state.optimizer.lr()),
            seconds,
            samples_per_sec: run.seen as f64 / seconds,
            dispatches_per_step: dispatches,
            submits_per_step: submits,
            readbacks_per_step: readbacks,
            bytes_up_per_step: up,
            bytes_down_per_step: down,
        })
    }

    /// The end of a report interval: one readback of the interval's step losses, the sum of the
    /// parameters and the running sums; a non-finite loss or parameter stops the run, naming
    /// its step. Returns the epoch's running mean loss and metric (None without one).
    fn report(
        &mut self,
        state: &FitState,
        run: &mut EpochRun,
        step_losses: &Tensor,
        sums: &Sums,
        objective: &dyn Objective,
    ) -> Result<(f32, Option<f32>)> {
        let d = state.params.device();
        let report = state.config.report_every.max(1);
        let flat = state.params.values_flat();
        let flat = flat.reshape(&[1, flat.len()])?;
        d.copy_into(step_losses, report, &d.reduce(ReduceOp::Sum, &flat, 1)?)?;
        d.copy_into(step_losses, report + 1, &sums.loss)?;
        d.copy_into(step_losses, report + 2, &sums.metric)?;
        let mut losses = d.to_f32(step_losses)?;
        if let Some(g) = self.group {
            // The ranks' step losses, parameter sums and running sums, added: every rank sees
            // a non-finite one, and reports the global figures.
            g.all_reduce_sum(&mut losses)?;
        }
        let step = state.optimizer.steps();
        let pending = run.pending;
        let bad = match losses[..pending].iter().position(|l| !l.is_finite()) {
            Some(k) => Some(("the loss", losses[k], step - (pending - 1 - k) as u64)),
            None if !losses[report].is_finite() => Some(("the parameters", losses[report], step)),
            None => None,
        };
        if let Some((what, value, step)) = bad {
            for cb in &mut self.callbacks {
                cb.on_stop(state);
            }
            return Err(Error::NonFinite {
                what,
                value,
                step,
                epoch: run.epoch,
                kept: self
                    .checkpoints
                    .as_ref()
                    .map(|c| {
                        format!(
                            " The last good checkpoint is kept in {}.",
                            c.dir().display()
                        )
                    })
                    .unwrap_or_default(),
            });
        }
        run.sums_read = (losses[report + 1], losses[report + 2]);
        run.pending = 0;
        let seen = run.seen as f32;
        let metric = objective.metric_name().map(|_| run.sums_read.1 / seen);
        Ok((run.sums_read.0 / seen, metric))
    }
}

/// What a run minimises (the loss given to [`Fit::loss`], else the config's), and the metrics it
/// tracks beside the objective's own.
fn objective_and_tracked<'c>(
    custom: Option<&'c dyn Objective>,
    cfg: &'c TrainConfig,
) -> Result<(&'c dyn Objective, Tracked)> {
    let objective: &'c dyn Objective =
        match (custom, &cfg.loss) {
            (Some(custom), _) => custom,
            (None, Some(loss)) => loss,
            (None, None) => return Err(Error::config(
                "loss",
                "the run has none: give TrainConfig::new(LossKind::...) or Fit::loss(&your_loss)",
            )),
        };
    let builtin = if custom.is_some() { None } else { cfg.loss };
    Ok((objective, Tracked::new(&cfg.metrics, objective, builtin)))
}

/// Refuses a plateau schedule that watches a figure the run does not compute.
fn check_schedule(cfg: &TrainConfig, state: &FitState) -> Result<()> {
    let Some(crate::LrSchedule::Plateau { monitor, .. }) = &cfg.schedule else {
        return Ok(());
    };
    if monitor.computed(&state.history, state.validates) {
        return Ok(());
    }
    let name = monitor.name(&state.history);
    Err(Error::config(
        "schedule",
        format!("the plateau schedule watches {name}, which this run does not compute (no validation set, or a loss without a metric)"),
    ))
}

/// Refuses data and settings that cannot train, before anything is allocated.
fn check_inputs(cfg: &TrainConfig, train: &Dataset, val: Option<&Dataset>) -> Result<()> {
    train.validate()?;
    if let Some(v) = val {
        v.validate()?;
    }
    cfg.validate()?;
    if train.is_empty() {
        return Err(Error::config("fit", "the training set is empty"));
    }
    Ok(())
}
