//! The built-in data: kiln-data's loaders, and where this repository's embedded copies are
//! (MNIST's IDX files and the Quora sample in `data/`). XOR and the spirals are seeded, built in
//! code.

pub use kiln_data::{clip, spirals, table, xor, ECHO_CHARS};

/// MNIST's IDX files ([`kiln_data::mnist`]) and the embedded copy.
pub mod mnist {
    use std::path::{Path, PathBuf};

    pub use kiln_data::mnist::*;

    /// The folder holding the embedded copy (`data/mnist` in the project).
    pub fn default_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
    }
}

/// Quora Question Pairs ([`kiln_data::qqp`]) and the embedded sample.
pub mod qqp {
    use std::path::{Path, PathBuf};

    pub use kiln_data::qqp::*;

    /// The embedded copy: the first 9,998 pairs of Quora's release.
    pub fn default_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/qqp/mini_quora_duplicate_questions.tsv")
    }
}
