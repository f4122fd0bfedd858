//! [`DataSpec`]: how a model trained on a data file (`kiln train --model --data`, [`crate::prepare`]) reads its data, saved with it
//! as the metadata `kiln_data`. It is the model's data identity: `--resume`, `eval` and `predict`
//! read new files through it (columns by name, the label, the classes, the image shape) and refuse
//! one that does not match, naming the difference. A spec read from a file is checked like a layer
//! config ([`DataSpec::check`]) before anything is read or allocated.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{clip, Outline};

/// What a model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// One of a set of classes (the label column's distinct values, or the image subfolders).
    Classification,
    /// A number.
    Regression,
}

impl Task {
    /// `classification` or `regression`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

/// Where the inputs come from and how they become the model's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
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

impl Source {
    /// The label column of a table.
    pub fn label(&self) -> Option<&str> {
        match self {
            Source::Table { label, .. } | Source::Text { label, .. } => Some(label),
            Source::Images { .. } => None,
        }
    }

    /// The input columns of a table, in the model's order (none for images).
    pub fn inputs(&self) -> &[String] {
        match self {
            Source::Table { features, .. } => features,
            Source::Text { texts, .. } => texts,
            Source::Images { .. } => &[],
        }
    }
}

/// Saved with the model (metadata `kiln_data`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The most words a saved vocabulary may hold, and the most pixels an image side may have: far
/// past any real model, short of an allocation an edited file could abuse.
const MAX_WORDS: usize = 10_000_000;
const MAX_SIDE: usize = 16_384;

/// The first name `names` holds twice.
fn repeated(names: &[String]) -> Option<&str> {
    let mut seen = BTreeSet::new();
    names
        .iter()
        .find(|n| !seen.insert(n.as_str()))
        .map(String::as_str)
}

fn names_check(what: &str, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Err(format!("lists no {what}"));
    }
    if let Some(n) = names.iter().find(|n| n.trim().is_empty()) {
        return Err(format!("has an empty name among its {what} (`{n}`)"));
    }
    if let Some(n) = repeated(names) {
        return Err(format!("names {what} `{}` twice", clip(n)));
    }
    Ok(())
}

/// A numeric table's spec: unique features without the label, a finite mean and a positive,
/// normal deviation for each, as many as the model's input.
fn check_table(
    label: &str,
    features: &[String],
    mean: &[f32],
    std: &[f32],
    o: &Outline,
) -> Result<(), String> {
    names_check("feature columns", features)?;
    if features.iter().any(|f| f == label) {
        return Err(format!("lists its label `{}` as a feature", clip(label)));
    }
    let n = features.len();
    if mean.len() != n || std.len() != n {
        return Err(format!(
            "has {n} features but {} means and {} deviations; each feature needs one of each",
            mean.len(),
            std.len()
        ));
    }
    if let Some((f, m)) = features.iter().zip(mean).find(|(_, m)| !m.is_finite()) {
        return Err(format!(
            "gives feature `{}` the mean {m}, not a finite number",
            clip(f)
        ));
    }
    if let Some((f, s)) = features
        .iter()
        .zip(std)
        .find(|(_, s)| !(s.is_finite() && **s >= f32::MIN_POSITIVE))
    {
        return Err(format!(
            "gives feature `{}` the deviation {s}; a deviation is a finite number of at least {:e}",
            clip(f),
            f32::MIN_POSITIVE
        ));
    }
    if o.takes_ids || o.input != [n] {
        return Err(format!(
            "reads {n} numeric features, but the model takes {} of shape {:?}",
            if o.takes_ids { "token ids" } else { "values" },
            o.input
        ));
    }
    Ok(())
}

/// A text table's spec: unique text columns without the label, their ids filling the model's
/// input, a vocabulary of unique words that fits the embedding.
fn check_text(
    label: &str,
    texts: &[String],
    ids_per_text: usize,
    words: &[String],
    o: &Outline,
) -> Result<(), String> {
    names_check("text columns", texts)?;
    if texts.iter().any(|t| t == label) {
        return Err(format!(
            "lists its label `{}` as a text column",
            clip(label)
        ));
    }
    let width: usize = o.input.iter().product();
    if !o.takes_ids || texts.len().checked_mul(ids_per_text) != Some(width) {
        return Err(format!(
            "reads {} text columns of {ids_per_text} ids, but the model takes {} of shape {:?}",
            texts.len(),
            if o.takes_ids { "ids" } else { "values" },
            o.input
        ));
    }
    if words.len() > MAX_WORDS {
        return Err(format!(
            "holds {} words; the most is {MAX_WORDS}",
            words.len()
        ));
    }
    if let Some(v) = o.vocab.filter(|&v| words.len() + 2 > v) {
        return Err(format!(
            "holds {} words (ids up to {}), more than the embedding's {v} rows",
            words.len(),
            words.len() + 1
        ));
    }
    if let Some(w) = repeated(words) {
        return Err(format!("holds the word `{}` twice", clip(w)));
    }
    Ok(())
}

/// An image folder's spec: 1 or 3 channels, sides in range, the model's input shape.
fn check_images(shape: [usize; 3], o: &Outline) -> Result<(), String> {
    let [channels, height, width] = shape;
    let side = 1..=MAX_SIDE;
    if ![1, 3].contains(&channels) || !side.contains(&height) || !side.contains(&width) {
        return Err(format!(
            "reads images of {channels} channels, {height}x{width}: channels are 1 or 3, sides 1 to {MAX_SIDE}"
        ));
    }
    if o.takes_ids || o.input != shape {
        return Err(format!(
            "reads images as {shape:?}, but the model takes {:?}",
            o.input
        ));
    }
    Ok(())
}

impl DataSpec {
    /// Reads the spec saved with a model, checked against the model's outline.
    pub fn from_meta(text: &str, outline: &Outline) -> Result<DataSpec, String> {
        let spec: DataSpec = serde_json::from_str(text)
            .map_err(|e| format!("{META_KEY}: {}", clip(&e.to_string())))?;
        spec.check(outline)
            .map_err(|e| format!("{META_KEY} {e} (was the file edited? retrain, or restore it)"))?;
        Ok(spec)
    }

    /// Checks what a saved spec claims before it is used, as a layer config is checked: lengths
    /// that match the features, finite values, deviations that are positive and not denormal,
    /// unique non-empty names and classes, and inputs and outputs that fit the model.
    pub fn check(&self, o: &Outline) -> Result<(), String> {
        match &self.source {
            Source::Table {
                label,
                features,
                mean,
                std,
            } => check_table(label, features, mean, std, o)?,
            Source::Text {
                label,
                texts,
                ids_per_text,
                words,
            } => check_text(label, texts, *ids_per_text, words, o)?,
            Source::Images {
                channels,
                height,
                width,
            } => check_images([*channels, *height, *width], o)?,
        }
        match self.task {
            Task::Classification => {
                names_check("classes", &self.classes)?;
                if self.classes.len() < 2 {
                    return Err("has one class; a classifier tells at least two apart".into());
                }
            }
            Task::Regression if !self.classes.is_empty() => {
                return Err("is a regression with classes".into());
            }
            Task::Regression => {}
        }
        Ok(())
    }

    /// Refuses options of a resumed run that differ from how the run reads its data.
    pub fn check_options(
        &self,
        task: Option<Task>,
        label: Option<&str>,
        columns: Option<&[String]>,
    ) -> Result<(), String> {
        if let Some(t) = task.filter(|&t| t != self.task) {
            return Err(format!(
                "--task {}: the run is a {}",
                t.name(),
                self.task.name()
            ));
        }
        if let Some(l) = label.filter(|&l| Some(l) != self.source.label()) {
            return Err(format!(
                "--label {}: the run's label column is `{}`",
                clip(l),
                self.source.label().unwrap_or("(none: an image folder)")
            ));
        }
        if let Some(c) = columns.filter(|&c| c != self.source.inputs()) {
            return Err(format!(
                "--columns {}: the run reads {}",
                clip(&c.join(",")),
                clip(&self.source.inputs().join(","))
            ));
        }
        Ok(())
    }

    /// Refuses a file whose classes are not the run's (`exact`: the same set, for a resumed
    /// run) or not among them (evaluation), naming the difference. `found` maps each class the
    /// file holds to where it first appears ("line 3", an image's path).
    pub fn check_classes(
        &self,
        found: &BTreeMap<String, String>,
        exact: bool,
    ) -> Result<(), String> {
        if self.task != Task::Classification {
            return Ok(());
        }
        let known: BTreeSet<&str> = self.classes.iter().map(String::as_str).collect();
        let unknown: Vec<String> = found
            .iter()
            .filter(|(c, _)| !known.contains(c.as_str()))
            .map(|(c, at)| format!("`{c}` ({at})"))
            .collect();
        let quoted = |v: &mut dyn Iterator<Item = &str>| {
            clip(&v.map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))
        };
        if !unknown.is_empty() {
            return Err(format!(
                "holds classes the model does not know: {}; the model's classes are {}",
                clip(&unknown.join(", ")),
                quoted(&mut known.iter().copied())
            ));
        }
        let mut missing = known
            .iter()
            .copied()
            .filter(|c| !found.contains_key(*c))
            .peekable();
        if exact && missing.peek().is_some() {
            return Err(format!(
                "lacks classes the run was trained on: {}; resume on data with the same classes, or start a new run",
                quoted(&mut missing)
            ));
        }
        Ok(())
    }
}
