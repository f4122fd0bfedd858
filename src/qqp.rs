//! `kiln eval qqp`, `kiln predict qqp` and `kiln export qqp`: a saved question-pair model (its
//! vocabulary and preprocessing travel in the model file's metadata) on either data format.

use std::path::{Path, PathBuf};

use kiln_device::Device;
use kiln_graph::{LossKind, Model, ParamStore};
use kiln_train::{predict, Column, Values};
use serde::Serialize;

use crate::data::qqp::{self, Format, Pair, Preprocess, Tokenizer};

/// A saved model, rebuilt, with what turns text into its inputs.
pub struct Loaded {
    /// The model.
    pub model: Box<dyn Model>,
    /// Its weights.
    pub params: ParamStore,
    /// The vocabulary it was trained with.
    pub tokenizer: Tokenizer,
    /// How its pairs become ids.
    pub preprocess: Preprocess,
    /// The file's metadata (the metrics its run tracked among them).
    pub checkpoint: kiln_graph::checkpoint::Checkpoint,
    /// Where it was read from.
    pub path: PathBuf,
}

/// Rebuilds the model at `path` on `device`.
pub fn load(device: &Device, path: &Path) -> Result<Loaded, String> {
    // Everything the metadata claims is checked before the weights are allocated.
    let read = crate::models::read_saved(path)?;
    let ck = &read.checkpoint;
    let missing = |what: &str| {
        format!(
            "{}: no {what} in the model's metadata; is it a `kiln train qqp` model?",
            path.display()
        )
    };
    let tokenizer =
        Tokenizer::from_json(ck.meta("vocabulary").ok_or_else(|| missing("vocabulary"))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    let preprocess: Preprocess = serde_json::from_str(
        ck.meta("qqp_preprocess")
            .ok_or_else(|| missing("qqp_preprocess"))?,
    )
    .map_err(|e| {
        format!(
            "{}: qqp_preprocess: {}",
            path.display(),
            crate::data::clip(&e.to_string())
        )
    })?;
    preprocess.check().map_err(|e| {
        format!(
            "{}: qqp_preprocess.{e}; the file was edited",
            path.display()
        )
    })?;
    if preprocess
        .len
        .checked_mul(2)
        .map(|w| read.outline.input == [w])
        != Some(true)
    {
        return Err(format!(
            "{}: qqp_preprocess.len {} does not match the model's input {:?} (two questions of len ids each); the file was edited",
            path.display(),
            preprocess.len,
            read.outline.input
        ));
    }
    if read
        .outline
        .vocab
        .is_some_and(|v| v < tokenizer.vocab_size())
    {
        return Err(format!(
            "{}: the vocabulary has {} ids but the model's embedding {:?} rows; the file was edited",
            path.display(),
            tokenizer.vocab_size(),
            read.outline.vocab
        ));
    }
    let saved = read.build(device)?;
    Ok(Loaded {
        model: saved.model,
        params: saved.params,
        tokenizer,
        preprocess,
        checkpoint: saved.checkpoint,
        path: path.to_path_buf(),
    })
}

impl Loaded {
    /// Duplicate probabilities of `pairs`, in batches of 256.
    pub fn predict(&self, _device: &Device, pairs: &[Pair]) -> Result<Vec<f32>, String> {
        let len = self.preprocess.len;
        let ids: Vec<u32> = pairs
            .iter()
            .flat_map(|p| self.tokenizer.encode_pair(&p.q1, &p.q2, len))
            .collect();
        let (probs, _) = predict(
            &*self.model,
            &self.params,
            &[Column::ids(ids, &[2 * len])],
            256,
        )
        .map_err(|e| e.to_string())?;
        Ok(probs)
    }
}

/// What `kiln eval qqp` reports.
#[derive(Debug, Serialize)]
pub struct EvalReport {
    /// The model file.
    pub model: PathBuf,
    /// The data file.
    pub data: PathBuf,
    /// "validation split" (the embedded data, split as in training) or "all rows".
    pub rows: String,
    /// Pairs evaluated.
    pub pairs: usize,
    /// The share classified right.
    pub accuracy: f32,
    /// The mean binary cross-entropy.
    pub loss: f32,
    /// Rows skipped.
    pub skipped_rows: usize,
    /// What loading found (rows, kept, skipped and why).
    pub skipped: String,
    /// The metrics the model's run tracked (`--metrics`), by name, in order.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::models::in_order"
    )]
    pub tracked: Vec<(String, f32)>,
}

/// Accuracy and loss of a saved model: on `data` (every usable row), or without it on the
/// embedded data's validation split, rebuilt from the seed saved with the model.
pub fn eval(
    device: &Device,
    model_path: &Path,
    data: Option<&Path>,
    limit: Option<usize>,
    strict: bool,
) -> Result<EvalReport, String> {
    if limit == Some(0) {
        return Err("--limit 0 evaluates nothing; give at least 1".into());
    }
    let m = load(device, model_path)?;
    let path = data
        .map(Path::to_path_buf)
        .unwrap_or_else(qqp::default_path);
    let (format, pairs, report) = qqp::load(&path, strict).map_err(|e| e.to_string())?;
    if format == Format::KaggleTest {
        return Err(format!(
            "{}: Kaggle's test.csv has no labels; use `kiln predict qqp --data` for a submission file",
            path.display()
        ));
    }
    let (pairs, rows) = match data {
        Some(_) => (pairs, "all rows"),
        None => {
            let (_, val) = qqp::split_rows(pairs.len(), &m.preprocess);
            (
                val.iter().map(|&i| pairs[i].clone()).collect(),
                "validation split",
            )
        }
    };
    let pairs: Vec<Pair> = pairs
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    if pairs.is_empty() {
        return Err(format!("{}: no usable pairs ({report})", path.display()));
    }
    let dataset = qqp::encode(&pairs, &m.tokenizer, m.preprocess.len);
    let e = crate::models::evaluate_saved(
        (&*m.model, &m.params),
        (&m.checkpoint, &m.path),
        &dataset,
        LossKind::BinaryCrossentropy,
    )?;
    let (loss, accuracy) = (e.loss, e.metric);
    Ok(EvalReport {
        model: model_path.to_path_buf(),
        data: path,
        rows: rows.into(),
        pairs: pairs.len(),
        accuracy,
        loss,
        skipped_rows: report.skipped(),
        skipped: report.to_string(),
        tracked: e.tracked,
    })
}

/// Writes one probability per pair of `data` to `out` as a Kaggle submission
/// ([`submission_csv`]). Refuses to overwrite an existing file unless `force`.
pub fn submission(
    device: &Device,
    model_path: &Path,
    data: &Path,
    out: &Path,
    force: bool,
) -> Result<usize, String> {
    crate::files::check_out_file(out, force)?;
    let (bytes, pairs) = submission_csv(device, model_path, data)?;
    kiln_graph::checkpoint::write_atomic(out, &bytes).map_err(|e| e.to_string())?;
    Ok(pairs)
}

/// One probability per pair of `data` as a Kaggle submission (`test_id,is_duplicate` for
/// test.csv, `id,is_duplicate` otherwise), and the number of pairs.
pub fn submission_csv(
    device: &Device,
    model_path: &Path,
    data: &Path,
) -> Result<(Vec<u8>, usize), String> {
    let m = load(device, model_path)?;
    // Every row, in order: an empty question is an empty input, labels are not needed, and a
    // row that cannot be read refuses the file (a submission must not miss an id).
    let (format, pairs, _) =
        qqp::load_for(data, qqp::Purpose::Predict).map_err(|e| e.to_string())?;
    if pairs.is_empty() {
        return Err(format!("{}: no rows to predict", data.display()));
    }
    let probs = m.predict(device, &pairs)?;
    let id_column = if format == Format::KaggleTest {
        "test_id"
    } else {
        "id"
    };
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record([id_column, "is_duplicate"])
        .map_err(|e| e.to_string())?;
    for (p, prob) in pairs.iter().zip(&probs) {
        w.write_record([p.id.as_str(), &format!("{prob:.6}")])
            .map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    Ok((bytes, pairs.len()))
}

#[derive(Serialize)]
struct Split {
    ids: Vec<Vec<u32>>,
    labels: Vec<f32>,
}

#[derive(Serialize)]
struct Export {
    source: PathBuf,
    vocab_size: usize,
    preprocess: Preprocess,
    train: Split,
    val: Split,
}

/// Writes the encoded split as JSON, so that another framework (tools/keras/train_qqp.py) trains
/// on exactly kiln's inputs.
pub fn export(data: Option<&Path>, pre: &Preprocess, out: &Path) -> Result<(), String> {
    let path = data
        .map(Path::to_path_buf)
        .unwrap_or_else(qqp::default_path);
    let p = qqp::prepare(&path, pre, false).map_err(|e| e.to_string())?;
    let split = |d: &kiln_train::Dataset| {
        let (Values::Ids(ids), Values::F32(labels)) = (&d.input().values, &d.targets.values) else {
            unreachable!("qqp inputs are ids, labels f32")
        };
        Split {
            ids: ids.chunks(2 * pre.len).map(<[u32]>::to_vec).collect(),
            labels: labels.clone(),
        }
    };
    let e = Export {
        source: path.clone(),
        vocab_size: p.tokenizer.vocab_size(),
        preprocess: pre.clone(),
        train: split(&p.train),
        val: split(&p.val),
    };
    let text = serde_json::to_string(&e).map_err(|e| e.to_string())?;
    kiln_graph::checkpoint::write_atomic(out, text.as_bytes()).map_err(|e| e.to_string())
}
