//! Data files read for a model (`kiln train --model model.json --data FILE`, and [`prepare`]
//! from Rust): what the file is, checked against what the model takes, with the loss it calls
//! for and the [`DataSpec`] that `kiln eval` and `kiln predict` read new files by.
//!
//! Data comes in three kinds, told apart by what the path is and what the model takes:
//! - a **table** (CSV, or TSV by extension): numeric feature columns and a label column, for a
//!   model that takes values; features are standardised with the training split's mean and
//!   deviation, which are saved with the model;
//! - a **text table**: one or more text columns and a label, for a model that starts with an
//!   embedding; kiln's tokenizer is fitted on the training split (capped to the embedding's rows)
//!   and saved with the model;
//! - an **image folder**: one subfolder per class of PNG or JPEG files, read as the model's
//!   (C, H, W) input (C = 1 grey, 3 RGB), resized when they differ, scaled to [0, 1].
//!
//! The task (classification or regression) is given, or inferred and reported.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kiln_train::kiln_graph::{Activation, LossKind};
use kiln_train::{Column, Dataset};

use crate::images;
use crate::qqp::{sklearn_split, Tokenizer};
use crate::read::{read_for, Labels};
use crate::spec::{DataSpec, Source, Task, META_KEY};
use crate::table::{self, Cell, Table};
use crate::{clip, Error, Outline, Result};

/// How to read a data file for a model (`kiln train --model`'s data flags).
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
    /// A resumed run's spec: the data is read the way it says (its columns by name, its
    /// standardisation or vocabulary, its classes), and a file that does not match is refused.
    pub resume: Option<DataSpec>,
    /// Every usable row for training, none held out (the statistics then come from all of
    /// them): for a caller that splits the data itself.
    pub no_split: bool,
    /// Numeric features as they are, not standardised (the spec's means 0, deviations 1).
    pub unscaled: bool,
    /// Ids per text column where the outline leaves the input free (an empty `input`); else
    /// the model's input fixes it.
    pub ids_per_text: Option<usize>,
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
pub enum OnBad {
    /// Skip and report it (training and evaluation without --strict).
    Skip,
    /// Refuse the file, naming the row (--strict, and predict: one output row per input row).
    Refuse,
}

impl OnBad {
    /// Refuse with `strict`, else skip.
    pub fn strict(strict: bool) -> OnBad {
        if strict {
            OnBad::Refuse
        } else {
            OnBad::Skip
        }
    }
}

pub(crate) fn bad_row(
    path: &Path,
    on_bad: OnBad,
    skipped: &mut Skipped,
    why: String,
) -> Result<()> {
    let why = clip(&why);
    match on_bad {
        OnBad::Skip => {
            skipped.add(why);
            Ok(())
        }
        OnBad::Refuse => Err(Error::bad(
            path,
            format!("{why} (training and eval skip such rows unless --strict; predict writes one row per input row, so fix or remove it)"),
        )),
    }
}

/// [`bad_row`] for a whole file of a folder (an image): its skip names the file.
pub(crate) fn bad_file(
    path: &Path,
    on_bad: OnBad,
    skipped: &mut Skipped,
    why: String,
) -> Result<()> {
    match on_bad {
        OnBad::Skip => bad_row(path, on_bad, skipped, format!("{}: {why}", path.display())),
        OnBad::Refuse => bad_row(path, on_bad, skipped, why),
    }
}

/// The table at `path` through the one record reader: the lines that are no record are skipped
/// (counted, with their line numbers) or refuse the file.
pub(crate) fn read_table(path: &Path, on_bad: OnBad, skipped: &mut Skipped) -> Result<Table> {
    let table = table::read(path)?;
    for b in &table.bad {
        bad_row(path, on_bad, skipped, b.to_string())?;
    }
    Ok(table)
}

pub(crate) fn column(path: &Path, table: &Table, name: &str) -> Result<usize> {
    table
        .column(name)
        .map_err(|e| Error::mismatch(format!("{}: {e}", path.display())))
}

fn number(cell: &str) -> Option<f32> {
    match Cell::of(cell) {
        Cell::Number(v) => Some(v),
        _ => None,
    }
}

/// Sorted class names: by value when all are numbers, else by text.
fn class_names<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = labels.into_iter().map(str::trim).collect();
    let mut classes: Vec<String> = set.into_iter().map(str::to_string).collect();
    if classes.iter().all(|c| number(c).is_some()) {
        classes.sort_by(|a, b| number(a).unwrap().total_cmp(&number(b).unwrap()));
    }
    classes
}

/// The loss a task and a model's output call for, or why they do not fit together.
pub fn loss_for(task: Task, classes: usize, o: &Outline) -> Result<LossKind> {
    let act = o.activation;
    match task {
        Task::Regression if o.outputs == 1 => Ok(LossKind::MeanSquaredError),
        Task::Regression => Err(format!(
            "regression predicts one number, but the model ends in {} values; end it in a dense layer of 1 unit",
            o.outputs
        ).into()),
        Task::Classification if o.outputs == 1 => {
            if classes != 2 {
                return Err(format!(
                    "the data has {classes} classes but the model ends in 1 unit (two classes only); end it in {classes} units with softmax"
                ).into());
            }
            match act {
                Activation::Sigmoid => Ok(LossKind::BinaryCrossentropy),
                Activation::Linear => Ok(LossKind::BinaryCrossentropyFromLogits),
                a => Err(format!(
                    "a one-unit classifier ends in sigmoid (or linear for logits), not {a:?}"
                ).into()),
            }
        }
        Task::Classification => {
            if o.outputs != classes {
                return Err(format!(
                    "the data has {classes} classes but the model ends in {} units; set the last layer's units to {classes}",
                    o.outputs
                ).into());
            }
            match act {
                Activation::Softmax => Ok(LossKind::SparseCategoricalCrossentropy),
                Activation::Linear => Ok(LossKind::SparseCategoricalCrossentropyFromLogits),
                a => Err(format!(
                    "a {classes}-class classifier ends in softmax (or linear for logits), not {a:?}"
                ).into()),
            }
        }
    }
}

/// Targets for `labels` (already checked against the spec): class indices as f32 values for one
/// output unit (0/1 for two classes), class ids (u32) for more, the numbers for regression; each
/// of per-sample shape `[1]`.
pub fn targets(spec: &DataSpec, o: &Outline, labels: &[&str]) -> Column {
    match spec.task {
        Task::Regression => Column::f32(
            labels
                .iter()
                .map(|l| number(l).expect("checked labels"))
                .collect(),
            &[1],
        ),
        Task::Classification => {
            let ids: Vec<u32> = labels
                .iter()
                .map(|l| {
                    spec.classes
                        .iter()
                        .position(|c| c == l.trim())
                        .expect("checked labels") as u32
                })
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
    if let Some(l) = labels.iter().find(|l| !Cell::of(l).is_numeric()) {
        return (
            Task::Classification,
            format!("the labels are not all numbers (`{}`)", clip(l.trim())),
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

/// A data file read for a model ([`prepare`]).
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The training split (80%, sklearn's `train_test_split` order), limited by `limit`.
    pub train: Dataset,
    /// The validation split (20%), limited to a quarter of `limit`.
    pub val: Dataset,
    /// How the data was read: saved with the model (metadata [`META_KEY`]) so that new files
    /// are read the same way ([`crate::read_for`]).
    pub spec: DataSpec,
    /// The loss the task and the model's output call for.
    pub loss: LossKind,
    /// What was read: rows used and skipped (with why), the label, the task and how it was
    /// chosen.
    pub report: String,
}

/// Reads `data` (a table, a text table, or an image folder, by what it is and what the model
/// takes) for a model of outline `outline`: the 80/20 split, the spec, the loss, and the report.
/// A resumed run's spec (`opts.resume`) reads the data its way and refuses data it cannot.
pub fn prepare(data: &Path, outline: &Outline, opts: &FileOptions) -> Result<Prepared> {
    let ((spec, inputs, (targets, train_rows, val_rows), note), skipped) =
        read_found(data, outline, opts)?;
    let loss = loss_for(spec.task, spec.classes.len(), outline).map_err(|e| {
        match spec.source.label() {
            Some(label) => Error::mismatch(format!(
                "{e} (the label column is `{}`; --label picks another)",
                clip(label)
            )),
            None => e,
        }
    })?;
    let full = Dataset::single(inputs, targets);
    let (train, val) = (full.select(&train_rows), full.select(&val_rows));
    let report = format!(
        "{}: {} rows ({} for training, {} for validation), {skipped}; {note}",
        data.display(),
        full.len(),
        train.len(),
        val.len()
    );
    Ok(Prepared {
        train: train.first(opts.limit),
        val: val.first(opts.limit.map(|n| (n / 4).max(1))),
        spec,
        loss,
        report,
    })
}

/// What `data` gives for `outline` (before any loss is chosen), and the rows skipped.
pub(crate) fn read_found(
    data: &Path,
    outline: &Outline,
    opts: &FileOptions,
) -> Result<(Found, Skipped)> {
    let mut skipped = Skipped::default();
    let on_bad = OnBad::strict(opts.strict);
    let found = match &opts.resume {
        Some(spec) => resumed(spec, data, outline, opts, &mut skipped)?,
        None if data.is_dir() => images_for_training(data, outline, opts, on_bad, &mut skipped)?,
        None => table_for_training(data, outline, opts, on_bad, &mut skipped)?,
    };
    Ok((found, skipped))
}

/// (targets, training rows, validation rows).
type Split = (Column, Vec<usize>, Vec<usize>);

/// The training and validation rows of `n` (sklearn's 80/20 split), or all for training with
/// `no_split`.
fn split(n: usize, opts: &FileOptions, path: &Path) -> Result<(Vec<usize>, Vec<usize>)> {
    if opts.no_split {
        if n == 0 {
            return Err(Error::bad(path, "no usable rows"));
        }
        return Ok(((0..n).collect(), vec![]));
    }
    if n < 2 {
        return Err(Error::bad(
            path,
            format!(
                "{n} usable rows; training needs at least 2 (one to train on, one to validate)"
            ),
        ));
    }
    Ok(sklearn_split(n, 0.2, opts.split_seed))
}

/// A resumed run's data, read the way the run reads it; the classes must be the run's.
fn resumed(
    spec: &DataSpec,
    data: &Path,
    outline: &Outline,
    opts: &FileOptions,
    skipped: &mut Skipped,
) -> Result<Found> {
    let at = |e: String| Error::mismatch(format!("--resume: {e}"));
    spec.check(outline)
        .map_err(|e| at(format!("the run's {META_KEY} {e}")))?;
    spec.check_options(opts.task, opts.label.as_deref(), opts.columns.as_deref())
        .map_err(at)?;
    let read = read_for(
        spec,
        data,
        Labels::Exact,
        OnBad::strict(opts.strict),
        skipped,
    )
    .map_err(|e| at(e.to_string()))?;
    let labels: Vec<&str> = read.labels.iter().map(String::as_str).collect();
    let (train_rows, val_rows) = split(labels.len(), opts, data)?;
    let targets = targets(spec, outline, &labels);
    let note = format!(
        "read as the resumed run reads its data ({} {}{})",
        spec.task.name(),
        preview(spec.source.inputs()),
        read.note
    );
    Ok((
        spec.clone(),
        read.inputs,
        (targets, train_rows, val_rows),
        note,
    ))
}

/// The task (given or inferred), its classes, and the report of it; `rows` loses the rows
/// whose label the task cannot use.
fn pick_task(
    rows: &mut Vec<(String, &[String])>,
    label: usize,
    outline: &Outline,
    opts: &FileOptions,
    path: &Path,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<(Task, Vec<String>, String)> {
    let (task, why) = {
        let labels: Vec<&str> = rows.iter().map(|(_, c)| c[label].as_str()).collect();
        match opts.task {
            Some(t) => (t, "--task".to_string()),
            None => {
                let (t, why) = infer_task(&labels, outline);
                (t, format!("inferred: {why}; --task to choose"))
            }
        }
    };
    if task == Task::Regression {
        if let Some((line, cells)) = rows.iter().find(|(_, c)| Cell::of(&c[label]) == Cell::Text) {
            return Err(format!(
                "{}: regression needs numeric labels, found `{}` on {line}",
                path.display(),
                clip(cells[label].trim())
            )
            .into());
        }
        let mut kept = vec![];
        for (line, cells) in rows.drain(..) {
            match Cell::problem(&cells[label], "label") {
                Some(why) => bad_row(path, on_bad, skipped, format!("{line}: {why}"))?,
                None => kept.push((line, cells)),
            }
        }
        *rows = kept;
    }
    let classes = match task {
        Task::Classification => class_names(rows.iter().map(|(_, c)| c[label].as_str())),
        Task::Regression => vec![],
    };
    if task == Task::Classification && classes.len() == 1 {
        return Err(format!(
            "{}: every usable row has the label `{}`: one class, and a classifier learns to tell at least two apart. Check that the label column is the one you mean (--label), or add rows of the other classes",
            path.display(),
            clip(&classes[0])
        ).into());
    }
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
    let items: Vec<String> = items.iter().map(|i| clip(i)).collect();
    if items.len() <= 8 {
        items.join(", ")
    } else {
        format!("{}, ... {}", items[..6].join(", "), items[items.len() - 1])
    }
}

/// What a file gave: (spec, inputs, split targets and rows, the report's note).
pub(crate) type Found = (DataSpec, Column, Split, String);

/// The label column and the input columns of a table, by the options, checked: the label is not
/// an input, no input is named twice, and there is at least one.
fn columns_of(path: &Path, table: &Table, opts: &FileOptions) -> Result<(usize, Vec<usize>)> {
    // By name, in this order of preference whatever the columns' order (`x, y, label` has the
    // label `label`), else the last column.
    let label_name = match &opts.label {
        Some(l) => l.clone(),
        None => ["label", "target", "class", "y"]
            .iter()
            .find_map(|want| table.header.iter().find(|h| h.eq_ignore_ascii_case(want)))
            .or(table.header.last())
            .cloned()
            .unwrap_or_default(),
    };
    let label = column(path, table, &label_name)?;
    let names: Vec<String> = match &opts.columns {
        Some(cols) => {
            if cols.contains(&label_name) {
                return Err(format!(
                    "--columns names `{}`, the label column: the label is what the model learns to predict, not one of its inputs; leave it out of --columns (or choose another label with --label)",
                    clip(&label_name)
                ).into());
            }
            if let Some(c) = cols
                .iter()
                .enumerate()
                .find(|(i, c)| cols[..*i].contains(c))
            {
                return Err(format!("--columns names `{}` twice", clip(c.1)).into());
            }
            cols.clone()
        }
        None => table
            .header
            .iter()
            .filter(|h| **h != label_name)
            .cloned()
            .collect(),
    };
    if names.is_empty() {
        let how = table.delimiter_note.clone().unwrap_or_else(|| {
            format!(
                "{}-separated",
                if table.delimiter == b'\t' {
                    "tab"
                } else {
                    "comma"
                }
            )
        });
        return Err(format!(
            "{}: its only column is the label `{}`, and a model needs input columns besides it. kiln read the header as {how}; separate the columns with commas (or tabs in a .tsv)",
            path.display(),
            clip(&label_name)
        ).into());
    }
    let cols = names
        .iter()
        .map(|c| column(path, table, c))
        .collect::<Result<_>>()?;
    Ok((label, cols))
}

/// A table's rows by reference: (where, e.g. "line 5"; cells).
type Rows<'t> = Vec<(String, &'t [String])>;

fn table_for_training(
    path: &Path,
    outline: &Outline,
    opts: &FileOptions,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Found> {
    let table = read_table(path, on_bad, skipped)?;
    let (label, cols) = columns_of(path, &table, opts)?;
    let rows = labelled_rows(&table, label, path, on_bad, skipped)?;
    let picked = input_columns(&table, &cols, &rows, outline, opts.columns.is_some(), path)?;
    let mut usable = if picked.text {
        rows
    } else {
        numeric_rows(rows, &picked.cols, &table, path, on_bad, skipped)?
    };
    let (task, classes, task_note) =
        pick_task(&mut usable, label, outline, opts, path, on_bad, skipped)?;
    let labels: Vec<&str> = usable.iter().map(|(_, c)| c[label].as_str()).collect();
    let (train_rows, val_rows) = split(usable.len(), opts, path)?;
    let label_name = table.header[label].clone();
    let train: Vec<&[String]> = train_rows.iter().map(|&r| usable[r].1).collect();
    let source = if picked.text {
        text_source(&table, &picked.cols, label_name, &train, outline, opts)?
    } else {
        table_source(
            &table,
            &picked.cols,
            label_name,
            &train,
            outline,
            path,
            opts,
        )?
    };
    let spec = DataSpec {
        source,
        task,
        classes,
    };
    let cells: Vec<&[String]> = usable.iter().map(|(_, c)| *c).collect();
    let inputs = encode_rows(&spec, &table, &cells, path)?;
    let targets = targets(&spec, outline, &labels);
    let kind = if picked.text { "text" } else { "numeric" };
    let read_as = table
        .delimiter_note
        .as_ref()
        .map_or(String::new(), |n| format!("read as {n}; "));
    let note = format!(
        "{read_as}label `{}`; {kind} inputs {}{}; {task_note}",
        clip(&table.header[label]),
        preview(spec.source.inputs()),
        picked.note
    );
    Ok((spec, inputs, (targets, train_rows, val_rows), note))
}

/// The rows that have a label; those without are skipped or refuse the file.
fn labelled_rows<'t>(
    table: &'t Table,
    label: usize,
    path: &Path,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Rows<'t>> {
    let mut rows = vec![];
    for row in &table.rows {
        let line = row.lines.to_string();
        if row.cells[label].trim().is_empty() {
            bad_row(path, on_bad, skipped, format!("{line}: empty label"))?;
            continue;
        }
        rows.push((line, row.cells.as_slice()));
    }
    Ok(rows)
}

/// The columns a model reads from a table, and whether as text.
struct Picked {
    cols: Vec<usize>,
    /// For the report ("; numeric columns not used: ...").
    note: String,
    text: bool,
}

/// The input columns: for a model that starts with an embedding, the text columns (or all named
/// by --columns); else the candidates, which must all hold numbers.
fn input_columns(
    table: &Table,
    cols: &[usize],
    rows: &Rows,
    outline: &Outline,
    named: bool,
    path: &Path,
) -> Result<Picked> {
    let numeric = |c: usize| {
        rows.iter()
            .all(|(_, cells)| Cell::of(&cells[c]).is_numeric())
    };
    if outline.takes_ids {
        let texts: Vec<usize> = if named {
            cols.to_vec()
        } else {
            cols.iter().copied().filter(|&c| !numeric(c)).collect()
        };
        if texts.is_empty() {
            return Err(format!(
                "{}: the model starts with an embedding (it reads text) but no column holds text; name the text columns with --columns",
                path.display()
            ).into());
        }
        let ignored: Vec<&str> = cols
            .iter()
            .filter(|c| !texts.contains(c))
            .map(|&c| table.header[c].as_str())
            .collect();
        let note = if ignored.is_empty() {
            String::new()
        } else {
            format!("; numeric columns not used: {}", clip(&ignored.join(", ")))
        };
        return Ok(Picked {
            cols: texts,
            note,
            text: true,
        });
    }
    if let Some(&c) = cols.iter().find(|&&c| !numeric(c)) {
        let (line, cells) = rows
            .iter()
            .find(|(_, cells)| Cell::of(&cells[c]) == Cell::Text)
            .expect("a text cell");
        return Err(format!(
            "{}: column `{}` holds text ({line}: `{}`) but the model takes numbers; leave it out with --columns, or start the model with an embedding for text",
            path.display(),
            clip(&table.header[c]),
            clip(&cells[c])
        ).into());
    }
    Ok(Picked {
        cols: cols.to_vec(),
        note: String::new(),
        text: false,
    })
}

/// The rows whose numeric inputs are all usable numbers; the others are skipped or refuse the
/// file.
fn numeric_rows<'t>(
    rows: Rows<'t>,
    cols: &[usize],
    table: &Table,
    path: &Path,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Rows<'t>> {
    let mut usable = vec![];
    for (line, cells) in rows {
        let problem = cols
            .iter()
            .find_map(|&c| Cell::problem(&cells[c], &table.header[c]));
        match problem {
            Some(why) => bad_row(path, on_bad, skipped, format!("{line}: {why}"))?,
            None => usable.push((line, cells)),
        }
    }
    Ok(usable)
}

/// A text table's source: the tokenizer fitted on the training rows, capped to the embedding,
/// each text column an equal share of the model's ids.
fn text_source(
    table: &Table,
    cols: &[usize],
    label: String,
    train: &[&[String]],
    outline: &Outline,
    opts: &FileOptions,
) -> Result<Source> {
    let names: Vec<String> = cols.iter().map(|&c| table.header[c].clone()).collect();
    let k = cols.len();
    let width: usize = match (outline.input.is_empty(), opts.ids_per_text) {
        (true, Some(n)) if n > 0 => n * k,
        (true, _) => {
            return Err(Error::mismatch(
                "ids per text column must be at least 1 when the input is free",
            ))
        }
        (false, _) => outline.input.iter().product(),
    };
    if !width.is_multiple_of(k) {
        return Err(format!(
            "the model takes {width} ids per sample, which does not split evenly over {k} text columns ({}); make \"input\" a multiple of {k}",
            preview(&names)
        ).into());
    }
    let cap = match outline.vocab {
        Some(v) if v < 3 => {
            return Err(format!(
                "the embedding has {v} rows; text needs at least 3 (padding, unknown, one word)"
            )
            .into())
        }
        Some(v) => Some(v - 2),
        None => None,
    };
    let tokenizer = Tokenizer::fit(
        train
            .iter()
            .flat_map(|cells| cols.iter().map(move |&c| cells[c].as_str())),
        cap,
    );
    Ok(Source::Text {
        label,
        texts: names,
        ids_per_text: width / k,
        words: tokenizer.words,
    })
}

/// A numeric table's source: each feature's mean and deviation over the training rows.
fn table_source(
    table: &Table,
    cols: &[usize],
    label: String,
    train: &[&[String]],
    outline: &Outline,
    path: &Path,
    opts: &FileOptions,
) -> Result<Source> {
    let names: Vec<String> = cols.iter().map(|&c| table.header[c].clone()).collect();
    let width: usize = outline.input.iter().product();
    let free = outline.input.is_empty();
    if !free && (width != names.len() || outline.input.len() != 1) {
        return Err(format!(
            "{}: the model takes input {:?} but the file has {} feature columns ({}); set \"input\": [{}] in the model file, or pick columns with --columns",
            path.display(),
            outline.input,
            names.len(),
            preview(&names),
            names.len()
        ).into());
    }
    if opts.unscaled {
        return Ok(Source::Table {
            label,
            features: names,
            mean: vec![0.0; cols.len()],
            std: vec![1.0; cols.len()],
        });
    }
    let n = train.len() as f64;
    let (mut mean, mut std) = (vec![], vec![]);
    for &c in cols {
        let value = |cells: &&[String]| number(&cells[c]).expect("checked cells") as f64;
        let m = train.iter().map(value).sum::<f64>() / n;
        let v = train.iter().map(|r| (value(r) - m).powi(2)).sum::<f64>() / n;
        mean.push(m as f32);
        std.push(if v > 1e-12 { v.sqrt() as f32 } else { 1.0 });
    }
    Ok(Source::Table {
        label,
        features: names,
        mean,
        std,
    })
}

/// The model's input for rows of a table (numeric cells already checked).
pub(crate) fn encode_rows(
    spec: &DataSpec,
    table: &Table,
    rows: &[&[String]],
    path: &Path,
) -> Result<Column> {
    let cols: Vec<usize> = spec
        .source
        .inputs()
        .iter()
        .map(|c| column(path, table, c))
        .collect::<Result<_>>()?;
    match &spec.source {
        Source::Table { mean, std, .. } => {
            let mut values = Vec::with_capacity(rows.len() * cols.len());
            for (i, cells) in rows.iter().enumerate() {
                for (k, &c) in cols.iter().enumerate() {
                    let v = number(&cells[c]).expect("checked cells");
                    let x = (v - mean[k]) / std[k];
                    if !x.is_finite() {
                        return Err(format!(
                            "{}: data row {}: column `{}` is {v}, which the model's standardisation (mean {}, deviation {}) takes past f32's range",
                            path.display(),
                            i + 1,
                            clip(&table.header[c]),
                            mean[k],
                            std[k]
                        ).into());
                    }
                    values.push(x);
                }
            }
            Ok(Column::f32(values, &[cols.len()]))
        }
        Source::Text {
            ids_per_text,
            words,
            ..
        } => {
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

fn image_shape(o: &Outline) -> Result<(usize, usize, usize)> {
    match o.input[..] {
        [c @ (1 | 3), h, w] if !o.takes_ids => Ok((c, h, w)),
        _ => Err(format!(
            "an image folder needs a model whose input is [channels, height, width] with 1 (grey) or 3 (RGB) channels; this one takes {:?}",
            o.input
        ).into()),
    }
}

/// Reads `files`; those that cannot be read are skipped or refuse the folder. Returns the values,
/// the indices of the files read, and how many were resized.
pub(crate) fn read_images(
    files: &[PathBuf],
    shape: (usize, usize, usize),
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<(Vec<f32>, Vec<usize>, usize)> {
    let (c, h, w) = shape;
    let (mut values, mut kept, mut resized) = (vec![], vec![], 0);
    for (i, f) in files.iter().enumerate() {
        match images::read_image(f, c, h, w) {
            Ok((v, r)) => {
                values.extend(v);
                kept.push(i);
                resized += r as usize;
            }
            Err(Error::Bad { message, .. }) => bad_file(f, on_bad, skipped, message)?,
            Err(e) => return Err(e),
        }
    }
    Ok((values, kept, resized))
}

/// The images of a labelled folder, with those outside any class folder skipped or refused.
pub(crate) fn labelled_images(
    dir: &Path,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Vec<(PathBuf, String)>> {
    let found = images::labelled_images(dir)?;
    for f in &found.unlabelled {
        bad_file(
            f,
            on_bad,
            skipped,
            "not in a class folder, so it has no label; move it into one".into(),
        )?;
    }
    Ok(found.images)
}

fn images_for_training(
    dir: &Path,
    outline: &Outline,
    opts: &FileOptions,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Found> {
    if opts.task == Some(Task::Regression) {
        return Err(Error::mismatch(
            "an image folder is labelled by class subfolders: --task regression does not apply",
        ));
    }
    let shape = image_shape(outline)?;
    let files = labelled_images(dir, on_bad, skipped)?;
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let (values, kept, resized) = read_images(&paths, shape, on_bad, skipped)?;
    let labels: Vec<&str> = kept.iter().map(|&i| files[i].1.as_str()).collect();
    let classes = class_names(labels.iter().copied());
    if classes.len() == 1 {
        return Err(format!(
            "{}: the only class folder with images is `{}`; a classifier learns to tell at least two classes apart, so add a folder per class",
            dir.display(),
            clip(&classes[0])
        ).into());
    }
    let spec = DataSpec {
        source: Source::Images {
            channels: shape.0,
            height: shape.1,
            width: shape.2,
        },
        task: Task::Classification,
        classes,
    };
    let (train_rows, val_rows) = split(kept.len(), opts, dir)?;
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
