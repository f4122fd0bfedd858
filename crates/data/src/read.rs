//! New files read the way a model's [`DataSpec`] says: `kiln eval` (labelled, the classes checked
//! against the model's), `kiln predict` (labels ignored, every row used or the file refused) and a
//! resumed run (exactly the run's classes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_train::Column;

use crate::images;
use crate::prepare::{bad_row, column, encode_rows, labelled_images, read_images, read_table};
use crate::spec::{DataSpec, Source, Task};
use crate::table::Cell;
use crate::{clip, Error, OnBad, Result, Skipped};

/// Which labels a file must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// None are read (predict).
    Ignored,
    /// Every label is one of the model's classes (eval).
    Known,
    /// The classes are exactly the model's (a resumed run).
    Exact,
}

/// Inputs (and labels, when wanted) of a file or folder read the way a spec says.
pub struct Read {
    /// The model's input for every row read.
    pub inputs: Column,
    /// One name per row: its line number, or the image path.
    pub names: Vec<String>,
    /// Each row's label (empty when labels are ignored).
    pub labels: Vec<String>,
    /// How the file was read, for the log ("; read as semicolon-separated ...").
    pub note: String,
}

/// Reads `data` the way `spec` says: its columns by name (or its images at the spec's shape),
/// rows that cannot be used skipped or refused by `on_bad`, and the labels checked as `labels`
/// says.
pub fn read_for(
    spec: &DataSpec,
    data: &Path,
    labels: Labels,
    on_bad: OnBad,
    skipped: &mut Skipped,
) -> Result<Read> {
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
            .map_err(|e| Error::mismatch(format!("{}: {e}", data.display())))?;
    }
    Ok(found)
}

/// A row's name in a message: an image's path, or "line N" for a table's line number.
pub fn where_is(spec: &DataSpec, name: &str) -> String {
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
) -> Result<Read> {
    let Source::Images {
        channels,
        height,
        width,
    } = spec.source
    else {
        unreachable!("called for images")
    };
    if !data.is_dir() {
        return Err(format!("{}: this model reads an image folder", data.display()).into());
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
        return Err(Error::bad(
            data,
            format!("no image could be read ({skipped})"),
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
) -> Result<Read> {
    if data.is_dir() {
        return Err(format!(
            "{}: this model reads a CSV file, not a folder",
            data.display()
        )
        .into());
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
        ).into());
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
        .collect::<Result<_>>()?;
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
        return Err(Error::bad(data, format!("no usable rows ({skipped})")));
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
