//! Models from a file over data from a file, for users who do not write Rust:
//! `kiln train --model model.json --data FILE`, then `kiln eval` and `kiln predict` on what it saved.
//!
//! Data comes in three kinds, told apart by what `--data` is and what the model takes:
//! - a **table** (CSV, or TSV by extension): numeric feature columns and a label column, for a
//!   model that takes values; features are standardised with the training split's mean and
//!   deviation, which are saved with the model;
//! - a **text table**: one or more text columns and a label, for a model that starts with an
//!   embedding; kiln's tokenizer is fitted on the training split (capped to the embedding's rows)
//!   and saved with the model;
//! - an **image folder**: one subfolder per class of PNG or JPEG files, read as the model's
//!   (C, H, W) input (C = 1 grey, 3 RGB), resized when they differ, scaled to [0, 1].
//!
//! The task (classification or regression) is `--task`, or inferred and reported. What was read
//! and how is saved as the model's `kiln_data` metadata, so `eval` and `predict` read new files
//! the same way. `predict` writes exactly one row per input row, in order, or refuses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kiln_device::params::ReduceParams;
use kiln_device::{reference, Device};
use kiln_graph::{Activation, LossKind, OptimizerConfig};
use kiln_train::{Column, Dataset, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::data::qqp::{sklearn_split, Tokenizer};
use crate::models::{Job, ModelConfig, Outline, Saved};

/// What a model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One of a set of classes (the label column's distinct values, or the image subfolders).
    Classification,
    /// A number.
    Regression,
}

/// Where the inputs come from and how they become the model's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// Numeric columns, standardised.
    Table {
        /// The label column.
        label: String,
        /// The feature columns, in the model's input order.
        features: Vec<String>,
        /// The training split's mean of each feature.
        mean: Vec<f32>,
        /// The training split's deviation of each feature (1 where constant).
        std: Vec<f32>,
    },
    /// Text columns through the tokenizer.
    Text {
        /// The label column.
        label: String,
        /// The text columns; each becomes `ids_per_text` ids, one after the other.
        texts: Vec<String>,
        /// Ids per text column.
        ids_per_text: usize,
        /// The tokenizer's words (ids 2, 3, ...; 0 pads, 1 is out of vocabulary).
        words: Vec<String>,
    },
    /// A folder of images.
    Images {
        /// 1 (grey) or 3 (RGB).
        channels: usize,
        /// Pixels.
        height: usize,
        /// Pixels.
        width: usize,
    },
}

/// Saved with the model (metadata `kiln_data`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// The inputs.
    pub source: Source,
    /// Classification or regression.
    pub task: Task,
    /// Class names by index (classification).
    pub classes: Vec<String>,
}

/// The metadata key of a [`DataSpec`].
pub const META_KEY: &str = "kiln_data";

/// `kiln train --model`'s data choices.
#[derive(Clone, Debug, Default)]
pub struct FileOptions {
    /// Classification or regression (default: inferred).
    pub task: Option<Task>,
    /// The label column (default: one called label, target, class or y, else the last).
    pub label: Option<String>,
    /// The input columns (default: all others).
    pub columns: Option<Vec<String>>,
    /// Refuse bad rows instead of skipping and reporting them.
    pub strict: bool,
    /// Seed of the 80/20 split.
    pub split_seed: u32,
    /// Use the first N usable rows only.
    pub limit: Option<usize>,
}

/// Rows skipped while reading, with the first few reasons.
#[derive(Clone, Debug, Default)]
pub struct Skipped {
    /// How many.
    pub count: usize,
    /// "line N: why", the first five.
    pub examples: Vec<String>,
}

impl Skipped {
    fn add(&mut self, why: String) {
        self.count += 1;
        if self.examples.len() < 5 {
            self.examples.push(why);
        }
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.count == 0 {
            return write!(f, "no rows skipped");
        }
        write!(
            f,
            "{} rows skipped ({})",
            self.count,
            self.examples.join("; ")
        )
    }
}

/// What to do with a row that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq)]
enum OnBad {
    /// Skip and report it (training and evaluation without --strict).
    Skip,
    /// Refuse the file, naming the row (--strict, and predict: one output row per input row).
    Refuse,
}

fn bad_row(path: &Path, on_bad: OnBad, skipped: &mut Skipped, why: String) -> Result<(), String> {
    match on_bad {
        OnBad::Skip => {
            skipped.add(why);
            Ok(())
        }
        OnBad::Refuse => Err(format!(
            "{}: {why} (training and eval skip such rows unless --strict; predict writes one row per input row, so fix or remove it)",
            path.display()
        )),
    }
}

/// A delimited file: its header and its records with their line numbers.
struct Table {
    header: Vec<String>,
    rows: Vec<(u64, Vec<String>)>,
}

fn read_table(path: &Path, on_bad: OnBad, skipped: &mut Skipped) -> Result<Table, String> {
    let tsv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv") || e.eq_ignore_ascii_case("tab"));
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(if tsv { b'\t' } else { b',' })
        .flexible(true)
        .from_path(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{}: header: {e}", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(format!(
            "{}: the first line must name the columns (a header row)",
            path.display()
        ));
    }
    let mut rows = vec![];
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                bad_row(path, on_bad, skipped, format!("line {line}: {e}"))?;
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != header.len() {
            bad_row(
                path,
                on_bad,
                skipped,
                format!(
                    "line {line}: {} fields, the header has {}",
                    record.len(),
                    header.len()
                ),
            )?;
            continue;
        }
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(Table { header, rows })
}

fn column(path: &Path, header: &[String], name: &str) -> Result<usize, String> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        format!(
            "{}: no column `{name}`; the columns are {}",
            path.display(),
            header.join(", ")
        )
    })
}

fn number(cell: &str) -> Option<f32> {
    cell.trim().parse::<f32>().ok().filter(|v| v.is_finite())
}

/// Sorted class names: by value when all are numbers, else by text.
fn class_names(labels: &[&str]) -> Vec<String> {
    let set: BTreeSet<&str> = labels.iter().map(|l| l.trim()).collect();
    let mut classes: Vec<String> = set.into_iter().map(str::to_string).collect();
    if classes.iter().all(|c| number(c).is_some()) {
        classes.sort_by(|a, b| number(a).unwrap().total_cmp(&number(b).unwrap()));
    }
    classes
}

/// The loss a task and a model's output call for, or why they do not fit together.
fn loss_for(task: Task, classes: usize, o: &Outline) -> Result<LossKind, String> {
    let act = o.activation;
    match task {
        Task::Regression if o.outputs == 1 => Ok(LossKind::MeanSquaredError),
        Task::Regression => Err(format!(
            "regression predicts one number, but the model ends in {} values; end it in a dense layer of 1 unit",
            o.outputs
        )),
        Task::Classification if o.outputs == 1 => {
            if classes != 2 {
                return Err(format!(
                    "the data has {classes} classes but the model ends in 1 unit (two classes only); end it in {classes} units with softmax"
                ));
            }
            match act {
                Activation::Sigmoid => Ok(LossKind::BinaryCrossentropy),
                Activation::Linear => Ok(LossKind::BinaryCrossentropyFromLogits),
                a => Err(format!(
                    "a one-unit classifier ends in sigmoid (or linear for logits), not {a:?}"
                )),
            }
        }
        Task::Classification => {
            if o.outputs != classes {
                return Err(format!(
                    "the data has {classes} classes but the model ends in {} units; set the last layer's units to {classes}",
                    o.outputs
                ));
            }
            match act {
                Activation::Softmax => Ok(LossKind::SparseCategoricalCrossentropy),
                Activation::Linear => Ok(LossKind::SparseCategoricalCrossentropyFromLogits),
                a => Err(format!(
                    "a {classes}-class classifier ends in softmax (or linear for logits), not {a:?}"
                )),
            }
        }
    }
}

/// Targets for `labels` (already checked): 0/1 values for one output unit, class ids for more,
/// the numbers for regression.
fn targets(spec: &DataSpec, o: &Outline, labels: &[&str]) -> Column {
    match spec.task {
        Task::Regression => Column::f32(labels.iter().map(|l| number(l).unwrap()).collect(), &[1]),
        Task::Classification => {
            let ids: Vec<u32> = labels
                .iter()
                .map(|l| spec.classes.iter().position(|c| c == l.trim()).unwrap() as u32)
                .collect();
            if o.outputs == 1 {
                Column::f32(ids.into_iter().map(|i| i as f32).collect(), &[1])
            } else {
                Column::ids(ids, &[1])
            }
        }
    }
}

fn infer_task(labels: &[&str], o: &Outline) -> (Task, String) {
    if let Some(l) = labels.iter().find(|l| number(l).is_none()) {
        return (
            Task::Classification,
            format!("the labels are not all numbers (`{l}`)"),
        );
    }
    if o.outputs > 1 || matches!(o.activation, Activation::Sigmoid | Activation::Softmax) {
        return (
            Task::Classification,
            format!(
                "the model ends in {} unit(s) with {:?}",
                o.outputs, o.activation
            ),
        );
    }
    let distinct: BTreeSet<&str> = labels.iter().map(|l| l.trim()).collect();
    if distinct.len() <= 2
        && labels
            .iter()
            .all(|l| number(l).is_some_and(|v| v == v.round()))
    {
        return (
            Task::Classification,
            "the labels take two integer values (logits out of one linear unit)".into(),
        );
    }
    (
        Task::Regression,
        "numeric labels and one linear output".into(),
    )
}

/// A model file's job over data from `data`: the datasets, the loss, and the `kiln_data`
/// metadata that `eval` and `predict` read.
pub fn job(model: ModelConfig, data: &Path, seed: u64, opts: &FileOptions) -> Result<Job, String> {
    let outline = model.outline()?;
    let mut skipped = Skipped::default();
    let on_bad = if opts.strict {
        OnBad::Refuse
    } else {
        OnBad::Skip
    };
    let (spec, inputs, (targets, train_rows, val_rows), note) = if data.is_dir() {
        images_for_training(data, &outline, opts, on_bad, &mut skipped)?
    } else {
        table_for_training(data, &outline, opts, on_bad, &mut skipped)?
    };
    let loss = loss_for(spec.task, spec.classes.len(), &outline)?;
    let full = Dataset::single(inputs, targets);
    let (train, val) = (full.select(&train_rows), full.select(&val_rows));
    let report = format!(
        "{}: {} rows ({} for training, {} for validation), {skipped}; {note}",
        data.display(),
        full.len(),
        train.len(),
        val.len()
    );
    Ok(Job {
        name: "model".into(),
        model,
        train: train.first(opts.limit),
        val: Some(val.first(opts.limit.map(|n| (n / 4).max(1)))),
        config: TrainConfig {
            epochs: 10,
            batch: 32,
            seed,
            loss,
            optimizer: OptimizerConfig::adam(),
            report_every: 50,
        },
        metadata: vec![(
            META_KEY.into(),
            serde_json::to_string(&spec).expect("specs serialize"),
        )],
        data_report: Some(report),
    })
}

/// (targets, training rows, validation rows).
type Split = (Column, Vec<usize>, Vec<usize>);

fn split(n: usize, split_seed: u32, path: &Path) -> Result<(Vec<usize>, Vec<usize>), String> {
    if n < 2 {
        return Err(format!(
            "{}: {n} usable rows; training needs at least 2 (one to train on, one to validate)",
            path.display()
        ));
    }
    Ok(sklearn_split(n, 0.2, split_seed))
}

fn pick_task(
    labels: &[&str],
    outline: &Outline,
    opts: &FileOptions,
    path: &Path,
) -> Result<(Task, Vec<String>, String), String> {
    let (task, why) = match opts.task {
        Some(t) => (t, "--task".to_string()),
        None => {
            let (t, why) = infer_task(labels, outline);
            (t, format!("inferred: {why}; --task to choose"))
        }
    };
    let classes = match task {
        Task::Classification => class_names(labels),
        Task::Regression => {
            if let Some(l) = labels.iter().find(|l| number(l).is_none()) {
                return Err(format!(
                    "{}: regression needs numeric labels, found `{l}`",
                    path.display()
                ));
            }
            vec![]
        }
    };
    let note = match task {
        Task::Classification => format!(
            "classification into {} classes ({}) ({why})",
            classes.len(),
            preview(&classes)
        ),
        Task::Regression => format!("regression ({why})"),
    };
    Ok((task, classes, note))
}

fn preview(items: &[String]) -> String {
    if items.len() <= 8 {
        items.join(", ")
    } else {
        format!("{}, ... {}", items[..6].join(", "), items[items.len() - 1])
    }
}

type Prepared = (DataSpec, Column, Split, String);

fn table_for_training(
    path: &Path,
    outline: &Outline,
    opts: &FileOptions,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Prepared, String> {
    let table = read_table(path, on_bad, skipped)?;
    let label_name = match &opts.label {
        Some(l) => l.clone(),
        None => table
            .header
            .iter()
            .find(|h| ["label", "target", "class", "y"].contains(&h.to_ascii_lowercase().as_str()))
            .or(table.header.last())
            .cloned()
            .unwrap_or_default(),
    };
    let label = column(path, &table.header, &label_name)?;
    let candidates: Vec<String> = match &opts.columns {
        Some(cols) => cols.clone(),
        None => table
            .header
            .iter()
            .filter(|h| **h != label_name)
            .cloned()
            .collect(),
    };
    let cols: Vec<usize> = candidates
        .iter()
        .map(|c| column(path, &table.header, c))
        .collect::<Result<_, _>>()?;
    // Rows with an empty label cannot be trained on.
    let mut rows = vec![];
    for (line, cells) in &table.rows {
        if cells[label].trim().is_empty() {
            bad_row(path, on_bad, skipped, format!("line {line}: empty label"))?;
            continue;
        }
        rows.push((*line, cells));
    }
    let numeric = |c: usize| {
        rows.iter()
            .all(|(_, cells)| cells[c].trim().is_empty() || number(&cells[c]).is_some())
    };
    let (source_cols, note_cols, text) = if outline.takes_ids {
        let texts: Vec<usize> = if opts.columns.is_some() {
            cols.clone()
        } else {
            cols.iter().copied().filter(|&c| !numeric(c)).collect()
        };
        if texts.is_empty() {
            return Err(format!(
                "{}: the model starts with an embedding (it reads text) but no column holds text; name the text columns with --columns",
                path.display()
            ));
        }
        let ignored: Vec<&str> = cols
            .iter()
            .filter(|c| !texts.contains(c))
            .map(|&c| table.header[c].as_str())
            .collect();
        let note = if ignored.is_empty() {
            String::new()
        } else {
            format!("; numeric columns not used: {}", ignored.join(", "))
        };
        (texts, note, true)
    } else {
        if let Some(&c) = cols.iter().find(|&&c| !numeric(c)) {
            let (line, cells) = rows
                .iter()
                .find(|(_, cells)| !cells[c].trim().is_empty() && number(&cells[c]).is_none())
                .expect("a non-numeric cell");
            return Err(format!(
                "{}: column `{}` holds text (line {line}: `{}`) but the model takes numbers; leave it out with --columns, or start the model with an embedding for text",
                path.display(),
                table.header[c],
                cells[c]
            ));
        }
        (cols.clone(), String::new(), false)
    };
    // Numeric inputs must all be present.
    let mut usable = vec![];
    for (line, cells) in rows {
        if !text {
            if let Some(&c) = source_cols.iter().find(|&&c| cells[c].trim().is_empty()) {
                bad_row(
                    path,
                    on_bad,
                    skipped,
                    format!("line {line}: column `{}` is empty", table.header[c]),
                )?;
                continue;
            }
        }
        usable.push((line, cells));
    }
    let labels: Vec<&str> = usable.iter().map(|(_, c)| c[label].as_str()).collect();
    let (task, classes, task_note) = pick_task(&labels, outline, opts, path)?;
    let (train_rows, val_rows) = split(usable.len(), opts.split_seed, path)?;
    let names: Vec<String> = source_cols
        .iter()
        .map(|&c| table.header[c].clone())
        .collect();
    let width: usize = outline.input.iter().product();
    let source = if text {
        let k = source_cols.len();
        if !width.is_multiple_of(k) {
            return Err(format!(
                "the model takes {width} ids per sample, which does not split evenly over {k} text columns ({}); make \"input\" a multiple of {k}",
                names.join(", ")
            ));
        }
        let cap = match outline.vocab {
            Some(v) if v < 3 => {
                return Err(format!(
                    "the embedding has {v} rows; text needs at least 3 (padding, unknown, one word)"
                ))
            }
            Some(v) => Some(v - 2),
            None => None,
        };
        let usable = &usable;
        let tokenizer = Tokenizer::fit(
            train_rows
                .iter()
                .flat_map(|&r| source_cols.iter().map(move |&c| usable[r].1[c].as_str())),
            cap,
        );
        Source::Text {
            label: label_name,
            texts: names,
            ids_per_text: width / k,
            words: tokenizer.words,
        }
    } else {
        if width != names.len() || outline.input.len() != 1 {
            return Err(format!(
                "{}: the model takes input {:?} but the file has {} feature columns ({}); set \"input\": [{}] in the model file, or pick columns with --columns",
                path.display(),
                outline.input,
                names.len(),
                preview(&names),
                names.len()
            ));
        }
        let n = train_rows.len() as f64;
        let (mut mean, mut std) = (vec![], vec![]);
        for &c in &source_cols {
            let m = train_rows
                .iter()
                .map(|&r| number(&usable[r].1[c]).unwrap() as f64)
                .sum::<f64>()
                / n;
            let v = train_rows
                .iter()
                .map(|&r| (number(&usable[r].1[c]).unwrap() as f64 - m).powi(2))
                .sum::<f64>()
                / n;
            mean.push(m as f32);
            std.push(if v > 1e-12 { v.sqrt() as f32 } else { 1.0 });
        }
        Source::Table {
            label: label_name,
            features: names,
            mean,
            std,
        }
    };
    let spec = DataSpec {
        source,
        task,
        classes,
    };
    let cells: Vec<&[String]> = usable.iter().map(|(_, c)| c.as_slice()).collect();
    let inputs = encode_rows(&spec, &table.header, &cells, path)?;
    let targets = targets(&spec, outline, &labels);
    let kind = if text { "text" } else { "numeric" };
    let note = format!(
        "label `{}`; {kind} inputs {}{note_cols}; {task_note}",
        table.header[label],
        preview(&spec_inputs(&spec.source))
    );
    Ok((spec, inputs, (targets, train_rows, val_rows), note))
}

fn spec_inputs(s: &Source) -> Vec<String> {
    match s {
        Source::Table { features, .. } => features.clone(),
        Source::Text { texts, .. } => texts.clone(),
        Source::Images { .. } => vec![],
    }
}

/// The model's input for rows of a table whose columns are `header` (numeric cells checked).
fn encode_rows(
    spec: &DataSpec,
    header: &[String],
    rows: &[&[String]],
    path: &Path,
) -> Result<Column, String> {
    let find = |name: &str| column(path, header, name);
    match &spec.source {
        Source::Table {
            features,
            mean,
            std,
            ..
        } => {
            let cols: Vec<usize> = features.iter().map(|f| find(f)).collect::<Result<_, _>>()?;
            let mut values = Vec::with_capacity(rows.len() * cols.len());
            for (i, cells) in rows.iter().enumerate() {
                for (k, &c) in cols.iter().enumerate() {
                    let v = number(&cells[c]).ok_or_else(|| {
                        format!(
                            "{}: data row {}: column `{}` is `{}`, not a number",
                            path.display(),
                            i + 1,
                            header[c],
                            cells[c]
                        )
                    })?;
                    values.push((v - mean[k]) / std[k]);
                }
            }
            Ok(Column::f32(values, &[cols.len()]))
        }
        Source::Text {
            texts,
            ids_per_text,
            words,
            ..
        } => {
            let cols: Vec<usize> = texts.iter().map(|t| find(t)).collect::<Result<_, _>>()?;
            let tokenizer = Tokenizer::from_words(words.clone());
            let ids = rows
                .iter()
                .flat_map(|cells| {
                    cols.iter()
                        .flat_map(|&c| tokenizer.encode(&cells[c], *ids_per_text))
                })
                .collect();
            Ok(Column::ids(ids, &[cols.len() * ids_per_text]))
        }
        Source::Images { .. } => unreachable!("images are not tables"),
    }
}

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

/// (image file, class folder name) under `dir`: one subfolder per class.
fn labelled_images(dir: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let mut out = vec![];
    for sub in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let class = sub.file_name().unwrap().to_string_lossy().to_string();
        for f in sorted_entries(&sub)?.into_iter().filter(|p| is_image(p)) {
            out.push((f, class.clone()));
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{}: no PNG or JPEG files in class subfolders; an image folder holds one subfolder per class (cats/, dogs/, ...)",
            dir.display()
        ));
    }
    Ok(out)
}

/// Every image file under `dir`, in sorted order, subfolders included.
fn all_images(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = vec![];
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            out.extend(all_images(&p)?);
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// One image as (C, H, W) values in [0, 1]; whether it was resized.
fn read_image(path: &Path, c: usize, h: usize, w: usize) -> Result<(Vec<f32>, bool), String> {
    let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let resized = img.width() as usize != w || img.height() as usize != h;
    let img = if resized {
        img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let planar = |raw: &[u8], channels: usize| -> Vec<f32> {
        (0..channels)
            .flat_map(|ch| (0..h * w).map(move |p| raw[p * channels + ch] as f32 / 255.0))
            .collect()
    };
    Ok(match c {
        1 => (planar(img.to_luma8().as_raw(), 1), resized),
        _ => (planar(img.to_rgb8().as_raw(), 3), resized),
    })
}

fn image_shape(o: &Outline) -> Result<(usize, usize, usize), String> {
    match o.input[..] {
        [c @ (1 | 3), h, w] if !o.takes_ids => Ok((c, h, w)),
        _ => Err(format!(
            "an image folder needs a model whose input is [channels, height, width] with 1 (grey) or 3 (RGB) channels; this one takes {:?}",
            o.input
        )),
    }
}

fn read_images(
    files: &[PathBuf],
    shape: (usize, usize, usize),
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<(Vec<f32>, Vec<usize>, usize), String> {
    let (c, h, w) = shape;
    let (mut values, mut kept, mut resized) = (vec![], vec![], 0);
    for (i, f) in files.iter().enumerate() {
        match read_image(f, c, h, w) {
            Ok((v, r)) => {
                values.extend(v);
                kept.push(i);
                resized += r as usize;
            }
            Err(e) => bad_row(f, on_bad, skipped, e)?,
        }
    }
    Ok((values, kept, resized))
}

fn images_for_training(
    dir: &Path,
    outline: &Outline,
    opts: &FileOptions,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Prepared, String> {
    if opts.task == Some(Task::Regression) {
        return Err(
            "an image folder is labelled by class subfolders: --task regression does not apply"
                .into(),
        );
    }
    let shape = image_shape(outline)?;
    let files = labelled_images(dir)?;
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let (values, kept, resized) = read_images(&paths, shape, on_bad, skipped)?;
    let labels: Vec<&str> = kept.iter().map(|&i| files[i].1.as_str()).collect();
    let classes = class_names(&labels);
    let spec = DataSpec {
        source: Source::Images {
            channels: shape.0,
            height: shape.1,
            width: shape.2,
        },
        task: Task::Classification,
        classes,
    };
    let (train_rows, val_rows) = split(kept.len(), opts.split_seed, dir)?;
    let note = format!(
        "images as {:?}, {resized} resized; classification into {} classes ({})",
        [shape.0, shape.1, shape.2],
        spec.classes.len(),
        preview(&spec.classes)
    );
    let inputs = Column::f32(values, &[shape.0, shape.1, shape.2]);
    let targets = targets(&spec, outline, &labels);
    Ok((spec, inputs, (targets, train_rows, val_rows), note))
}

/// Loads a model saved by `kiln train --model`, and the data spec saved with it.
pub fn load(device: &Device, path: &Path) -> Result<(Saved, DataSpec), String> {
    let saved = crate::models::load_saved(device, path)?;
    let spec: DataSpec = serde_json::from_str(saved.checkpoint.meta(META_KEY).ok_or_else(|| {
        format!(
            "{}: no `{META_KEY}` metadata: it was not trained from a data file (eval and predict of the built-in jobs name them: `kiln eval mnist`, `kiln predict qqp`)",
            path.display()
        )
    })?)
    .map_err(|e| format!("{}: {META_KEY}: {e}", path.display()))?;
    Ok((saved, spec))
}

/// Inputs (and labels, when wanted) of a file or folder read the way `spec` says.
struct Read {
    inputs: Column,
    /// One name per row: "line N" or the image path.
    names: Vec<String>,
    labels: Vec<String>,
}

fn read_for(
    spec: &DataSpec,
    data: &Path,
    with_labels: bool,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Read, String> {
    if let Source::Images {
        channels,
        height,
        width,
    } = spec.source
    {
        if !data.is_dir() {
            return Err(format!(
                "{}: this model reads an image folder",
                data.display()
            ));
        }
        let files: Vec<(PathBuf, String)> = if with_labels {
            labelled_images(data)?
        } else {
            all_images(data)?
                .into_iter()
                .map(|p| (p, String::new()))
                .collect()
        };
        let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        let (values, kept, _) = read_images(&paths, (channels, height, width), on_bad, skipped)?;
        if kept.is_empty() {
            return Err(format!(
                "{}: no image could be read ({skipped})",
                data.display()
            ));
        }
        return Ok(Read {
            inputs: Column::f32(values, &[channels, height, width]),
            names: kept
                .iter()
                .map(|&i| files[i].0.display().to_string())
                .collect(),
            labels: kept.iter().map(|&i| files[i].1.clone()).collect(),
        });
    }
    if data.is_dir() {
        return Err(format!(
            "{}: this model reads a CSV file, not a folder",
            data.display()
        ));
    }
    let table = read_table(data, on_bad, skipped)?;
    let label = match &spec.source {
        Source::Table { label, .. } | Source::Text { label, .. } => label.clone(),
        Source::Images { .. } => unreachable!(),
    };
    let label_col = if with_labels {
        Some(column(data, &table.header, &label)?)
    } else {
        None
    };
    let (mut names, mut labels, mut cells) = (vec![], vec![], vec![]);
    let inputs = spec_inputs(&spec.source);
    let input_cols: Vec<usize> = inputs
        .iter()
        .map(|c| column(data, &table.header, c))
        .collect::<Result<_, _>>()?;
    let numeric = matches!(spec.source, Source::Table { .. });
    for (line, row) in &table.rows {
        if let Some(l) = label_col {
            let known = match spec.task {
                Task::Classification => spec.classes.iter().any(|c| c == row[l].trim()),
                Task::Regression => number(&row[l]).is_some(),
            };
            if !known {
                bad_row(
                    data,
                    on_bad,
                    skipped,
                    format!("line {line}: label `{}` is not one the model knows", row[l]),
                )?;
                continue;
            }
        }
        if numeric {
            if let Some(&c) = input_cols.iter().find(|&&c| number(&row[c]).is_none()) {
                bad_row(
                    data,
                    on_bad,
                    skipped,
                    format!(
                        "line {line}: column `{}` is `{}`, not a number",
                        table.header[c], row[c]
                    ),
                )?;
                continue;
            }
        }
        names.push(format!("{line}"));
        labels.push(
            label_col
                .map(|l| row[l].trim().to_string())
                .unwrap_or_default(),
        );
        cells.push(row.as_slice());
    }
    if cells.is_empty() {
        return Err(format!("{}: no usable rows ({skipped})", data.display()));
    }
    Ok(Read {
        inputs: encode_rows(spec, &table.header, &cells, data)?,
        names,
        labels,
    })
}

/// `kiln eval` of a file-trained model.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    /// The model file.
    pub model: PathBuf,
    /// The data.
    pub data: PathBuf,
    /// Rows evaluated.
    pub rows: usize,
    /// Rows skipped (bad or unknown labels, unreadable values).
    pub skipped: usize,
    /// Why, the first few.
    pub skipped_examples: Vec<String>,
    /// Mean loss.
    pub loss: f32,
    /// `accuracy` or `mae`.
    pub metric: String,
    /// Its value.
    pub value: f32,
}

/// Evaluates a model saved by `kiln train --model` on labelled `data`.
pub fn eval(device: &Device, path: &Path, data: &Path, strict: bool) -> Result<EvalReport, String> {
    let (saved, spec) = load(device, path)?;
    let mut skipped = Skipped::default();
    let on_bad = if strict { OnBad::Refuse } else { OnBad::Skip };
    let read = read_for(&spec, data, true, on_bad, &mut skipped)?;
    let labels: Vec<&str> = read.labels.iter().map(String::as_str).collect();
    let loss = loss_for(spec.task, spec.classes.len(), &saved.outline)?;
    let set = Dataset::single(read.inputs, targets(&spec, &saved.outline, &labels));
    let (l, value) = kiln_train::evaluate(&*saved.model, &saved.params, &set, 256, &loss)
        .map_err(|e| e.to_string())?;
    Ok(EvalReport {
        model: path.into(),
        data: data.into(),
        rows: set.len(),
        skipped: skipped.count,
        skipped_examples: skipped.examples,
        loss: l,
        metric: kiln_graph::Objective::metric_name(&loss)
            .unwrap_or("loss")
            .to_string(),
        value,
    })
}

/// Refuses an `--out` that is a folder, or a file that exists unless `force`.
pub fn check_out_file(out: &Path, force: bool) -> Result<(), String> {
    if out.is_dir() {
        return Err(format!(
            "{} is a folder; --out names the CSV file to write",
            out.display()
        ));
    }
    if out.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to overwrite it, or --out for another file",
            out.display()
        ));
    }
    Ok(())
}

/// Writes predictions for every row (or image) of `data` to `out` as CSV: `row` (the input's
/// line number, or the image path), `prediction` (the class name or the number) and, for
/// classification, one probability column per class. Returns the number of rows.
pub fn predict(
    device: &Device,
    path: &Path,
    data: &Path,
    out: &Path,
    force: bool,
) -> Result<usize, String> {
    check_out_file(out, force)?;
    let (saved, spec) = load(device, path)?;
    let mut skipped = Skipped::default();
    let read = read_for(&spec, data, false, OnBad::Refuse, &mut skipped)?;
    let (values, shape) = kiln_train::predict(&*saved.model, &saved.params, &[read.inputs], 256)
        .map_err(|e| e.to_string())?;
    let width: usize = shape[1..].iter().product();
    let loss = loss_for(spec.task, spec.classes.len(), &saved.outline)?;
    let classes = &spec.classes;
    let first = if matches!(spec.source, Source::Images { .. }) {
        "file"
    } else {
        "line"
    };
    let mut header = vec![first.to_string(), "prediction".to_string()];
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).map_err(|e| e.to_string())?;
    // Each row's class probabilities (none for regression), from the output the loss reads.
    let probs: Vec<f32> = match loss {
        LossKind::BinaryCrossentropy => values.iter().flat_map(|&p| [1.0 - p, p]).collect(),
        LossKind::BinaryCrossentropyFromLogits => values
            .iter()
            .map(|&x| reference::sigmoid(x))
            .flat_map(|p| [1.0 - p, p])
            .collect(),
        LossKind::SparseCategoricalCrossentropy => values.clone(),
        LossKind::SparseCategoricalCrossentropyFromLogits => {
            let mut out = vec![0.0; values.len()];
            let rows = values.len() / width;
            reference::softmax(
                &ReduceParams::for_axis(&[rows, width], 1),
                false,
                &values,
                &mut out,
            );
            out
        }
        _ => vec![],
    };
    for (i, (name, row)) in read.names.iter().zip(values.chunks(width)).enumerate() {
        let mut record = vec![name.clone()];
        if probs.is_empty() {
            record.push(format!("{}", row[0]));
        } else {
            let p = &probs[i * classes.len()..(i + 1) * classes.len()];
            let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            record.push(classes[best].clone());
            record.extend(p.iter().map(|v| format!("{v:.6}")));
        }
        w.write_record(&record).map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    kiln_graph::checkpoint::write_atomic(out, &bytes).map_err(|e| e.to_string())?;
    Ok(read.names.len())
}
