//! Tier 3: training. Small models must learn; runs must be reproducible, resumable and safe.

use std::path::{Path, PathBuf};

use kiln_device::testing::{assert_close, each_device, gpu_device, random_f32, Tolerance};
use kiln_device::{Device, Tensor};
use kiln_graph::checkpoint::{self, Checkpoint};
use kiln_graph::layers::{DenseConfig, DropoutConfig};
use kiln_graph::*;
use kiln_train::*;

fn dense(units: usize, activation: Activation) -> LayerConfig {
    DenseConfig::new(units).activation(activation).into()
}

/// A small classifier with dropout, on seeded blobs: exercises every part of a step.
fn setup() -> (SequentialConfig, Dataset, TrainConfig) {
    let n = 96;
    let x = random_f32(1, n * 4, -1.0, 1.0);
    let y: Vec<f32> = (0..n)
        .map(|i| (x[i * 4] + x[i * 4 + 1] * x[i * 4 + 2] > 0.0) as u32 as f32)
        .collect();
    let model = SequentialConfig::new(&[4])
        .add(dense(16, Activation::Relu))
        .add(DropoutConfig::new(0.2))
        .add(dense(1, Activation::Sigmoid));
    let data = Dataset::single(Column::f32(x, &[4]), Column::f32(y, &[1]));
    let config = TrainConfig {
        epochs: 4,
        batch: 16,
        seed: 5,
        loss: Some(LossKind::BinaryCrossentropy),
        optimizer: OptimizerConfig::adam(),
        schedule: None,
        clip: None,
        report_every: 4,
        metrics: vec![],
    };
    (model, data, config)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(
    d: &Device,
    out: &Path,
    epochs: usize,
    resume: bool,
) -> (History, Vec<checkpoint::NamedTensor>) {
    run_edited(d, out, epochs, resume, |_| {})
}

/// `run` with the settings edited (a schedule, clipping, another optimizer).
fn run_edited(
    d: &Device,
    out: &Path,
    epochs: usize,
    resume: bool,
    edit: impl Fn(&mut TrainConfig),
) -> (History, Vec<checkpoint::NamedTensor>) {
    run_model(d, out, epochs, resume, setup().0, edit)
}

/// `run_edited` with another model on `setup`'s data.
fn run_model(
    d: &Device,
    out: &Path,
    epochs: usize,
    resume: bool,
    model_cfg: SequentialConfig,
    edit: impl Fn(&mut TrainConfig),
) -> (History, Vec<checkpoint::NamedTensor>) {
    let (_, data, mut cfg) = setup();
    cfg.epochs = epochs;
    edit(&mut cfg);
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(d).unwrap();
    let opts = RunOptions {
        metadata: vec![],
        out: Some(out.to_path_buf()),
        resume,
        verbose: 0,
        ..Default::default()
    };
    let trained = fit(&model, &params, &data, None, &cfg, &opts).unwrap();
    (trained.history, params.to_host().unwrap())
}

/// The small model of `setup`, built on `d`, with its optimizer.
struct Bench {
    model: Sequential,
    params: ParamStore,
    opt: Optimizer,
    data: Dataset,
    batch: usize,
}

fn bench(d: &Device) -> Bench {
    let (model_cfg, data, cfg) = setup();
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(d).unwrap();
    let opt = Optimizer::new(cfg.optimizer, &params).unwrap();
    Bench {
        model,
        params,
        opt,
        data,
        batch: cfg.batch,
    }
}

impl Bench {
    /// One training step by hand with the public API (batch `step`, dropout key `seed`); its loss.
    fn step(&mut self, d: &Device, step: usize, seed: u64) -> Tensor {
        let idx: Vec<usize> = (0..self.batch)
            .map(|i| (step * self.batch + i) % self.data.len())
            .collect();
        let batch = self.data.batch(&idx, d).unwrap();
        self.params.zero_grad().unwrap();
        let tape = Tape::training(d, seed, 0);
        let x = tape.constant(batch.inputs[0].clone());
        let out = self.model.forward(&tape, &self.params, &x).unwrap();
        let loss = LossKind::BinaryCrossentropy
            .loss(&tape, &out, &batch.target)
            .unwrap();
        tape.backward(&loss).unwrap();
        self.opt.step(&self.params).unwrap();
        loss.value().clone()
    }
}

/// The per-step losses of the first `steps` steps.
fn step_losses(d: &Device, steps: usize) -> Vec<f32> {
    let mut b = bench(d);
    (0..steps)
        .map(|s| d.to_f32(&b.step(d, s, 77 + s as u64)).unwrap()[0])
        .collect()
}

#[test]
fn the_first_20_steps_give_the_same_losses_on_gpu_and_cpu() {
    let Some(gpu) = gpu_device("first_20_steps_gpu_vs_cpu") else {
        return;
    };
    let g = step_losses(&gpu, 20);
    let c = step_losses(&Device::cpu(), 20);
    assert_close("losses", &g, &c, Tolerance::new(1e-5, 1e-4));
    assert!(g.iter().all(|l| l.is_finite()), "{g:?}");
}

#[test]
fn the_same_seed_gives_the_same_loss_curve() {
    let d = gpu_device("same_seed_same_curve").unwrap_or_else(Device::cpu);
    let (a, wa) = run(&d, &temp_dir("seed-a"), 3, false);
    let (b, wb) = run(&d, &temp_dir("seed-b"), 3, false);
    let losses = |h: &History| {
        h.epochs
            .iter()
            .map(|e| (e.loss, e.metric))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(wa, wb);
}

#[test]
fn resumed_training_reaches_the_same_weights_as_an_uninterrupted_run() {
    let d = gpu_device("resume_equals_uninterrupted").unwrap_or_else(Device::cpu);
    let (full_history, full) = run(&d, &temp_dir("full"), 4, false);
    let dir = temp_dir("interrupted");
    run(&d, &dir, 2, false); // the run "dies" after epoch 2's checkpoint
    let (resumed_history, resumed) = run(&d, &dir, 4, true);
    assert_eq!(full, resumed, "weights differ after resuming");
    assert_eq!(full_history.epochs.len(), resumed_history.epochs.len());
    assert_eq!(full_history.epochs[3].loss, resumed_history.epochs[3].loss);
    let (_, last) = checkpoints::latest(&dir.join("checkpoints")).unwrap();
    let ck = Checkpoint::load(&last).unwrap();
    assert_eq!(ck.meta("epoch"), Some("4"));
    let rng: serde_json::Value = serde_json::from_str(ck.meta("rng_state").unwrap()).unwrap();
    assert_eq!(rng["step"], 24, "4 epochs of 6 steps");
    for f in [
        "history.csv",
        "history.json",
        "history.png",
        "model.safetensors",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
}

#[test]
fn a_checkpoint_with_missing_or_mismatched_tensors_is_refused_by_name() {
    let d = Device::cpu();
    let dir = temp_dir("mismatch");
    run(&d, &dir, 1, false);
    let path = checkpoints::epoch_path(&dir.join("checkpoints"), 1);
    let mut ck = Checkpoint::load(&path).unwrap();
    let (model_cfg, _, cfg) = setup();
    let b = ParamBuilder::new(cfg.seed);
    model_cfg.init(&b).unwrap();
    let params = b.build(&d).unwrap();
    params.load(&ck.params).unwrap();

    ck.params.retain(|(name, _, _)| name != "dense_2.bias");
    ck.params[0].1 = vec![3, 3];
    match params.load(&ck.params).unwrap_err() {
        kiln_graph::Error::Weights(report) => {
            assert_eq!(report.missing, ["dense_2.bias [1]"]);
            assert!(report.unexpected.is_empty(), "{report}");
            assert_eq!(report.mismatched.len(), 1, "{report}");
            assert!(
                report.mismatched[0].contains("file [3, 3], model"),
                "{report}"
            );
        }
        other => panic!("expected a weight report, got {other}"),
    }
    // An extra tensor is named as unexpected.
    let mut extra = params.to_host().unwrap();
    extra.push(("dense_9.kernel".into(), vec![1], vec![0.0]));
    let err = params.load(&extra).unwrap_err().to_string();
    assert!(
        err.contains("unexpected") && err.contains("dense_9.kernel"),
        "{err}"
    );

    // A file that is not a kiln checkpoint, and a truncated one.
    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
    assert!(matches!(
        Checkpoint::load(&dir.join("junk.safetensors")),
        Err(kiln_graph::Error::Checkpoint { .. })
    ));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(dir.join("torn.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(Checkpoint::load(&dir.join("torn.safetensors")).is_err());
}

#[test]
fn resuming_with_another_model_is_refused() {
    let d = Device::cpu();
    let dir = temp_dir("other-model");
    run(&d, &dir, 1, false);
    let (_, data, cfg) = setup();
    let other = SequentialConfig::new(&[4]).add(dense(1, Activation::Sigmoid));
    let b = ParamBuilder::new(1);
    let model = other.init(&b).unwrap();
    let params = b.build(&d).unwrap();
    let opts = RunOptions {
        metadata: vec![],
        out: Some(dir),
        resume: true,
        verbose: 0,
        ..Default::default()
    };
    let err = fit(&model, &params, &data, None, &cfg, &opts)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("different model configuration"),
        "{err}"
    );
}

/// Turns one parameter into NaN after step `at`: a diverged run, without relying on a learning
/// rate large enough to overflow (those are refused up front).
struct Poison {
    at: u64,
}

impl Callback for Poison {
    fn on_batch_end(&mut self, state: &FitState, end: &BatchEnd) -> kiln_train::Result<()> {
        if end.step == self.at {
            let id = state.params.ids().next().unwrap();
            let n = state.params.value(id).len();
            state
                .params
                .device()
                .write_f32(state.params.value(id), &vec![f32::NAN; n])?;
        }
        Ok(())
    }
}

#[test]
fn diverged_parameters_stop_training_at_the_interval_and_keep_the_last_good_checkpoint() {
    let d = Device::cpu();
    let dir = temp_dir("nan");
    let (model_cfg, data, mut cfg) = setup();
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(&d).unwrap();
    // One sane epoch (6 steps), then NaN parameters after step 8 of epoch 2: the clamped binary
    // cross-entropy stays finite, the parameter check does not.
    cfg.epochs = 1;
    let opts = RunOptions {
        metadata: vec![],
        out: Some(dir.clone()),
        resume: false,
        verbose: 0,
        ..Default::default()
    };
    fit(&model, &params, &data, None, &cfg, &opts).unwrap();
    let good = std::fs::read(checkpoints::epoch_path(&dir.join("checkpoints"), 1)).unwrap();
    let model_file = std::fs::read(dir.join("model.safetensors")).unwrap();
    cfg.epochs = 3;
    let run = Fit::new(cfg.clone())
        .checkpoints(Checkpoints::new(&dir, true, vec![]))
        .callback(Poison { at: 8 })
        .run(&model, &params, &data, None);
    match run {
        Err(kiln_train::Error::NonFinite {
            what,
            step,
            epoch,
            kept,
            ..
        }) => {
            assert_eq!((what, epoch), ("the parameters", 2));
            // report_every is 4 and intervals start with the epoch: steps 7..=10 are epoch 2's
            // first, so the NaN written after step 8 is found at step 10.
            assert!((8..=10).contains(&step), "step {step}");
            assert!(kept.contains("checkpoints"), "{kept}");
        }
        Err(e) => panic!("expected NonFinite, got {e}"),
        Ok(_) => panic!("training went on with NaN parameters"),
    }
    assert_eq!(checkpoints::latest(&dir.join("checkpoints")).unwrap().0, 1);
    assert_eq!(
        std::fs::read(checkpoints::epoch_path(&dir.join("checkpoints"), 1)).unwrap(),
        good
    );
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        model_file,
        "no model file written from the diverged state"
    );
    // A non-finite loss is caught the same way, naming the loss.
    let nan_loss = LossFn::new(|tape: &Tape, pred: &Var, _target: &Var| {
        let zero = tape.constant(tape.device().full(&[1], 0.0)?);
        let log0 = tape.unary(kiln_device::UnaryOp::Log, &zero)?; // -inf
        tape.add(&tape.mean(pred)?, &log0)
    });
    let err = Fit::new(cfg.clone())
        .loss(&nan_loss)
        .run(&model, &params, &data, None)
        .err()
        .expect("refused");
    assert!(err.to_string().starts_with("the loss became"), "{err}");
}

#[test]
fn settings_that_cannot_train_are_refused_before_a_step() {
    let (model_cfg, data, cfg) = setup();
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(&Device::cpu()).unwrap();
    let cases: Vec<(TrainConfig, &str)> = vec![
        (cfg.clone().epochs(0), "epochs: 0 trains nothing"),
        (cfg.clone().batch(0), "batch: 0 samples"),
        (
            cfg.clone()
                .optimizer(OptimizerConfig::adam().with_lr(f32::NAN)),
            "lr: the learning rate NaN",
        ),
        (
            cfg.clone()
                .optimizer(OptimizerConfig::adam().with_lr(f32::INFINITY)),
            "lr: the learning rate inf",
        ),
        (
            cfg.clone().optimizer(OptimizerConfig::sgd(1e38, 0.0)),
            "must be a number in (0, 10]",
        ),
        (
            cfg.clone().optimizer(OptimizerConfig::sgd(-0.1, 0.0)),
            "must be a number in (0, 10]",
        ),
        (
            cfg.clone().optimizer(OptimizerConfig::sgd(0.1, 1.0)),
            "momentum: 1.0 must be in [0, 1)",
        ),
        (
            TrainConfig {
                loss: None,
                ..cfg.clone()
            },
            "loss: the run has none",
        ),
    ];
    for (c, want) in cases {
        let before = params.to_host().unwrap();
        let err = fit(&model, &params, &data, None, &c, &RunOptions::default())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(want), "{err} (want {want})");
        assert_eq!(params.to_host().unwrap(), before, "no step was taken");
    }
}

/// The seed's network (fixed weights, sigmoid hidden layers, identity output) against f64 by hand.
#[test]
fn the_seed_network_gives_the_hand_computed_output_on_every_device() {
    let s = |v: f64| 1.0 / (1.0 + (-v).exp());
    let a1 = [s(5.0), s(11.0), s(17.0)];
    let a2 = [
        s(a1[0] + 3.0 * a1[1] + 5.0 * a1[2]),
        s(2.0 * a1[0] + 4.0 * a1[1] + 6.0 * a1[2]),
    ];
    let want = [
        (a2[0] + 3.0 * a2[1]) as f32,
        (2.0 * a2[0] + 4.0 * a2[1]) as f32,
    ];
    let layer = |units, activation| {
        DenseConfig::new(units)
            .activation(activation)
            .use_bias(false)
    };
    let config = SequentialConfig::new(&[2])
        .add(layer(3, Activation::Sigmoid))
        .add(layer(2, Activation::Sigmoid))
        .add(layer(2, Activation::Linear));
    for d in each_device("seed_network") {
        let b = ParamBuilder::new(0);
        let model = config.init(&b).unwrap();
        let params = b.build(&d).unwrap();
        let weights = [
            vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0],
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vec![1.0, 2.0, 3.0, 4.0],
        ];
        for (id, w) in params.ids().collect::<Vec<_>>().into_iter().zip(weights) {
            d.write_f32(params.value(id), &w).unwrap();
        }
        let (y, shape) = predict(&model, &params, &[Column::f32(vec![1.0, 2.0], &[2])], 1).unwrap();
        assert_eq!(shape, [1, 2]);
        assert_close(
            &format!("seed network on {}", d.name()),
            &y,
            &want,
            Tolerance::new(1e-6, 1e-6),
        );
    }
}

#[test]
fn xor_is_learned_to_full_accuracy_on_every_device() {
    for d in each_device("xor_learns") {
        let model_cfg = SequentialConfig::new(&[2])
            .add(dense(8, Activation::Tanh))
            .add(dense(1, Activation::Sigmoid));
        let data = Dataset::single(
            Column::f32(vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[2]),
            Column::f32(vec![0.0, 1.0, 1.0, 0.0], &[1]),
        );
        let cfg = TrainConfig {
            epochs: 300,
            batch: 4,
            seed: 3,
            loss: Some(LossKind::BinaryCrossentropy),
            optimizer: OptimizerConfig::Adam {
                lr: 0.05,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
            },
            schedule: None,
            clip: None,
            report_every: 50,
            metrics: vec![],
        };
        let b = ParamBuilder::new(cfg.seed);
        let model = model_cfg.init(&b).unwrap();
        let params = b.build(&d).unwrap();
        let opts = RunOptions {
            metadata: vec![],
            out: Some(temp_dir(&format!("xor-{}", d.is_gpu()))),
            resume: false,
            verbose: 0,
            ..Default::default()
        };
        fit(&model, &params, &data, None, &cfg, &opts).unwrap();
        let (loss, acc) =
            evaluate(&model, &params, &data, 4, &LossKind::BinaryCrossentropy).unwrap();
        assert_eq!(acc, Some(1.0), "{}: loss {loss}", d.name());
    }
}

#[test]
fn memory_per_training_step_is_flat() {
    let Some(d) = kiln_device::testing::private_gpu_device("memory_flat") else {
        return;
    };
    let mut b = bench(&d);
    let mut live = vec![];
    for step in 0..8 {
        drop(b.step(&d, step, step as u64));
        d.sync().unwrap();
        let c = d.counters();
        live.push((c.bytes_live, c.buffers_created));
    }
    assert!(
        live[2..].iter().all(|&v| v == live[2]),
        "bytes live / buffers created per step: {live:?}"
    );
}

#[test]
fn orthogonal_init_gives_orthonormal_rows_or_columns() {
    for (rows, cols) in [(4, 4), (3, 8), (8, 3)] {
        let b = ParamBuilder::new(9);
        let id = b.add("q", &[rows, cols], Init::Orthogonal).unwrap();
        let q = b
            .build(&Device::cpu())
            .unwrap()
            .to_host()
            .unwrap()
            .remove(id.0)
            .2;
        // Gram matrix of the shorter side must be the identity.
        let (n, m) = if rows <= cols {
            (rows, cols)
        } else {
            (cols, rows)
        };
        let at = |i: usize, k: usize| {
            if rows <= cols {
                q[i * cols + k]
            } else {
                q[k * cols + i]
            }
        };
        for i in 0..n {
            for j in 0..n {
                let dot: f32 = (0..m).map(|k| at(i, k) * at(j, k)).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (dot - want).abs() < 1e-5,
                    "{rows}x{cols}: <{i},{j}> = {dot}"
                );
            }
        }
    }
}

fn run_with(dir: &Path, epochs: usize, opts: RunOptions) -> kiln_train::Result<Trained> {
    let (model_cfg, data, mut cfg) = setup();
    cfg.epochs = epochs;
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(&Device::cpu()).unwrap();
    let opts = RunOptions {
        out: Some(dir.to_path_buf()),
        ..opts
    };
    fit(&model, &params, &data, None, &cfg, &opts)
}

#[test]
fn a_run_owns_its_folder() {
    let dir = temp_dir("owned");
    // Nothing to resume is an error, not a fresh start.
    let resume = RunOptions {
        resume: true,
        ..Default::default()
    };
    let err = run_with(&dir, 1, resume.clone()).err().expect("refused");
    assert!(err.to_string().contains("nothing to resume"), "{err}");
    run_with(&dir, 2, RunOptions::default()).unwrap();
    // An earlier run is refused without --resume or --force, and replaced with --force.
    let err = run_with(&dir, 1, RunOptions::default())
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("holds an earlier run (model.safetensors, history.json")
            && text.contains("2 checkpoint(s)")
            && text.contains("--force"),
        "{text}"
    );
    run_with(
        &dir,
        1,
        RunOptions {
            force: true,
            ..Default::default()
        },
    )
    .unwrap();
    let epochs: Vec<usize> = checkpoints::all(&dir.join("checkpoints"))
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(epochs, [1], "the replaced run's checkpoints are gone");
    // A second run into a folder whose lock is held is refused.
    let held = std::fs::File::open(dir.join(".kiln.lock")).unwrap();
    held.lock().unwrap();
    let err = run_with(&dir, 2, resume.clone()).err().expect("refused");
    assert!(err.to_string().contains("another kiln run"), "{err}");
    held.unlock().unwrap();
    // Temporary files of interrupted writes are removed when a run starts.
    std::fs::write(dir.join(".tmpAbC123"), b"torn").unwrap();
    std::fs::write(dir.join("checkpoints/.tmpXyZ789"), b"torn").unwrap();
    run_with(&dir, 2, resume.clone()).unwrap();
    assert!(!dir.join(".tmpAbC123").exists() && !dir.join("checkpoints/.tmpXyZ789").exists());
}

#[test]
fn checkpoints_keep_the_newest_few_and_the_history_once() {
    let dir = temp_dir("keep");
    let trained = run_with(
        &dir,
        5,
        RunOptions {
            keep: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    let kept: Vec<usize> = checkpoints::all(&dir.join("checkpoints"))
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    assert_eq!(kept, [4, 5]);
    let ck = Checkpoint::load(&checkpoints::epoch_path(&dir.join("checkpoints"), 5)).unwrap();
    assert_eq!(
        ck.meta("history"),
        None,
        "the history is not copied into every checkpoint"
    );
    let stored: History = serde_json::from_str(
        &std::fs::read_to_string(dir.join("checkpoints/history.json")).unwrap(),
    )
    .unwrap();
    let key = |h: &History| -> Vec<(usize, f32, Option<f32>)> {
        h.epochs
            .iter()
            .map(|e| (e.epoch, e.loss, e.metric))
            .collect()
    };
    assert_eq!(key(&stored), key(&trained.history));
    // A kill between the history's write and the checkpoint's leaves the history ahead:
    // resuming cuts it back to the checkpoint.
    std::fs::remove_file(checkpoints::epoch_path(&dir.join("checkpoints"), 5)).unwrap();
    let resumed = run_with(
        &dir,
        6,
        RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    let epochs: Vec<usize> = resumed.history.epochs.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, [1, 2, 3, 4, 5, 6]);
    assert_eq!(key(&resumed.history)[..4], key(&trained.history)[..4]);
}

/// Gathers the run's log messages.
#[derive(Default)]
struct Notes(Vec<String>);

impl Callback for Notes {
    fn on_log(&mut self, message: &str) {
        self.0.push(message.to_string());
    }
}

#[test]
fn every_callback_hears_the_resume_note_whatever_the_order_it_was_added_in() {
    let dir = temp_dir("notes");
    run_with(&dir, 1, RunOptions::default()).unwrap();
    let (model_cfg, data, mut cfg) = setup();
    cfg.epochs = 2;
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(&Device::cpu()).unwrap();
    let (mut first, mut last) = (Notes::default(), Notes::default());
    // One callback added before the checkpoints, one after: both hear the note.
    Fit::new(cfg)
        .callback(&mut first)
        .checkpoints(Checkpoints::new(&dir, true, vec![]))
        .callback(&mut last)
        .run(&model, &params, &data, None)
        .unwrap();
    for notes in [&first.0, &last.0] {
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("resuming from"), "{notes:?}");
    }
}

/// The model and data of `setup` trained `epochs` epochs with `loss` (or the config's), and
/// `callback`; what `Fit::run` returned and the trained parameters.
fn fit_with(
    cfg: TrainConfig,
    loss: Option<&dyn Objective>,
    val: Option<&Dataset>,
    callback: impl Callback,
) -> (kiln_train::Result<Trained>, ParamStore, Sequential) {
    let (model_cfg, data, _) = setup();
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(&Device::cpu()).unwrap();
    let mut run = Fit::new(cfg).callback(callback);
    if let Some(loss) = loss {
        run = run.loss(loss);
    }
    let trained = run.run(&model, &params, &data, val);
    (trained, params, model)
}

/// A callback that does nothing.
struct Quiet;

impl Callback for Quiet {}

/// Mean squared error from tape ops, as a user writes one.
fn my_mse(tape: &Tape, pred: &Var, target: &Var) -> kiln_graph::Result<Var> {
    let diff = tape.sub(pred, target)?;
    tape.mean(&tape.mul(&diff, &diff)?)
}

#[test]
fn a_loss_of_ones_own_trains_as_the_built_in_one_and_reports_the_metric_it_is_given() {
    let (_, data, cfg) = setup();
    let built_in = TrainConfig {
        loss: Some(LossKind::MeanSquaredError),
        ..cfg.clone()
    };
    let own = TrainConfig { loss: None, ..cfg };
    let (want, _, _) = fit_with(built_in, None, Some(&data), Quiet);
    let want = want.unwrap().history;
    let with_metric = LossFn::new(my_mse).with_metric(MetricKind::MeanAbsoluteError);
    let (got, params, model) = fit_with(own.clone(), Some(&with_metric), Some(&data), Quiet);
    let got = got.unwrap().history;
    assert_eq!(got.metric.as_deref(), Some("mae"));
    assert!(!got.higher_is_better);
    for (g, w) in got.epochs.iter().zip(&want.epochs) {
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
        assert!(close(g.loss, w.loss), "epoch {}: {g:?} vs {w:?}", g.epoch);
        assert!(
            close(g.metric.unwrap(), w.metric.unwrap()),
            "{g:?} vs {w:?}"
        );
        assert!(
            close(g.val_loss.unwrap(), w.val_loss.unwrap()),
            "{g:?} vs {w:?}"
        );
    }
    let (_, mae) = evaluate(&model, &params, &data, 16, &with_metric).unwrap();
    assert!(mae.is_some());

    // Without a metric, none is computed, stored or reported, and the best epoch is the one
    // with the lowest validation loss.
    let bare = LossFn::new(my_mse);
    let (got, params, model) = fit_with(own, Some(&bare), Some(&data), Quiet);
    let got = got.unwrap().history;
    assert_eq!(got.metric, None);
    assert!(got
        .epochs
        .iter()
        .all(|e| e.metric.is_none() && e.val_metric.is_none()));
    let lowest = got
        .epochs
        .iter()
        .map(|e| e.val_loss.unwrap())
        .fold(f32::INFINITY, f32::min);
    assert_eq!(got.best_val().map(|(_, v)| v), Some(lowest));
    let (loss, metric) = evaluate(&model, &params, &data, 16, &bare).unwrap();
    assert!(loss.is_finite() && metric.is_none());
    let csv = temp_dir("no-metric").with_extension("csv");
    got.write_csv(&csv).unwrap();
    let header = std::fs::read_to_string(&csv).unwrap();
    assert!(
        !header.lines().next().unwrap().contains("accuracy"),
        "{header}"
    );
}

/// A validation set of `setup`'s rule with a quarter of its labels flipped, and a fast learner:
/// the validation loss falls for a few epochs, then rises.
fn overfitting() -> (TrainConfig, Dataset) {
    let n = 48;
    let x = random_f32(11, n * 4, -1.0, 1.0);
    let flip = random_f32(12, n, 0.0, 1.0);
    let y: Vec<f32> = (0..n)
        .map(|i| ((x[i * 4] + x[i * 4 + 1] * x[i * 4 + 2] > 0.0) != (flip[i] < 0.25)) as u32 as f32)
        .collect();
    let val = Dataset::single(Column::f32(x, &[4]), Column::f32(y, &[1]));
    let (_, _, cfg) = setup();
    let cfg = cfg
        .epochs(60)
        .optimizer(OptimizerConfig::adam().with_lr(0.01));
    (cfg, val)
}

#[test]
fn early_stopping_ends_the_run_and_puts_back_the_best_epochs_weights() {
    let (cfg, val) = overfitting();
    let mut stopper = EarlyStopping::new(3).restore_best_weights(true);
    let (trained, params, model) = fit_with(cfg.clone(), None, Some(&val), &mut stopper);
    let trained = trained.unwrap();
    let epochs = &trained.history.epochs;
    let why = trained.stopped.expect("the run stopped early");
    assert!(epochs.len() < cfg.epochs, "{why}");
    let (best_epoch, best) = stopper.best().unwrap();
    assert_eq!(epochs.len(), best_epoch + 3, "{why}");
    assert!(
        best_epoch > 1,
        "the loss fell for a few epochs first: {why}"
    );
    assert!(
        why.contains("val_loss has not improved for 3 epochs"),
        "{why}"
    );
    assert!(why.contains("weights were restored"), "{why}");
    // The best epoch's validation loss is the lowest, and the weights now in the store give it.
    let lowest = epochs
        .iter()
        .map(|e| e.val_loss.unwrap())
        .fold(f32::INFINITY, f32::min);
    assert_eq!(best, lowest);
    let (now, _) = evaluate(
        &model,
        &params,
        &val,
        cfg.batch,
        &LossKind::BinaryCrossentropy,
    )
    .unwrap();
    assert!((now - best).abs() <= 1e-6, "restored {now}, best {best}");
    assert!((epochs.last().unwrap().val_loss.unwrap() - best).abs() > 1e-4);

    // Without restoring, the last epoch's weights stay.
    let mut keep = EarlyStopping::new(3);
    let (trained, params, model) = fit_with(cfg.clone(), None, Some(&val), &mut keep);
    let last = trained
        .unwrap()
        .history
        .epochs
        .last()
        .unwrap()
        .val_loss
        .unwrap();
    let (now, _) = evaluate(
        &model,
        &params,
        &val,
        cfg.batch,
        &LossKind::BinaryCrossentropy,
    )
    .unwrap();
    assert!((now - last).abs() <= 1e-6, "kept {now}, last {last}");
}

#[test]
fn early_stopping_refuses_a_figure_the_run_does_not_compute() {
    let (cfg, val) = overfitting();
    let (no_val, params, _) = fit_with(cfg.clone(), None, None, EarlyStopping::new(2));
    let err = no_val.err().expect("refused").to_string();
    assert!(
        err.contains("watches val_loss") && err.contains("no validation set"),
        "{err}"
    );
    // Refused before a step: the parameters are as initialized.
    let fresh = ParamBuilder::new(cfg.seed);
    setup().0.init(&fresh).unwrap();
    let fresh = fresh.build(&Device::cpu()).unwrap();
    assert_eq!(params.to_host().unwrap(), fresh.to_host().unwrap());
    let bare = LossFn::new(my_mse);
    let own = TrainConfig { loss: None, ..cfg };
    let watch_metric = EarlyStopping::new(2).monitor(Monitor::ValMetric);
    let (no_metric, _, _) = fit_with(own, Some(&bare), Some(&val), watch_metric);
    let err = no_metric.err().expect("refused").to_string();
    assert!(
        err.contains("has no metric") && err.contains("with_metric"),
        "{err}"
    );
}

/// Each schedule's rate at chosen steps, worked by hand from Keras's formulas
/// (ExponentialDecay, PiecewiseConstantDecay, CosineDecay with warmup).
#[test]
fn schedules_give_keras_rates() {
    let h = History::default();
    let close = |got: f32, want: f64, what: &str| {
        assert!(
            (got as f64 - want).abs() < 1e-7,
            "{what}: {got}, want {want}"
        );
    };
    let exp = LrSchedule::Exponential {
        decay_steps: 10,
        decay_rate: 0.5,
        staircase: false,
    };
    close(exp.lr(0.1, 0, &h), 0.1, "exponential at 0");
    close(
        exp.lr(0.1, 5, &h),
        0.1 * 0.5f64.powf(0.5),
        "exponential at 5",
    );
    let stairs = LrSchedule::Exponential {
        decay_steps: 10,
        decay_rate: 0.5,
        staircase: true,
    };
    close(stairs.lr(0.1, 15, &h), 0.05, "staircase at 15");
    let piecewise = LrSchedule::Piecewise {
        boundaries: vec![10, 20],
        values: vec![1.0, 0.5, 0.1],
    };
    for (step, want) in [(0, 1.0), (10, 1.0), (11, 0.5), (20, 0.5), (21, 0.1)] {
        close(
            piecewise.lr(0.3, step, &h),
            want,
            &format!("piecewise at {step}"),
        );
    }
    let cosine = LrSchedule::Cosine {
        decay_steps: 100,
        alpha: 0.1,
        warmup_steps: 0,
        warmup_from: 0.0,
    };
    close(
        cosine.lr(0.1, 50, &h),
        0.1 * (0.9 * 0.5 + 0.1),
        "cosine halfway",
    );
    close(cosine.lr(0.1, 500, &h), 0.01, "cosine past its end");
    let warm = LrSchedule::cosine_with_warmup(100, 10);
    for (step, want) in [(0, 0.0), (5, 0.05), (10, 0.1), (60, 0.05), (110, 0.0)] {
        close(
            warm.lr(0.1, step, &h),
            want,
            &format!("warmup cosine at {step}"),
        );
    }
    for bad in [
        LrSchedule::Piecewise {
            boundaries: vec![5, 5],
            values: vec![1.0, 0.5, 0.1],
        },
        LrSchedule::Piecewise {
            boundaries: vec![5],
            values: vec![1.0],
        },
        LrSchedule::Cosine {
            decay_steps: 0,
            alpha: 0.0,
            warmup_steps: 0,
            warmup_from: 0.0,
        },
        LrSchedule::Plateau {
            monitor: Monitor::ValLoss,
            factor: 1.5,
            patience: 1,
            min_delta: 0.0,
            cooldown: 0,
            min_lr: 0.0,
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?} accepted");
    }
}

/// ReduceLROnPlateau replayed over a history, as Keras's callback counts: two epochs without
/// improvement halve the rate; the cooldown counter is spent before the epoch is judged, so a
/// cooldown of 1 delays nothing (Keras's order); the floor holds.
#[test]
fn plateau_reduces_as_keras_callback_does() {
    let schedule = LrSchedule::Plateau {
        monitor: Monitor::ValLoss,
        factor: 0.5,
        patience: 2,
        min_delta: 0.0,
        cooldown: 1,
        min_lr: 0.03,
    };
    let mut h = History::default();
    // val_loss per epoch; the rate for the epoch after it.
    let steps = [
        (1.0, 0.1),
        (0.9, 0.1),
        (0.95, 0.1),
        (0.96, 0.05), // two epochs without improvement: halved
        (0.97, 0.05), // the cooldown ends first, so this epoch counts
        (0.98, 0.03), // halved to 0.025, held at the floor
        (0.99, 0.03), // at the floor: no further reduction
        (0.5, 0.03),
    ];
    for (epoch, (val_loss, want)) in steps.into_iter().enumerate() {
        h.epochs.push(EpochStats {
            epoch: epoch + 1,
            loss: 1.0,
            metric: None,
            tracked: vec![],
            val_loss: Some(val_loss),
            val_metric: None,
            val_tracked: vec![],
            learning_rate: None,
            seconds: 0.0,
            samples_per_sec: 0.0,
            dispatches_per_step: 0.0,
            submits_per_step: 0.0,
            readbacks_per_step: 0.0,
            bytes_up_per_step: 0.0,
            bytes_down_per_step: 0.0,
        });
        let got = schedule.lr(0.1, 0, &h);
        assert!(
            (got - want).abs() < 1e-7,
            "after epoch {}: {got}, want {want}",
            epoch + 1
        );
    }
}

/// A scheduled run records each epoch's rate, and resumed halfway it reaches the uninterrupted
/// run's weights bit for bit (the rate is a function of the step count and the history), with
/// AdamW and gradient clipping by global norm also on.
#[test]
fn a_scheduled_clipped_run_resumes_to_the_same_weights() {
    let d = gpu_device("scheduled_resume").unwrap_or_else(Device::cpu);
    let edit = |cfg: &mut TrainConfig| {
        cfg.schedule = Some(LrSchedule::cosine_with_warmup(18, 6));
        cfg.clip = Some(GradClip::GlobalNorm(0.5));
        cfg.optimizer = OptimizerConfig::adamw().with_lr(cfg.optimizer.lr());
    };
    let (full_history, full) = run_edited(&d, &temp_dir("sched-full"), 4, false, edit);
    let rates: Vec<f32> = full_history
        .epochs
        .iter()
        .map(|e| e.learning_rate.unwrap())
        .collect();
    // 6 steps an epoch: the first epoch's last step is warmup step 5 of 6, then the decay.
    let lr = setup().2.optimizer.lr();
    let want = [
        5.0 / 6.0,
        0.5 * (1.0 + (std::f64::consts::PI * 5.0 / 18.0).cos()),
    ];
    for (got, w) in rates.iter().zip(want) {
        assert!((*got as f64 - lr as f64 * w).abs() < 1e-7, "{rates:?}");
    }
    assert!(rates.windows(2).skip(1).all(|w| w[1] < w[0]), "{rates:?}");
    let dir = temp_dir("sched-interrupted");
    run_edited(&d, &dir, 2, false, edit);
    let (resumed_history, resumed) = run_edited(&d, &dir, 4, true, edit);
    assert_eq!(full, resumed, "weights differ after resuming");
    assert_eq!(
        full_history.epochs[3].learning_rate,
        resumed_history.epochs[3].learning_rate
    );
    // Clipping changed the run: without it the weights differ.
    let (_, unclipped) = run_edited(&d, &temp_dir("sched-unclipped"), 4, false, |cfg| {
        edit(cfg);
        cfg.clip = None;
    });
    assert_ne!(full, unclipped, "clipping at 0.5 changed nothing");
}

/// The TensorBoard callback's event files read back (every CRC checked) to the history's
/// figures, in Keras's layout: train/ with epoch_loss, epoch_accuracy and epoch_learning_rate,
/// validation/ with epoch_loss and epoch_accuracy, the epoch as the step. A flipped byte is
/// refused by name.
#[test]
fn tensorboard_event_files_read_back_to_the_history() {
    let (model_cfg, data, mut cfg) = setup();
    cfg.epochs = 3;
    let d = Device::cpu();
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(&d).unwrap();
    let dir = temp_dir("tensorboard");
    let val = data.clone();
    let trained = Fit::new(cfg)
        .callback(TensorBoard::new(&dir))
        .run(&model, &params, &data, Some(&val))
        .unwrap();
    let file = |part: &str| {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(part))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{part}: {files:?}");
        files.pop().unwrap()
    };
    let train = read_scalars(&file("train")).unwrap();
    let val = read_scalars(&file("validation")).unwrap();
    let pick = |s: &[Scalar], tag: &str| -> Vec<(i64, f32)> {
        s.iter()
            .filter(|x| x.tag == tag)
            .map(|x| (x.step, x.value))
            .collect()
    };
    let h = &trained.history.epochs;
    let want = |f: fn(&EpochStats) -> Option<f32>| -> Vec<(i64, f32)> {
        h.iter().map(|e| (e.epoch as i64, f(e).unwrap())).collect()
    };
    assert_eq!(pick(&train, "epoch_loss"), want(|e| Some(e.loss)));
    assert_eq!(pick(&train, "epoch_accuracy"), want(|e| e.metric));
    assert_eq!(
        pick(&train, "epoch_learning_rate"),
        want(|e| e.learning_rate)
    );
    assert_eq!(pick(&val, "epoch_loss"), want(|e| e.val_loss));
    assert_eq!(pick(&val, "epoch_accuracy"), want(|e| e.val_metric));
    assert_eq!(val.len(), 6, "{val:?}");
    let path = file("train");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = read_scalars(&path).unwrap_err().to_string();
    assert!(err.contains("CRC"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// history.csv and history.json name the metric as Keras's History does: `accuracy` and
/// `val_accuracy` (or `mae`, `val_mae`), never `metric`.
#[test]
fn history_files_use_keras_metric_names() {
    let (model_cfg, data, mut cfg) = setup();
    cfg.epochs = 2;
    let d = Device::cpu();
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(&d).unwrap();
    let val = data.clone();
    let trained = Fit::new(cfg)
        .run(&model, &params, &data, Some(&val))
        .unwrap();
    let dir = temp_dir("keras-names");
    std::fs::create_dir_all(&dir).unwrap();
    write_history(&trained.history, &dir).unwrap();
    let csv = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.starts_with("epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,"),
        "{header}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("history.json")).unwrap()).unwrap();
    let first = &json[0];
    assert_eq!(
        first["accuracy"].as_f64().unwrap() as f32,
        trained.history.epochs[0].metric.unwrap()
    );
    assert_eq!(
        first["val_accuracy"].as_f64().unwrap() as f32,
        trained.history.epochs[0].val_metric.unwrap()
    );
    assert!(first.get("metric").is_none(), "{first}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// BatchNormalization's moving statistics are the layer's own: the optimizer (AdamW's decay
/// included) leaves them alone whatever their gradient buffers hold, training moves them, and a
/// run with BatchNorm, a schedule, clipping and AdamW resumes to the same weights and
/// statistics, bit for bit.
#[test]
fn batch_norm_state_is_the_layers_own_and_resumes_exactly() {
    let d = gpu_device("batch_norm_resume").unwrap_or_else(Device::cpu);
    let model = SequentialConfig::new(&[4])
        .add(dense(16, Activation::Relu))
        .add(kiln_graph::layers::BatchNormalizationConfig::new())
        .add(DropoutConfig::new(0.2))
        .add(dense(1, Activation::Sigmoid));
    // The optimizer's share: every trainable parameter, none of the statistics.
    let b = ParamBuilder::new(1);
    let built = model.init(&b).unwrap();
    let params = b.build(&d).unwrap();
    let states: Vec<ParamId> = params
        .ids()
        .filter(|&id| !params.is_trainable(id))
        .collect();
    assert_eq!(states.len(), 2);
    assert!(built
        .summary_table(&params)
        .contains("Non-trainable params: 32"));
    let before: Vec<Vec<f32>> = states
        .iter()
        .map(|&id| d.to_f32(params.value(id)).unwrap())
        .collect();
    d.write_f32(params.grads_flat(), &vec![1.0; params.grads_flat().len()])
        .unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adamw().with_lr(0.1), &params).unwrap();
    opt.step(&params).unwrap();
    let after: Vec<Vec<f32>> = states
        .iter()
        .map(|&id| d.to_f32(params.value(id)).unwrap())
        .collect();
    assert_eq!(before, after, "the optimizer moved BatchNorm's statistics");

    let edit = |cfg: &mut TrainConfig| {
        cfg.schedule = Some(LrSchedule::cosine_with_warmup(18, 6));
        cfg.clip = Some(GradClip::GlobalNorm(1.0));
        cfg.optimizer = OptimizerConfig::adamw().with_lr(cfg.optimizer.lr());
    };
    let (_, full) = run_model(&d, &temp_dir("bn-full"), 4, false, model.clone(), edit);
    let moving = full
        .iter()
        .find(|t| t.0.ends_with("moving_variance"))
        .unwrap();
    assert!(
        moving.2.iter().all(|&v| v != 1.0),
        "training moved the statistics"
    );
    let dir = temp_dir("bn-interrupted");
    run_model(&d, &dir, 2, false, model.clone(), edit);
    let (_, resumed) = run_model(&d, &dir, 4, true, model, edit);
    assert_eq!(full, resumed, "weights or statistics differ after resuming");
}

/// Early stopping across a resume: a run interrupted after its best epoch and resumed stops
/// at the same epoch with the same restored weights as the run that was never interrupted (the
/// counters replayed from the history, the best weights read back from the run folder).
#[test]
fn early_stopping_resumes_to_the_same_stop_and_weights() {
    let d = Device::cpu();
    let run = |out: &Path, epochs: usize, resume: bool| {
        let (model_cfg, data, mut cfg) = setup();
        cfg.epochs = epochs;
        cfg.optimizer = cfg.optimizer.with_lr(0.05);
        let b = ParamBuilder::new(cfg.seed);
        let model = model_cfg.init(&b).unwrap();
        let params = b.build(&d).unwrap();
        let val = Dataset::single(
            Column::f32(random_f32(9, 40 * 4, -1.0, 1.0), &[4]),
            Column::f32(vec![1.0; 40], &[1]),
        );
        let opts = RunOptions {
            out: Some(out.to_path_buf()),
            resume,
            patience: Some(2),
            ..Default::default()
        };
        let trained = fit(&model, &params, &data, Some(&val), &cfg, &opts).unwrap();
        (trained, params.to_host().unwrap())
    };
    let (full, full_weights) = run(&temp_dir("es-full"), 60, false);
    let stopped = full.history.epochs.len();
    let why = full.stopped.clone().expect("the run stops early");
    // The first epoch of the lowest validation loss (improvements are strict).
    let best = full
        .history
        .epochs
        .iter()
        .fold(None::<(usize, f32)>, |b, e| match (b, e.val_loss) {
            (Some((_, v)), Some(l)) if l >= v => b,
            (_, Some(l)) => Some((e.epoch, l)),
            _ => b,
        })
        .expect("a best epoch")
        .0;
    assert!(stopped > best + 1, "{why}");
    let dir = temp_dir("es-interrupted");
    run(&dir, best + 1, false);
    let (resumed, resumed_weights) = run(&dir, 60, true);
    assert_eq!(
        resumed.history.epochs.len(),
        stopped,
        "{:?}",
        resumed.stopped
    );
    assert_eq!(resumed.stopped, full.stopped);
    assert_eq!(
        full_weights, resumed_weights,
        "the restored best weights differ"
    );
}

/// `best.safetensors` follows the monitored figure (Keras's ModelCheckpoint(monitor,
/// save_best_only)): the training loss in a run without validation, where by default no best
/// model is kept; a name the run does not compute is refused, listing those it does.
#[test]
fn the_best_model_follows_the_monitored_figure() {
    let run = |monitor: Option<&str>, name: &str| {
        let (model_cfg, data, mut cfg) = setup();
        cfg.epochs = 3;
        let d = Device::cpu();
        let b = ParamBuilder::new(cfg.seed);
        let model = model_cfg.init(&b).unwrap();
        let params = b.build(&d).unwrap();
        let out = temp_dir(name);
        let opts = RunOptions {
            out: Some(out.clone()),
            monitor: monitor.map(str::to_string),
            ..Default::default()
        };
        (fit(&model, &params, &data, None, &cfg, &opts), out)
    };
    let (plain, out) = run(None, "monitor-none");
    plain.unwrap();
    assert!(!out.join("best.safetensors").exists());
    let (by_loss, out) = run(Some("loss"), "monitor-loss");
    let history = by_loss.unwrap().history;
    assert!(out.join("best.safetensors").exists());
    let (best, loss) = history.best_by(Monitor::Loss).unwrap();
    let lowest = history
        .epochs
        .iter()
        .map(|e| e.loss)
        .fold(f32::INFINITY, f32::min);
    assert_eq!(loss, lowest);
    assert!((1..=3).contains(&best));
    let (refused, _) = run(Some("val_accuracy"), "monitor-bad");
    let Err(err) = refused else {
        panic!("val_accuracy in a run without validation was accepted")
    };
    let err = err.to_string();
    assert!(
        err.contains("val_accuracy") && err.contains("loss, accuracy"),
        "{err}"
    );
}

/// `run_model`'s run of `setup`, on `d` and data-parallel replicas on `others`.
fn run_replicas(
    d: &Device,
    others: &[Device],
    out: &Path,
    epochs: usize,
    resume: bool,
) -> (History, Vec<checkpoint::NamedTensor>) {
    let (model_cfg, data, mut cfg) = setup();
    cfg.epochs = epochs;
    let b = ParamBuilder::new(cfg.seed);
    let model = model_cfg.init(&b).unwrap();
    let params = b.build(d).unwrap();
    let opts = RunOptions {
        out: Some(out.to_path_buf()),
        resume,
        replicas: others.to_vec(),
        ..Default::default()
    };
    let trained = fit(&model, &params, &data, None, &cfg, &opts).unwrap();
    (trained.history, params.to_host().unwrap())
}

fn assert_weights_close(what: &str, a: &[checkpoint::NamedTensor], b: &[checkpoint::NamedTensor]) {
    for ((name, _, x), (_, _, y)) in a.iter().zip(b) {
        for (i, (x, y)) in x.iter().zip(y).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "{what}: {name}[{i}]: {x} against {y}"
            );
        }
    }
}

/// Replicas on 2 and 3 devices (the CPU device, and the software adapter where there is one)
/// train what one device trains: weights within 1e-5 after 24 steps, the same epoch losses.
#[test]
fn data_parallel_fit_trains_what_one_device_trains() {
    let d = Device::cpu();
    let (one, weights) = run_replicas(&d, &[], &temp_dir("dp-one"), 4, false);
    let mut sets = vec![
        ("2 CPU devices", vec![Device::cpu()]),
        ("3 CPU devices", vec![Device::cpu(), Device::cpu()]),
    ];
    if let Some(gpu) = gpu_device("data_parallel_fit") {
        sets.push(("the CPU device and the software adapter", vec![gpu]));
    }
    for (what, others) in sets {
        let (many, got) = run_replicas(&d, &others, &temp_dir("dp-many"), 4, false);
        assert_weights_close(what, &got, &weights);
        for (a, b) in many.epochs.iter().zip(&one.epochs) {
            assert!(
                (a.loss - b.loss).abs() <= 1e-5,
                "{what}: {} against {}",
                a.loss,
                b.loss
            );
        }
    }
}

/// A data-parallel run resumes with any number of replicas to the weights of an uninterrupted
/// one: 2 epochs on 2 devices, then 2 more on 1 or on 3.
#[test]
fn data_parallel_runs_resume_with_any_number_of_replicas() {
    let d = Device::cpu();
    let (_, whole) = run_replicas(&d, &[Device::cpu()], &temp_dir("dp-whole"), 4, false);
    for others in [vec![], vec![Device::cpu(), Device::cpu()]] {
        let out = temp_dir("dp-resumed");
        run_replicas(&d, &[Device::cpu()], &out, 2, false);
        let (history, resumed) = run_replicas(&d, &others, &out, 4, true);
        assert_eq!(history.epochs.len(), 4);
        let what = format!("resumed on {} replicas", others.len() + 1);
        assert_weights_close(&what, &resumed, &whole);
    }
}

/// An in-process [`Collective`] for tests: ranks are threads, sums are taken in rank order.
struct ThreadGroup {
    rank: usize,
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    size: usize,
    barrier: std::sync::Barrier,
    sum: std::sync::Mutex<Vec<f32>>,
    bytes: std::sync::Mutex<Vec<u8>>,
}

impl ThreadGroup {
    fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = std::sync::Arc::new(Shared {
            size,
            barrier: std::sync::Barrier::new(size),
            sum: Default::default(),
            bytes: Default::default(),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_sum(&self, data: &mut [f32]) -> kiln_graph::Result<()> {
        let s = &self.shared;
        if self.rank == 0 {
            *s.sum.lock().unwrap() = vec![0.0; data.len()];
        }
        s.barrier.wait();
        for turn in 0..s.size {
            if turn == self.rank {
                let mut sum = s.sum.lock().unwrap();
                sum.iter_mut().zip(&*data).for_each(|(a, b)| *a += b);
            }
            s.barrier.wait();
        }
        data.copy_from_slice(&s.sum.lock().unwrap());
        s.barrier.wait();
        Ok(())
    }
    fn broadcast(&self, data: &mut [u8]) -> kiln_graph::Result<()> {
        let s = &self.shared;
        if self.rank == 0 {
            *s.bytes.lock().unwrap() = data.to_vec();
        }
        s.barrier.wait();
        data.copy_from_slice(&s.bytes.lock().unwrap());
        s.barrier.wait();
        Ok(())
    }
}

/// `setup`'s run as `ranks` threads of one group, each on its own CPU device with `edit`ed
/// settings; rank 0 keeps the run folder `out`. Each rank's result and weights.
fn run_ranks(
    ranks: usize,
    out: &Path,
    epochs: usize,
    resume: bool,
    edit: impl Fn(usize, &mut TrainConfig) + Sync,
) -> Vec<kiln_train::Result<Vec<checkpoint::NamedTensor>>> {
    let groups = ThreadGroup::new(ranks);
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .iter()
            .map(|group| {
                let edit = &edit;
                scope.spawn(move || {
                    let (model_cfg, data, mut cfg) = setup();
                    cfg.epochs = epochs;
                    edit(group.rank, &mut cfg);
                    let d = Device::cpu();
                    let b = ParamBuilder::new(cfg.seed + group.rank as u64);
                    let model = model_cfg.init(&b).unwrap();
                    let params = b.build(&d).unwrap();
                    let mut run = Fit::new(cfg).collective(group);
                    if group.rank == 0 {
                        run = run.checkpoints(Checkpoints::new(out, resume, vec![]));
                    }
                    run.run(&model, &params, &data, None)
                        .map(|_| params.to_host().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Ranks of a group (threads here, MPI's processes in `kiln`) train what one process with the
/// same global batch trains, from rank 0's initial weights (each rank draws its own here), and
/// end with the same weights.
#[test]
fn ranks_of_a_group_train_what_one_process_trains() {
    let (_, one) = run_replicas(&Device::cpu(), &[], &temp_dir("group-one"), 4, false);
    for ranks in [2, 3] {
        let got = run_ranks(ranks, &temp_dir("group-ranks"), 4, false, |_, _| {});
        let weights: Vec<_> = got.into_iter().map(|r| r.unwrap()).collect();
        assert_weights_close(&format!("{ranks} ranks"), &weights[0], &one);
        for w in &weights[1..] {
            assert_eq!(w, &weights[0], "ranks diverged");
        }
    }
}

/// A group's run resumes from rank 0's checkpoint, with any number of ranks, to the weights
/// of an uninterrupted run.
#[test]
fn a_group_resumes_with_any_number_of_ranks() {
    let whole = run_ranks(2, &temp_dir("group-whole"), 4, false, |_, _| {});
    let whole = whole.into_iter().next().unwrap().unwrap();
    for ranks in [1, 2, 3] {
        let out = temp_dir("group-resumed");
        run_ranks(2, &out, 2, false, |_, _| {});
        let resumed = run_ranks(ranks, &out, 4, true, |_, _| {});
        let resumed = resumed.into_iter().next().unwrap().unwrap();
        assert_weights_close(&format!("resumed on {ranks} ranks"), &resumed, &whole);
    }
}

/// A rank started with other settings is refused on every rank, naming it.
#[test]
fn a_rank_with_other_settings_is_refused_on_every_rank() {
    let got = run_ranks(3, &temp_dir("group-mismatch"), 1, false, |rank, cfg| {
        if rank == 2 {
            cfg.batch = 8;
        }
    });
    for result in got {
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("rank(s) 2") && err.contains("same command"),
            "{err}"
        );
    }
}
