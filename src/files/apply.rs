//! A saved model of `kiln train --model --data` applied to new data: `kiln eval` (labelled) and
//! `kiln predict` (one output row per input row), the data read through the model's
//! [`DataSpec`] and checked against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_device::params::ReduceParams;
use kiln_device::{reference, Device};
use kiln_graph::LossKind;
use kiln_train::{Column, Dataset};
use serde::Serialize;

use super::{
    bad_row, column, encode_rows, images, labelled_images, loss_for, read_images, read_table,
    targets, DataSpec, OnBad, Skipped, Source, Task, META_KEY,
};
use crate::data::clip;
use crate::data::table::Cell;
use crate::models::Saved;

/// Loads a model saved by `kiln train --model`, and the data spec saved with it: the spec is
/// checked against the model's config before any weight is allocated or data read.
pub fn load(device: &Device, path: &Path) -> Result<(Saved, DataSpec), String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let read = crate::models::read_saved(path)?;
    let meta = read.checkpoint.meta(META_KEY).ok_or_else(|| {
        at(format!(
            "no `{META_KEY}` metadata: it was not trained from a data file (eval and predict of the built-in jobs name them: `kiln eval mnist`, `kiln predict qqp`)"
        ))
    })?;
    let spec = DataSpec::from_meta(meta, &read.outline).map_err(at)?;
    loss_for(spec.task, spec.classes.len(), &read.outline)
        .map_err(|e| at(format!("{META_KEY}: {e}")))?;
    Ok((read.build(device)?, spec))
}

/// Which labels a file must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Labels {
    /// None are read (predict).
    Ignored,
    /// Every label is one of the model's classes (eval).
    Known,
    /// The classes are exactly the model's (a resumed run).
    Exact,
}

/// Inputs (and labels, when wanted) of a file or folder read the way `spec` says.
pub(super) struct Read {
    pub(super) inputs: Column,
    /// One name per row: its line number, or the image path.
    pub(super) names: Vec<String>,
    pub(super) labels: Vec<String>,
    /// How the file was read, for the log ("; read as semicolon-separated ...").
    pub(super) note: String,
}

pub(super) fn read_for(
    spec: &DataSpec,
    data: &Path,
    labels: Labels,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Read, String> {
    let found = if let Source::Images { .. } = spec.source {
        read_image_folder(spec, data, labels, on_bad, skipped)?
    } else {
        read_table_for(spec, data, labels, on_bad, skipped)?
    };
    if labels != Labels::Ignored {
        let mut classes = BTreeMap::new();
        for (class, name) in found.labels.iter().zip(&found.names) {
            classes
                .entry(class.clone())
                .or_insert_with(|| where_is(spec, name));
        }
        spec.check_classes(&classes, labels == Labels::Exact)
            .map_err(|e| format!("{}: {e}", data.display()))?;
    }
    Ok(found)
}

/// A row's name in a message: an image's path, or "line N" for a table's line number.
fn where_is(spec: &DataSpec, name: &str) -> String {
    match spec.source {
        Source::Images { .. } => name.to_string(),
        _ => format!("line {name}"),
    }
}

fn read_image_folder(
    spec: &DataSpec,
    data: &Path,
    labels: Labels,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Read, String> {
    let Source::Images {
        channels,
        height,
        width,
    } = spec.source
    else {
        unreachable!("called for images")
    };
    if !data.is_dir() {
        return Err(format!(
            "{}: this model reads an image folder",
            data.display()
        ));
    }
    let files: Vec<(PathBuf, String)> = if labels == Labels::Ignored {
        images::all_images(data)?
            .into_iter()
            .map(|p| (p, String::new()))
            .collect()
    } else {
        labelled_images(data, on_bad, skipped)?
    };
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let (values, kept, _) = read_images(&paths, (channels, height, width), on_bad, skipped)?;
    if kept.is_empty() {
        return Err(format!(
            "{}: no image could be read ({skipped})",
            data.display()
        ));
    }
    Ok(Read {
        inputs: Column::f32(values, &[channels, height, width]),
        names: kept
            .iter()
            .map(|&i| files[i].0.display().to_string())
            .collect(),
        labels: kept.iter().map(|&i| files[i].1.clone()).collect(),
        note: String::new(),
    })
}

fn read_table_for(
    spec: &DataSpec,
    data: &Path,
    labels: Labels,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Read, String> {
    if data.is_dir() {
        return Err(format!(
            "{}: this model reads a CSV file, not a folder",
            data.display()
        ));
    }
    let table = read_table(data, on_bad, skipped)?;
    // The model's columns by name, wherever they are in this file.
    let missing: Vec<&str> = spec
        .source
        .inputs()
        .iter()
        .map(String::as_str)
        .filter(|c| table.column(c).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{}: the model reads column{} {} (by name), which this file lacks; its columns are {}. Rename the file's columns to the model's",
            data.display(),
            if missing.len() > 1 { "s" } else { "" },
            clip(&missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
            clip(&table.header.join(", "))
        ));
    }
    let label_col = match labels {
        Labels::Ignored => None,
        _ => Some(column(
            data,
            &table,
            spec.source.label().expect("tables have labels"),
        )?),
    };
    let input_cols: Vec<usize> = spec
        .source
        .inputs()
        .iter()
        .map(|c| column(data, &table, c))
        .collect::<Result<_, _>>()?;
    let numeric = matches!(spec.source, Source::Table { .. });
    let (mut names, mut found, mut cells) = (vec![], vec![], vec![]);
    for row in &table.rows {
        let line = row.lines.to_string();
        if let Some(l) = label_col {
            let label = &row.cells[l];
            let problem = match spec.task {
                _ if label.trim().is_empty() => Some("empty label".to_string()),
                Task::Classification => None,
                Task::Regression => Cell::problem(label, "label"),
            };
            if let Some(why) = problem {
                bad_row(data, on_bad, skipped, format!("{line}: {why}"))?;
                continue;
            }
        }
        if numeric {
            let problem = input_cols
                .iter()
                .find_map(|&c| Cell::problem(&row.cells[c], &table.header[c]));
            if let Some(why) = problem {
                bad_row(data, on_bad, skipped, format!("{line}: {why}"))?;
                continue;
            }
        }
        names.push(row.lines.first.to_string()); // predict's `line` column
        found.push(label_col.map_or_else(String::new, |l| row.cells[l].trim().to_string()));
        cells.push(row.cells.as_slice());
    }
    if cells.is_empty() {
        return Err(format!("{}: no usable rows ({skipped})", data.display()));
    }
    Ok(Read {
        inputs: encode_rows(spec, &table, &cells, data)?,
        names,
        labels: found,
        note: table
            .delimiter_note
            .map_or(String::new(), |n| format!("; read as {n}")),
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
    /// Rows skipped (empty labels, unreadable values or images).
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
    let read = read_for(
        &spec,
        data,
        Labels::Known,
        OnBad::strict(strict),
        &mut skipped,
    )?;
    let labels: Vec<&str> = read.labels.iter().map(String::as_str).collect();
    let loss = loss_for(spec.task, spec.classes.len(), &saved.outline)?;
    let set = Dataset::single(read.inputs, targets(&spec, &saved.outline, &labels));
    let (l, value) = kiln_train::evaluate(&*saved.model, &saved.params, &set, 256, &loss)
        .map_err(|e| e.to_string())?;
    let value = value.expect("a built-in loss reports its metric");
    if !l.is_finite() || !value.is_finite() {
        return Err(format!(
            "{}: the loss on {} is {l} and the {} {value}, not finite: the model's outputs overflow on this data (was the model or its {META_KEY} edited?)",
            path.display(),
            data.display(),
            kiln_graph::Objective::metric_name(&loss).unwrap_or("metric")
        ));
    }
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

/// Refuses an output path (`--out`, `--json`, `--trace`) that exists and is not a regular file
/// (a folder, a device such as /dev/null, a link), or a file that exists unless `force`.
pub fn check_out_file(out: &Path, force: bool) -> Result<(), String> {
    if let Some(kind) = kiln_graph::checkpoint::special_file_kind(out) {
        return Err(format!(
            "{} is {kind}; kiln writes a file by replacing it, which would replace {kind}: name a regular file to write",
            out.display()
        ));
    }
    if out.exists() && !force {
        return Err(format!(
            "{} exists; pass --force to overwrite it, or name another file",
            out.display()
        ));
    }
    Ok(())
}

/// Writes predictions for every row (or image) of `data` to `out` as CSV
/// ([`predictions`]), refusing an `out` that exists (unless `force`) or is not a regular file.
/// Returns the number of rows.
pub fn predict(
    device: &Device,
    path: &Path,
    data: &Path,
    out: &Path,
    force: bool,
) -> Result<usize, String> {
    check_out_file(out, force)?;
    let (bytes, rows) = predictions(device, path, data)?;
    kiln_graph::checkpoint::write_atomic(out, &bytes).map_err(|e| e.to_string())?;
    Ok(rows)
}

/// Predictions for every row (or image) of `data` as CSV: `line` (the input's line number) or
/// `file` (the image path), `prediction` (the class name or the number) and, for
/// classification, one probability column per class; and the number of rows. One row per input
/// row, in order, or an error naming the row that cannot be read.
pub fn predictions(device: &Device, path: &Path, data: &Path) -> Result<(Vec<u8>, usize), String> {
    let (saved, spec) = load(device, path)?;
    let mut skipped = Skipped::default();
    let read = read_for(&spec, data, Labels::Ignored, OnBad::Refuse, &mut skipped)?;
    let (values, shape) = kiln_train::predict(&*saved.model, &saved.params, &[read.inputs], 256)
        .map_err(|e| e.to_string())?;
    let width: usize = shape[1..].iter().product();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let at = where_is(&spec, &read.names[i / width.max(1)]);
        return Err(format!(
            "{}: the model's output for {at} is {}, not finite: its outputs overflow on this data (was the model or its {META_KEY} edited?); nothing was written",
            data.display(),
            values[i]
        ));
    }
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
    let probs = probabilities(&loss, &values, width);
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
    Ok((bytes, read.names.len()))
}

/// Each row's class probabilities (none for regression), from the output the loss reads.
fn probabilities(loss: &LossKind, values: &[f32], width: usize) -> Vec<f32> {
    match loss {
        LossKind::BinaryCrossentropy => values.iter().flat_map(|&p| [1.0 - p, p]).collect(),
        LossKind::BinaryCrossentropyFromLogits => values
            .iter()
            .map(|&x| reference::sigmoid(x))
            .flat_map(|p| [1.0 - p, p])
            .collect(),
        LossKind::SparseCategoricalCrossentropy => values.to_vec(),
        LossKind::SparseCategoricalCrossentropyFromLogits => {
            let mut out = vec![0.0; values.len()];
            let rows = values.len() / width;
            reference::softmax(
                &ReduceParams::for_axis(&[rows, width], 1),
                false,
                values,
                &mut out,
            );
            out
        }
        _ => vec![],
    }
}
