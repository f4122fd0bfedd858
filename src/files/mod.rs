//! Models from a file over data from a file, for users who do not write Rust:
//! `kiln train --model model.json --data FILE` ([`job`], on kiln-data's [`kiln_data::prepare`]),
//! then `kiln eval` (labelled) and `kiln predict` (one output row per input row, in order, or a
//! refusal) on what it saved, the data read through the model's [`DataSpec`]
//! ([`kiln_data::read_for`]) and checked against it.

use std::path::{Path, PathBuf};

use kiln_device::params::ReduceParams;
use kiln_device::{reference, Device};
use kiln_graph::{LossKind, OptimizerConfig};
use kiln_train::{Dataset, TrainConfig};
use serde::Serialize;

use kiln_data::{loss_for, read_for, targets, where_is, Labels, OnBad, Skipped};
pub use kiln_data::{DataSpec, FileOptions, Source, Task, META_KEY};

use crate::models::{Job, ModelConfig, Saved};

/// A model file's job over data from `data`: the datasets, the loss, and the `kiln_data`
/// metadata that `eval` and `predict` read.
pub fn job(model: ModelConfig, data: &Path, seed: u64, opts: &FileOptions) -> Result<Job, String> {
    let outline = model.outline()?;
    let prepared = kiln_data::prepare(data, &outline, opts).map_err(|e| e.to_string())?;
    Ok(Job {
        name: "model".into(),
        model,
        train: prepared.train,
        val: Some(prepared.val),
        config: TrainConfig {
            epochs: 10,
            batch: 32,
            seed,
            loss: Some(prepared.loss),
            optimizer: OptimizerConfig::adam(),
            schedule: None,
            clip: None,
            report_every: 50,
            metrics: vec![],
        },
        metadata: vec![(
            META_KEY.into(),
            serde_json::to_string(&prepared.spec).expect("specs serialize"),
        )],
        data_report: Some(prepared.report),
    })
}

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
    /// The metrics the model was trained to track (`--metrics`), by name, in order (in JSON an
    /// object: `{"auc": 0.93}`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::models::in_order"
    )]
    pub tracked: Vec<(String, f32)>,
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
    )
    .map_err(|e| e.to_string())?;
    let labels: Vec<&str> = read.labels.iter().map(String::as_str).collect();
    let loss =
        loss_for(spec.task, spec.classes.len(), &saved.outline).map_err(|e| e.to_string())?;
    let set = Dataset::single(read.inputs, targets(&spec, &saved.outline, &labels));
    // The loss, its metric, and the metrics it was trained to track.
    let e = crate::models::evaluate_saved(
        (&*saved.model, &saved.params),
        (&saved.checkpoint, path),
        &set,
        loss,
    )?;
    let (l, value) = (e.loss, e.metric);
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
        tracked: e.tracked,
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
    let read = read_for(&spec, data, Labels::Ignored, OnBad::Refuse, &mut skipped)
        .map_err(|e| e.to_string())?;
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
    let loss =
        loss_for(spec.task, spec.classes.len(), &saved.outline).map_err(|e| e.to_string())?;
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
