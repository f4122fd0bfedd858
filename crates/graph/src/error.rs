//! kiln-graph's errors: the device's, plus model, data and checkpoint problems.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Device(#[from] kiln_device::Error),

    #[error("{what}: {message}")]
    Model { what: String, message: String },

    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("loss became {value} at step {step} (epoch {epoch}); training stopped. The last good checkpoint is kept in {checkpoints}. Try a lower learning rate.")]
    NonFinite {
        value: f32,
        step: u64,
        epoch: usize,
        checkpoints: PathBuf,
    },
}

impl Error {
    pub(crate) fn model(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
