//! The training loop: what Keras's `fit` gives its users. Epochs over seeded shuffles, batches,
//! validation, a progress bar, history (CSV, JSON, PNG), atomic checkpoints, resume, and a stop with
//! the exact step when the loss stops being finite.
//!
//! One step: upload the batch; zero the packed gradients; forward on a training tape; loss;
//! backward; one fused optimizer dispatch; loss and accuracy added to device accumulators. Nothing is
//! read back until the reporting interval ends (`report_every` steps, and every epoch's end).

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use kiln_device::{Counters, Device, Loss, Metric, ReduceOp, Tensor};
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint};
use crate::history::{EpochStats, History};
use crate::layers::Module;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::params::ParamStore;
use crate::siamese::ModelConfig;
use crate::tape::Tape;
use crate::{Error, Result};

/// Inputs of a dataset: f32 features or u32 token ids, `len` samples of shape `sample_shape`.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    F32(Vec<f32>),
    Ids(Vec<u32>),
}

/// Samples on the host: inputs (len, sample_shape...) and targets (len, target_shape...).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub inputs: Inputs,
    pub sample_shape: Vec<usize>,
    pub targets: Vec<f32>,
    pub target_shape: Vec<usize>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        let per: usize = self.target_shape.iter().product();
        self.targets.len() / per.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that inputs and targets agree on the number of samples.
    pub fn validate(&self) -> Result<()> {
        let per_x: usize = self.sample_shape.iter().product();
        let n_x = match &self.inputs {
            Inputs::F32(v) => v.len(),
            Inputs::Ids(v) => v.len(),
        };
        if per_x == 0 || n_x % per_x != 0 || n_x / per_x != self.len() {
            return Err(Error::model(
                "dataset",
                format!(
                    "{n_x} input values of shape {:?} do not match {} targets",
                    self.sample_shape,
                    self.len()
                ),
            ));
        }
        Ok(())
    }

    /// The samples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        let per_x: usize = self.sample_shape.iter().product();
        let per_y: usize = self.target_shape.iter().product();
        let pick = |v: &[f32], per: usize| {
            idx.iter()
                .flat_map(|&i| v[i * per..(i + 1) * per].iter().copied())
                .collect()
        };
        Dataset {
            inputs: match &self.inputs {
                Inputs::F32(v) => Inputs::F32(pick(v, per_x)),
                Inputs::Ids(v) => Inputs::Ids(
                    idx.iter()
                        .flat_map(|&i| v[i * per_x..(i + 1) * per_x].iter().copied())
                        .collect(),
                ),
            },
            sample_shape: self.sample_shape.clone(),
            targets: pick(&self.targets, per_y),
            target_shape: self.target_shape.clone(),
        }
    }

    /// (train, validation): a seeded shuffle, the last `fraction` held out.
    pub fn split(&self, fraction: f32, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        let n_val = ((self.len() as f32) * fraction).round() as usize;
        let (train, val) = idx.split_at(self.len() - n_val);
        (self.select(train), self.select(val))
    }

    fn upload(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let n = self.len();
        let mut xs = vec![n];
        xs.extend(&self.sample_shape);
        let mut ys = vec![n];
        ys.extend(&self.target_shape);
        let x = match &self.inputs {
            Inputs::F32(v) => device.from_f32(v, &xs)?,
            Inputs::Ids(v) => device.from_u32(v, &xs)?,
        };
        Ok((x, device.from_f32(&self.targets, &ys)?))
    }
}

/// Which loss; the matching accuracy follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// On probabilities (a sigmoid output), clamped as Keras does.
    BinaryCrossentropy,
    BinaryCrossentropyFromLogits,
    /// On probabilities (a softmax output), with one-hot (or distribution) targets.
    CategoricalCrossentropy,
    /// On logits, with one-hot (or distribution) targets.
    CategoricalCrossentropyFromLogits,
}

impl LossKind {
    pub fn loss(self) -> Loss {
        match self {
            LossKind::BinaryCrossentropy => Loss::Bce,
            LossKind::BinaryCrossentropyFromLogits => Loss::BceLogits,
            LossKind::CategoricalCrossentropy => Loss::Cce,
            LossKind::CategoricalCrossentropyFromLogits => Loss::CceLogits,
        }
    }

    pub fn metric(self) -> Metric {
        match self {
            LossKind::BinaryCrossentropy => Metric::BinaryAccuracy { threshold: 0.5 },
            LossKind::BinaryCrossentropyFromLogits => Metric::BinaryAccuracy { threshold: 0.0 },
            LossKind::CategoricalCrossentropy | LossKind::CategoricalCrossentropyFromLogits => {
                Metric::CategoricalAccuracy
            }
        }
    }
}

/// How to train; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
    pub loss: LossKind,
    pub optimizer: OptimizerConfig,
    /// Steps between reads of the running loss (also the NaN check's granularity of reading).
    pub report_every: usize,
}

/// Where and how loudly.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub quiet: bool,
    /// Extra metadata written into every checkpoint and saved model (e.g. a tokenizer's
    /// vocabulary), so that a model file is self-contained.
    pub metadata: Vec<(String, String)>,
}

/// Loss and accuracy of a model on a dataset, computed on the device, read once.
pub fn evaluate(
    model: &dyn Module,
    params: &ParamStore,
    data: &Dataset,
    batch: usize,
    loss: LossKind,
) -> Result<(f32, f32)> {
    let d = params.device();
    let sums = Sums::new(d)?;
    for start in (0..data.len()).step_by(batch.max(1)) {
        let idx: Vec<usize> = (start..(start + batch).min(data.len())).collect();
        let (x, y) = data.select(&idx).upload(d)?;
        let tape = Tape::inference(d);
        let out = model.forward(&tape, params, &x)?;
        let pred = out.value().reshape(y.shape())?;
        let per = d.loss_forward(loss.loss(), &pred, &y)?;
        let mean = d.reduce(ReduceOp::Mean, &per.reshape(&[1, per.len()])?, 1)?;
        sums.add(d, &mean, idx.len(), &pred, &y, loss)?;
    }
    let (l, c) = sums.read(d)?;
    Ok((l / data.len() as f32, c / data.len() as f32))
}

/// Running sums of one pass over data, on the device: the loss summed over samples and the number
/// right, as two aligned views of one buffer, so that both are `axpy` targets and one readback
/// returns both.
struct Sums {
    flat: Tensor,
    loss: Tensor,
    correct: Tensor,
}

impl Sums {
    fn new(d: &Device) -> Result<Sums> {
        let (flat, mut views) = d.packed_zeros(&[vec![1], vec![1]])?;
        let correct = views.pop().expect("two views");
        let loss = views.pop().expect("two views");
        Ok(Sums {
            flat,
            loss,
            correct,
        })
    }

    /// Adds `n` samples' mean loss (a [1] tensor already on the device) and their correct count.
    fn add(
        &self,
        d: &Device,
        mean_loss: &Tensor,
        n: usize,
        pred: &Tensor,
        y: &Tensor,
        loss: LossKind,
    ) -> Result<()> {
        d.axpy(&self.loss, mean_loss, n as f32)?;
        let correct = d.metric(loss.metric(), pred, y)?;
        let total = d.reduce(ReduceOp::Sum, &correct.reshape(&[1, correct.len()])?, 1)?;
        d.axpy(&self.correct, &total, 1.0)?;
        Ok(())
    }

    /// (loss sum, correct count): one readback.
    fn read(&self, d: &Device) -> Result<(f32, f32)> {
        let v = d.to_f32(&self.flat)?;
        Ok((v[0], v[d.pack_alignment()]))
    }
}

/// The key of step `step`'s dropout masks: one independent stream per step (Threefry keys).
fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(
        seed.wrapping_add(epoch as u64)
            .wrapping_mul(0x2545_F491_4F6C_DD1D),
    ));
    idx
}

/// A trained model: what `fit` returns.
pub struct Trained {
    pub history: History,
    pub optimizer: Optimizer,
}

fn save_checkpoint(
    opts: &RunOptions,
    model: &dyn Module,
    params: &ParamStore,
    opt: &Optimizer,
    cfg: &TrainConfig,
    history: &History,
    epoch: usize,
) -> Result<()> {
    let path = checkpoint::epoch_path(&opts.out.join("checkpoints"), epoch);
    let mut metadata: std::collections::HashMap<String, String> =
        opts.metadata.iter().cloned().collect();
    metadata.insert("epoch".into(), epoch.to_string());
    metadata.insert("seed".into(), cfg.seed.to_string());
    // Every random draw derives from these: the epoch's shuffle from (seed, epoch), each step's
    // dropout key from (seed, step); restoring them restores the generators exactly.
    let rng = serde_json::json!({"seed": cfg.seed, "epoch": epoch, "step": opt.steps(), "shuffle": "StdRng(seed, epoch)", "dropout": "Threefry-2x32 key seed ^ (step + 1) * 0x9E3779B97F4A7C15"});
    metadata.insert("rng_state".into(), rng.to_string());
    metadata.insert("model_config".into(), model.config_json());
    metadata.insert(
        "train_config".into(),
        serde_json::to_string(cfg).expect("serializes"),
    );
    metadata.insert(
        "history".into(),
        serde_json::to_string(history).expect("serializes"),
    );
    Checkpoint {
        params: params.to_host()?,
        optimizer: Some(opt.state(params)?),
        metadata,
    }
    .save(&path)
}

/// Writes the final model: weights plus the config that rebuilds it.
pub fn save_model(
    path: &Path,
    model: &dyn Module,
    params: &ParamStore,
    extra: &[(String, String)],
) -> Result<()> {
    let mut metadata: std::collections::HashMap<String, String> = extra.iter().cloned().collect();
    metadata.insert("model_config".into(), model.config_json());
    Checkpoint {
        params: params.to_host()?,
        optimizer: None,
        metadata,
    }
    .save(path)
}

/// Reads a saved model's config (to rebuild it) and weights.
pub fn load_model(path: &Path) -> Result<(ModelConfig, Checkpoint)> {
    let ck = Checkpoint::load(path)?;
    let cfg = ck.meta("model_config").ok_or_else(|| Error::Checkpoint {
        path: path.into(),
        message: "no model_config in metadata".into(),
    })?;
    let cfg = serde_json::from_str(cfg).map_err(|e| Error::Checkpoint {
        path: path.into(),
        message: format!("model_config: {e}"),
    })?;
    Ok((cfg, ck))
}

fn progress(quiet: bool, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
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

/// Trains `model` on `train`, validating on `val` after every epoch. Writes `out/history.*`,
/// `out/checkpoints/epoch-NNNN.safetensors` (atomically, after every epoch), `out/best.safetensors`
/// (the epoch with the best validation accuracy so far) and `out/model.safetensors` (the last).
/// With `resume`, continues from the newest checkpoint in `out/checkpoints` and reaches the same
/// weights as an uninterrupted run on the same device.
pub fn fit(
    model: &dyn Module,
    params: &ParamStore,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    opts: &RunOptions,
) -> Result<Trained> {
    train.validate()?;
    if let Some(v) = val {
        v.validate()?;
    }
    if cfg.batch == 0 || train.is_empty() {
        return Err(Error::model(
            "fit",
            "batch size and training set must be non-empty",
        ));
    }
    let d = params.device().clone();
    let ck_dir = opts.out.join("checkpoints");
    std::fs::create_dir_all(&ck_dir).map_err(|e| Error::io(&ck_dir, e))?;
    let mut opt = Optimizer::new(cfg.optimizer, params)?;
    let mut history = History::default();
    let mut first_epoch = 1;

    if opts.resume {
        if let Some((epoch, path)) = checkpoint::latest(&ck_dir) {
            let ck = Checkpoint::load(&path)?;
            let saved_model = ck.meta("model_config").unwrap_or_default();
            if saved_model != model.config_json() {
                return Err(Error::Checkpoint {
                    path,
                    message: "it was written by a different model configuration".into(),
                });
            }
            params.load(&ck.params)?;
            let (step, m, v) = ck.optimizer.clone().ok_or_else(|| Error::Checkpoint {
                path: path.clone(),
                message: "no optimizer state".into(),
            })?;
            opt.load_state(params, step, &m, &v)?;
            history = serde_json::from_str(ck.meta("history").unwrap_or("{}")).unwrap_or_default();
            first_epoch = epoch + 1;
            if !opts.quiet {
                eprintln!(
                    "resuming from {} (epoch {epoch}, step {step})",
                    path.display()
                );
            }
        }
    }

    let steps_per_epoch = train.len().div_ceil(cfg.batch);
    let report = cfg.report_every.max(1);
    let step_losses = d.zeros(&[report])?;
    for epoch in first_epoch..=cfg.epochs {
        let started = Instant::now();
        let before = d.counters();
        let order = epoch_order(train.len(), cfg.seed, epoch);
        let sums = Sums::new(&d)?;
        let bar = progress(opts.quiet, steps_per_epoch, epoch, cfg.epochs);
        let mut seen = 0usize;
        let mut pending = 0usize;
        for (i, chunk) in order.chunks(cfg.batch).enumerate() {
            let step = opt.steps();
            let (x, y) = train.select(chunk).upload(&d)?;
            params.zero_grad()?;
            let tape = Tape::training(&d, step_seed(cfg.seed, step), 0);
            let out = model.forward(&tape, params, &x)?;
            let pred = out.value().reshape(y.shape())?;
            let loss = tape.loss(cfg.loss.loss(), &tape.reshape(&out, y.shape())?, &y)?;
            tape.backward(&loss)?;
            opt.step(params)?;
            sums.add(&d, loss.value(), chunk.len(), &pred, &y, cfg.loss)?;
            d.copy_into(&step_losses, pending, loss.value())?;
            pending += 1;
            seen += chunk.len();
            bar.inc(1);
            if pending == report || i + 1 == steps_per_epoch {
                let losses = d.to_f32(&step_losses)?;
                if let Some(k) = losses[..pending].iter().position(|l| !l.is_finite()) {
                    bar.abandon();
                    return Err(Error::NonFinite {
                        value: losses[k],
                        step: step + 1 - (pending - 1 - k) as u64,
                        epoch,
                        checkpoints: ck_dir,
                    });
                }
                let s = sums.read(&d)?;
                bar.set_message(format!(
                    "loss {:.4} acc {:.4}",
                    s.0 / seen as f32,
                    s.1 / seen as f32
                ));
                pending = 0;
            }
        }
        bar.finish_and_clear();
        let s = sums.read(&d)?;
        let seconds = started.elapsed().as_secs_f64();
        let work = d.counters().since(&before);
        let (val_loss, val_accuracy) = match val {
            Some(v) if !v.is_empty() => {
                let (l, a) = evaluate(model, params, v, cfg.batch, cfg.loss)?;
                (Some(l), Some(a))
            }
            _ => (None, None),
        };
        let [dispatches, submits, readbacks, up, down] = per_step(&work, steps_per_epoch);
        let stats = EpochStats {
            epoch,
            loss: s.0 / train.len() as f32,
            accuracy: s.1 / train.len() as f32,
            val_loss,
            val_accuracy,
            seconds,
            samples_per_sec: train.len() as f64 / seconds,
            dispatches_per_step: dispatches,
            submits_per_step: submits,
            readbacks_per_step: readbacks,
            bytes_up_per_step: up,
            bytes_down_per_step: down,
        };
        let val_text = match (val_loss, val_accuracy) {
            (Some(l), Some(a)) => format!(" - val_loss {l:.4} - val_accuracy {a:.4}"),
            _ => String::new(),
        };
        eprintln!(
            "epoch {epoch}/{} - {seconds:.1}s - loss {:.4} - accuracy {:.4}{val_text} - {:.0} samples/s - per step: {dispatches:.0} dispatches, {submits:.1} submits, {readbacks:.2} readbacks",
            cfg.epochs, stats.loss, stats.accuracy, stats.samples_per_sec
        );
        history.epochs.push(stats);
        save_checkpoint(opts, model, params, &opt, cfg, &history, epoch)?;
        // The best epoch so far by validation accuracy is kept as a model of its own: a run that
        // overfits later does not lose it.
        if val_accuracy.is_some() && history.best_val_accuracy().map(|b| b.0) == Some(epoch) {
            save_model(
                &opts.out.join("best.safetensors"),
                model,
                params,
                &opts.metadata,
            )?;
        }
        write_history(&history, &opts.out)?;
    }
    save_model(
        &opts.out.join("model.safetensors"),
        model,
        params,
        &opts.metadata,
    )?;
    Ok(Trained {
        history,
        optimizer: opt,
    })
}

/// history.csv, history.json, history.png in `out`.
pub fn write_history(history: &History, out: &Path) -> Result<()> {
    history.write_csv(&out.join("history.csv"))?;
    history.write_json(&out.join("history.json"))?;
    history.plot(&out.join("history.png"), "training history")
}
