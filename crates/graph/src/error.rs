//! kiln-graph's errors: the device's, plus model, data and checkpoint problems.

use std::path::PathBuf;

/// kiln-graph's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything kiln-graph (and the training loop above it) can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    /// The device refused or failed an op.
    Device(#[from] kiln_device::Error),

    #[error("{what}: {message}")]
    /// A problem with a model, a layer or data: `what` names it, `message` says what to change.
    Model {
        /// The layer, input or setting at fault.
        what: String,
        /// What is wrong and what to change.
        message: String,
    },

    #[error("checkpoint {path}: {message}")]
    /// A checkpoint or model file that cannot be used, and why.
    Checkpoint {
        /// The file.
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

    #[error("cannot write {path}: {doing}: {source}")]
    /// Writing a file failed: `doing` says which step (creating the temporary file beside it,
    /// writing, renaming it into place), so the path that failed is the one named.
    Write {
        /// The file being written.
        path: PathBuf,
        /// The step that failed, naming its own path where it has one.
        doing: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is {kind}, not a regular file; kiln writes a file by replacing it, which would replace that: name a regular file")]
    /// An output path that exists and is not a regular file (a device, a folder, a link, a pipe).
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is ("a device", "a folder", "a symbolic link", ...).
        kind: &'static str,
    },

    #[error("weights do not fit the model: {0}")]
    /// A strict weight load found missing, unexpected or mis-shaped tensors.
    Weights(WeightReport),
}

impl Error {
    /// A problem with a model, a layer or data: `what` names it, `message` says what to change.
    pub fn model(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model {
            what: what.into(),
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

/// What a strict weight load found wrong, by name: parameters the file lacks, tensors the model
/// has no parameter for, and shapes that differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightReport {
    /// Parameters the file lacks, with their shapes.
    pub missing: Vec<String>,
    /// Tensors the model has no parameter for.
    pub unexpected: Vec<String>,
    /// Names whose shapes differ.
    pub mismatched: Vec<String>,
    /// Tensors holding NaN or infinite values (a diverged run's weights).
    pub non_finite: Vec<String>,
}

impl WeightReport {
    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.non_finite.is_empty()
    }
}

impl std::fmt::Display for WeightReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = vec![];
        for (what, list) in [
            ("missing from the file", &self.missing),
            (
                "unexpected (the model has no such parameter)",
                &self.unexpected,
            ),
            ("shape differs", &self.mismatched),
            (
                "NaN or infinite values (saved from a diverged run; retrain with a lower learning rate)",
                &self.non_finite,
            ),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what}: {}", list.join(", ")));
            }
        }
        write!(
            f,
            "{}. Build the model with the configuration the file was saved from (layer names come from `pp` prefixes and layer order).",
            parts.join("; ")
        )
    }
}
