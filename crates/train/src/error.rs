//! kiln-train's errors: the graph's (and through it the device's), and what only training meets:
//! a run that diverges, a run folder or checkpoint that cannot be used, settings or data that
//! cannot train.

use std::path::PathBuf;

/// kiln-train's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything training can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    /// The graph (a layer, the model, a weight load) or the device refused or failed.
    Graph(#[from] kiln_graph::Error),

    #[error("{what}: {message}")]
    /// Settings or data that cannot train: `what` names them, `message` says what to change.
    Config {
        /// The setting or data at fault.
        what: String,
        /// What is wrong and what to change.
        message: String,
    },

    #[error("checkpoint {path}: {message}")]
    /// A run folder, checkpoint or saved model that cannot be used, and why.
    Checkpoint {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    #[error("{path}: {source}")]
    /// A file-system error at `path`.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    #[error("{what} became {value} at step {step} (epoch {epoch}): training diverged and stopped; no model was saved from it.{kept} Try a lower learning rate.")]
    /// The loss or the parameters stopped being finite at `step` of `epoch`.
    NonFinite {
        /// "the loss" or "the parameters".
        what: &'static str,
        /// The loss, or the sum of the parameters (NaN or infinite).
        value: f32,
        /// The step (from 1, over the whole run).
        step: u64,
        /// The epoch.
        epoch: usize,
        /// Where the last good checkpoint is, as a sentence (empty when the run keeps none).
        kept: String,
    },
}

impl Error {
    /// Settings or data that cannot train.
    pub fn config(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            what: what.into(),
            message: message.into(),
        }
    }

    /// A run folder or checkpoint that cannot be used.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A file-system error at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<kiln_graph::kiln_device::Error> for Error {
    fn from(e: kiln_graph::kiln_device::Error) -> Self {
        Error::Graph(e.into())
    }
}
