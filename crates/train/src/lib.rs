//! kiln-train: the training loop above kiln-graph. [`Fit`] trains any [`kiln_graph::Model`] on
//! a [`Dataset`] (one column per model input) through [`kiln_graph::train_step`], with the
//! built-in losses or one of the user's own; checkpoints with resume ([`Checkpoints`]) keep a run
//! folder, and callbacks attach progress ([`Progress`]), history files and plots
//! ([`HistoryFiles`]) or anything of one's own ([`Callback`]). [`fit`] is the usual combination;
//! [`evaluate`] and [`predict`] run a trained model.
//!
//! ```
//! use kiln_graph::kiln_device::Device;
//! use kiln_graph::layers::{Activation, DenseConfig};
//! use kiln_graph::{LossKind, OptimizerConfig, ParamBuilder, SequentialConfig};
//! use kiln_train::{fit, Column, Dataset, RunOptions, TrainConfig};
//!
//! // XOR: four points, an 8-unit hidden layer.
//! let xor = Dataset::single(
//!     Column::f32(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[2]),
//!     Column::f32(vec![0., 1., 1., 0.], &[1]),
//! );
//! let pb = ParamBuilder::new(1);
//! let model = SequentialConfig::new(&[2])
//!     .add(DenseConfig::new(8).activation(Activation::Tanh))
//!     .add(DenseConfig::new(1).activation(Activation::Sigmoid))
//!     .init(&pb)?;
//! let params = pb.build(&Device::cpu())?;
//! let config = TrainConfig::new(LossKind::BinaryCrossentropy)
//!     .epochs(300)
//!     .batch(4)
//!     .optimizer(OptimizerConfig::adam().with_lr(0.05));
//! // No output folder and verbose 0: nothing is written or printed.
//! let trained = fit(&model, &params, &xor, None, &config, &RunOptions::default())?;
//! assert_eq!(trained.history.epochs.len(), 300);
//! assert_eq!(trained.history.epochs.last().unwrap().metric, Some(1.0)); // accuracy
//! # Ok::<(), kiln_train::Error>(())
//! ```
#![warn(missing_docs)]

mod callback;
pub mod checkpoints;
mod config;
pub mod data;
mod early_stopping;
mod error;
mod fit;
mod group;
pub mod history;
mod history_files;
mod progress;
mod saved;
mod schedule;
mod tensorboard;

use std::path::PathBuf;

pub use callback::{BatchEnd, Callback, FitState};
pub use checkpoints::{check_run_folder, Checkpoints, METRICS_KEY};
pub use config::TrainConfig;
pub use data::{Column, Dataset, Values};
pub use early_stopping::{EarlyStopping, Monitor};
pub use error::{Error, Result};
pub use fit::{evaluate, evaluate_tracked, predict, Evaluation, Fit, Tracked, Trained};
pub use history::{EpochStats, History};
pub use history_files::{write_history, HistoryFiles};
pub use kiln_graph;
pub use progress::Progress;
pub use saved::{load_model, save_model};
pub use schedule::LrSchedule;
pub use tensorboard::{read_scalars, Scalar, TensorBoard};

use kiln_graph::{Model, ParamStore};

/// A process group for [`RunOptions::group`].
#[derive(Clone)]
pub struct Group(pub std::rc::Rc<dyn kiln_graph::Collective>);

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group(rank {} of {})", self.0.rank(), self.0.size())
    }
}

/// Where and how loudly [`fit`] runs.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The run's folder (history, checkpoints, models); None writes nothing.
    pub out: Option<PathBuf>,
    /// Continue from the newest checkpoint in `out` (an error when there is none).
    pub resume: bool,
    /// Replace an earlier run in `out` (without it, a folder holding one is refused).
    pub force: bool,
    /// Epoch checkpoints to keep, newest first (None: 3).
    pub keep: Option<usize>,
    /// As Keras's `verbose`: 0 prints nothing, 1 a progress bar and a line per epoch, 2 the
    /// lines alone.
    pub verbose: u8,
    /// Extra metadata written into every checkpoint and saved model (e.g. a tokenizer's
    /// vocabulary), so that a model file is self-contained.
    pub metadata: Vec<(String, String)>,
    /// Stop when the validation loss has not improved for this many epochs, putting back the
    /// best epoch's weights ([`EarlyStopping`]); None trains every epoch.
    pub patience: Option<usize>,
    /// Write TensorBoard event files under this folder ([`TensorBoard`]).
    pub tensorboard: Option<PathBuf>,
    /// What `best.safetensors` follows, by Keras's name (`val_loss`, `val_accuracy`, ...;
    /// [`Checkpoints::monitor`]); None: the validation metric.
    pub monitor: Option<String>,
    /// The process group this run is one rank of ([`Fit::collective`]; MPI's under `mpirun`).
    pub group: Option<Group>,
    /// Devices for data-parallel replicas beyond the first (the one holding the parameters):
    /// [`Fit::replicas`]. Empty: one device.
    pub replicas: Vec<kiln_graph::kiln_device::Device>,
}

/// Trains with the usual callbacks: checkpoints and history files in `opts.out` (when given),
/// early stopping (`opts.patience`), then progress (`opts.verbose`).
pub fn fit(
    model: &dyn Model,
    params: &ParamStore,
    train: &Dataset,
    val: Option<&Dataset>,
    cfg: &TrainConfig,
    opts: &RunOptions,
) -> Result<Trained> {
    let mut run = Fit::new(cfg.clone());
    if let Some(out) = &opts.out {
        let mut checkpoints = Checkpoints::new(out, opts.resume, opts.metadata.clone())
            .force(opts.force)
            .keep(opts.keep.unwrap_or(3));
        if let Some(m) = &opts.monitor {
            checkpoints = checkpoints.monitor(m.clone());
        }
        run = run
            .checkpoints(checkpoints)
            .callback(HistoryFiles::new(out));
    }
    if let Some(dir) = &opts.tensorboard {
        run = run.callback(TensorBoard::new(dir));
    }
    if let Some(patience) = opts.patience {
        let mut stop = EarlyStopping::new(patience).restore_best_weights(true);
        if let Some(out) = &opts.out {
            stop = stop.persist_in(out.join("checkpoints"));
        }
        run = run.callback(stop);
    }
    match opts.verbose {
        0 => {}
        1 => run = run.callback(Progress::new()),
        _ => run = run.callback(Progress::lines()),
    }
    run = run.replicas(opts.replicas.clone());
    if let Some(group) = &opts.group {
        run = run.collective(&*group.0);
    }
    run.run(model, params, train, val)
}
