//! kiln-data: data files into [`kiln_train::Dataset`]s, with typed errors ([`Error`]) and no
//! row lost silently: every line of a table is used, or skipped and counted with its line number
//! ([`Skipped`]), or (with `strict`) refuses the file naming the line.
//!
//! From Rust, through [`LoadFiles`] (`use kiln_data::LoadFiles;`):
//! - [`Dataset::from_csv`](LoadFiles::from_csv): numeric feature columns and a label column
//!   ([`CsvOptions`]); features standardised with their mean and deviation unless told not to;
//! - [`Dataset::from_text_csv`](LoadFiles::from_text_csv): text columns through kiln's tokenizer
//!   ([`TextCsvOptions`]), for a model that starts with an embedding;
//! - [`Dataset::from_image_folder`](LoadFiles::from_image_folder): one subfolder per class of
//!   PNG or JPEG files, as `(C, H, W)` values in [0, 1].
//!
//! Messages name the options by the command line's flags, which are the same words: `--label`
//! is [`CsvOptions::label`], `--columns` `columns`, `--task` `task`, `--strict` `strict`.
//!
//! Targets: a classification's are class ids, u32 of per-sample shape `[1]` (for the sparse
//! categorical losses), indices into [`Loaded::classes`] (sorted: by value when every label is a
//! number); [`Targets::Values`] gives them as f32 instead (0/1 for a one-unit sigmoid output and
//! binary cross-entropy). A regression's are the label's numbers, f32 of shape `[1]`.
//!
//! ```
//! use kiln_data::{CsvOptions, LoadFiles};
//! use kiln_train::Dataset;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("points.csv");
//! std::fs::write(&path, "x,y,label\n0.1,0.5,no\n0.9,0.7,yes\n0.2,0.3,no\n,0.4,yes\n")?;
//! let loaded = Dataset::from_csv(&path, &CsvOptions::default())?;
//! assert_eq!(loaded.dataset.len(), 3); // the row with an empty cell is skipped...
//! assert_eq!(loaded.skipped.count, 1); // ...and counted, with its line
//! assert_eq!(loaded.classes, ["no", "yes"]);
//! assert_eq!(loaded.dataset.input().shape, [2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same pipeline serves `kiln train --model --data` ([`prepare`], which also checks the data
//! against a model's [`Outline`] and picks its loss) and `kiln eval` / `kiln predict`
//! ([`read_for`], which reads new files the way a saved model's [`DataSpec`] says). The loaders of
//! MNIST's IDX files ([`mnist`]) and of Quora Question Pairs ([`qqp`]) and kiln's tokenizer
//! ([`qqp::Tokenizer`]) are here too.
#![warn(missing_docs)]

mod error;
mod files;
pub mod images;
pub mod mnist;
mod prepare;
pub mod qqp;
mod read;
pub mod spec;
pub mod table;

pub use error::{Error, Result};
pub use files::{CsvOptions, LoadFiles, Loaded, Targets, TextCsvOptions};
pub use prepare::{loss_for, prepare, targets, FileOptions, OnBad, Prepared, Skipped};
pub use read::{read_for, where_is, Labels, Read};
pub use spec::{DataSpec, Source, Task, META_KEY};

use kiln_train::kiln_graph::Activation;
use kiln_train::{Column, Dataset};
use rand::{rngs::StdRng, RngExt, SeedableRng};

/// The most characters of a user's text (a cell, a line, a name) that a message echoes.
pub const ECHO_CHARS: usize = 200;

/// `text` as a message echoes it: whole when short, else its first [`ECHO_CHARS`] characters and
/// how long it was (a 10 MB line must not become a 10 MB error).
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(ECHO_CHARS) {
        None => text.to_string(),
        Some((end, _)) => format!("{}... ({} characters)", &text[..end], text.chars().count()),
    }
}

/// What data must fit to train a model: its input and output, as far as reading data cares.
#[derive(Clone, Debug, PartialEq)]
pub struct Outline {
    /// Per-sample input shape (empty: whatever the data gives, unchecked).
    pub input: Vec<usize>,
    /// Whether the input is token ids (the model starts with an embedding).
    pub takes_ids: bool,
    /// The embedding's rows, when it starts with one.
    pub vocab: Option<usize>,
    /// Output values per sample (0: unknown; classification targets are then class ids).
    pub outputs: usize,
    /// The last layer's activation (linear when it has none).
    pub activation: Activation,
}

/// The four XOR points, label 1 where exactly one input is 1.
pub fn xor() -> Dataset {
    Dataset::single(
        Column::f32(vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[2]),
        Column::f32(vec![0.0, 1.0, 1.0, 0.0], &[1]),
    )
}

/// Two spirals of `per_class` points each, 1.5 turns, a little noise; labels 0 and 1.
pub fn spirals(per_class: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (vec![], vec![]);
    for class in 0..2 {
        for i in 0..per_class {
            let t = i as f32 / per_class as f32;
            let angle = t * 3.0 * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
            let r = 0.1 + 0.9 * t;
            x.push(r * angle.cos() + rng.random_range(-0.02..0.02));
            x.push(r * angle.sin() + rng.random_range(-0.02..0.02));
            y.push(class as f32);
        }
    }
    Dataset::single(Column::f32(x, &[2]), Column::f32(y, &[1]))
}
