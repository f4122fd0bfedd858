//! [`LoadFiles`]: `Dataset::from_csv`, `Dataset::from_text_csv` and
//! `Dataset::from_image_folder`, the library's way into the pipeline that `kiln train --model
//! --data` reads files through, without a model: the data decides the input's shape.

use std::path::Path;

use kiln_train::kiln_graph::Activation;
use kiln_train::Dataset;

use crate::prepare::read_found;
use crate::spec::{DataSpec, Task};
use crate::{Error, FileOptions, Outline, Result, Skipped};

/// How a classification's targets come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Targets {
    /// Class ids, u32 of per-sample shape `[1]`, indices into [`Loaded::classes`]: for the
    /// sparse categorical losses.
    #[default]
    ClassIds,
    /// The class index as an f32 value of shape `[1]`: 0/1 for two classes, for a one-unit
    /// sigmoid output and binary cross-entropy.
    Values,
}

/// How to read a numeric table ([`LoadFiles::from_csv`]).
#[derive(Clone, Debug, Default)]
pub struct CsvOptions {
    /// The label column (default: the one named `label`, else `target`, `class` or `y`, else
    /// the last).
    pub label: Option<String>,
    /// The feature columns, in order (default: every other column).
    pub columns: Option<Vec<String>>,
    /// Classification or regression (default: inferred: text labels, or numbers taking two
    /// integer values, are classes; other numbers a regression).
    pub task: Option<Task>,
    /// Refuse the file at its first unusable row, naming it, instead of skipping and counting.
    pub strict: bool,
    /// How a classification's targets come.
    pub targets: Targets,
    /// Leave the features as they are instead of standardising each with its mean and
    /// deviation over the file.
    pub unscaled: bool,
}

/// How to read a text table ([`LoadFiles::from_text_csv`]): text columns through kiln's
/// tokenizer (fitted on the file), each padded or truncated to `ids_per_text` ids.
#[derive(Clone, Debug)]
pub struct TextCsvOptions {
    /// The label column, as in [`CsvOptions`].
    pub label: Option<String>,
    /// The text columns (default: every column that holds text).
    pub columns: Option<Vec<String>>,
    /// As in [`CsvOptions`].
    pub task: Option<Task>,
    /// As in [`CsvOptions`].
    pub strict: bool,
    /// As in [`CsvOptions`].
    pub targets: Targets,
    /// Ids per text column (Keras's `maxlen`).
    pub ids_per_text: usize,
    /// The embedding's rows: the vocabulary keeps the `vocab - 2` most frequent words (id 0
    /// pads, 1 is out of vocabulary). None keeps every word.
    pub vocab: Option<usize>,
}

impl Default for TextCsvOptions {
    fn default() -> Self {
        TextCsvOptions {
            label: None,
            columns: None,
            task: None,
            strict: false,
            targets: Targets::ClassIds,
            ids_per_text: 20,
            vocab: None,
        }
    }
}

/// A file read into a dataset.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Every usable row, in file order: one input column and the targets.
    pub dataset: Dataset,
    /// Classification or regression (given or inferred; [`Loaded::report`] says which).
    pub task: Task,
    /// A classification's class names by id (sorted: by value when every label is a number).
    pub classes: Vec<String>,
    /// How the file was read (its columns, the standardisation or the vocabulary, the image
    /// shape): new files read through it with [`crate::read_for`] come out the same way.
    pub spec: DataSpec,
    /// The rows skipped, with the first reasons.
    pub skipped: Skipped,
    /// What was read, in a sentence.
    pub report: String,
}

/// Datasets from files: `use kiln_data::LoadFiles;`, then `Dataset::from_csv(...)`.
pub trait LoadFiles: Sized {
    /// A numeric table (CSV, or TSV by extension): the features as f32 values of shape
    /// `[features]`, standardised unless `unscaled`, and the label.
    fn from_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Loaded>;

    /// A text table: the text columns as u32 token ids of shape `[columns * ids_per_text]`, for
    /// a model that starts with an embedding, and the label.
    fn from_text_csv(path: impl AsRef<Path>, options: &TextCsvOptions) -> Result<Loaded>;

    /// An image folder, one subfolder per class of PNG or JPEG files (at any depth), as f32
    /// values in [0, 1] of shape `[C, H, W]` (C 1 for grey, 3 for RGB; images of another size
    /// are resized). Files that cannot be read are skipped and counted.
    fn from_image_folder(path: impl AsRef<Path>, shape: &[usize]) -> Result<Loaded>;
}

impl LoadFiles for Dataset {
    fn from_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Loaded> {
        let opts = FileOptions {
            task: options.task,
            label: options.label.clone(),
            columns: options.columns.clone(),
            strict: options.strict,
            unscaled: options.unscaled,
            ..FileOptions::default()
        };
        load(
            path.as_ref(),
            &free_outline(false, None, options.targets),
            &opts,
        )
    }

    fn from_text_csv(path: impl AsRef<Path>, options: &TextCsvOptions) -> Result<Loaded> {
        let opts = FileOptions {
            task: options.task,
            label: options.label.clone(),
            columns: options.columns.clone(),
            strict: options.strict,
            ids_per_text: Some(options.ids_per_text),
            ..FileOptions::default()
        };
        let outline = free_outline(true, options.vocab, options.targets);
        load(path.as_ref(), &outline, &opts)
    }

    fn from_image_folder(path: impl AsRef<Path>, shape: &[usize]) -> Result<Loaded> {
        let path = path.as_ref();
        if !matches!(shape, [1 | 3, h, w] if *h > 0 && *w > 0) {
            return Err(Error::mismatch(format!(
                "images are read as [channels, height, width] with 1 (grey) or 3 (RGB) channels, not {shape:?}"
            )));
        }
        if !path.is_dir() {
            return Err(Error::bad(
                path,
                "not a folder; an image folder holds one subfolder per class (cats/, dogs/, ...)",
            ));
        }
        let outline = Outline {
            input: shape.to_vec(),
            ..free_outline(false, None, Targets::ClassIds)
        };
        load(path, &outline, &FileOptions::default())
    }
}

/// An outline that leaves the input to the data: values or ids, and a classification's targets.
fn free_outline(takes_ids: bool, vocab: Option<usize>, targets: Targets) -> Outline {
    Outline {
        input: vec![],
        takes_ids,
        vocab,
        outputs: match targets {
            Targets::ClassIds => 0,
            Targets::Values => 1,
        },
        activation: Activation::Linear,
    }
}

/// Every usable row of `path`, read through the training pipeline without a split.
fn load(path: &Path, outline: &Outline, opts: &FileOptions) -> Result<Loaded> {
    let opts = FileOptions {
        no_split: true,
        ..opts.clone()
    };
    let ((spec, inputs, (targets, _, _), note), skipped) = read_found(path, outline, &opts)?;
    let dataset = Dataset::single(inputs, targets);
    let report = format!(
        "{}: {} rows, {skipped}; {note}",
        path.display(),
        dataset.len()
    );
    Ok(Loaded {
        dataset,
        task: spec.task,
        classes: spec.classes.clone(),
        spec,
        skipped,
        report,
    })
}
