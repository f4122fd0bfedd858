//! [`Error`]: what can go wrong reading data, by what to do about it.

use std::path::PathBuf;

/// A data file that cannot be used, by kind: unreadable, unusable, or not fitting what it is read
/// for. Every message names the file (or the option) and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file or folder cannot be read at all.
    #[error("{path}: {source}. {hint}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
        /// What to pass instead.
        hint: &'static str,
    },
    /// The file is there but wrong: truncated, corrupt, another format, no usable rows, or (with
    /// `strict`, and always for prediction) a row that cannot be used.
    #[error("{path}: {message}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// The data and what it is read for do not fit: the options (a label column the file lacks),
    /// the model (three classes for a one-unit output), or a saved model's spec (a column it
    /// reads by name, a class it does not know).
    #[error("{message}")]
    Mismatch {
        /// What does not fit, and what to change.
        message: String,
    },
}

impl Error {
    /// A [`Error::Bad`] file.
    pub fn bad(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Bad {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A [`Error::Mismatch`].
    pub fn mismatch(message: impl Into<String>) -> Self {
        Error::Mismatch {
            message: message.into(),
        }
    }
}

impl From<String> for Error {
    /// A message that names its file and its fix is a [`Error::Mismatch`] unless said otherwise.
    fn from(message: String) -> Self {
        Error::mismatch(message)
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
