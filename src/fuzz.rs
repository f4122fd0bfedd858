//! Entry points for fuzzing the loaders of untrusted input. Each takes arbitrary bytes and must
//! return, whatever they hold, without a panic, an abort or an allocation beyond what the input
//! itself declares and the loader bounds. `tests/fuzz.rs` runs them on a bounded number of
//! generated inputs in CI (proptest); `fuzz/` runs them for as long as one likes under
//! `cargo fuzz` (see the README).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::data::{mnist, qqp};
use crate::files::{FileOptions, Task};
use crate::models::ModelConfig;

/// Writes `bytes` to a fresh file named `name` in the temporary folder, runs `f` on its path,
/// and removes it.
fn with_file(bytes: &[u8], name: &str, f: impl FnOnce(&Path)) {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "kiln-fuzz-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("a temporary file");
    f(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The QQP loaders (Quora's TSV, Kaggle's CSVs), for training, strictly, and for predictions.
pub fn qqp_file(bytes: &[u8]) {
    with_file(bytes, "pairs.tsv", |p| {
        let _ = qqp::load(p, false);
        let _ = qqp::load(p, true);
        let _ = qqp::load_for(p, qqp::Purpose::Predict);
    });
}

/// The IDX loader, on the bytes as they are and gzip-compressed.
pub fn idx_file(bytes: &[u8]) {
    with_file(bytes, "images.gz", |p| {
        let _ = mnist::read_idx(p, 2051, &[28, 28], None);
    });
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    gz.write_all(bytes).expect("in memory");
    let gz = gz.finish().expect("in memory");
    with_file(&gz, "labels.gz", |p| {
        let _ = mnist::read_idx(p, 2049, &[], None);
        let _ = mnist::read_idx(p, 2051, &[2, 2], None);
    });
}

/// A model file: parsed, and its shapes checked (nothing is allocated for its parameters).
pub fn model_json(bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(config) = ModelConfig::from_json(text) {
            let _ = config.outline();
        }
    }
}

/// A saved model or checkpoint (safetensors with kiln's metadata).
pub fn checkpoint_file(bytes: &[u8]) {
    with_file(bytes, "model.safetensors", |p| {
        let _ = kiln_graph::checkpoint::Checkpoint::load(p);
        let _ = kiln_train::load_model::<ModelConfig>(p);
    });
}

/// A data table for `kiln train --model`: read for a small numeric model and a small text
/// model, as each task.
pub fn table_file(bytes: &[u8]) {
    let numeric = ModelConfig::from_json(
        r#"{"input": [2], "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}"#,
    )
    .expect("a valid model");
    let text = ModelConfig::from_json(
        r#"{"input": [4], "layers": [{"type": "embedding", "vocab": 8, "dim": 2}, {"type": "flatten"}, {"type": "dense", "units": 1}]}"#,
    )
    .expect("a valid model");
    with_file(bytes, "table.csv", |p| {
        for model in [&numeric, &text] {
            for task in [None, Some(Task::Classification), Some(Task::Regression)] {
                let opts = FileOptions {
                    task,
                    ..FileOptions::default()
                };
                let _ = crate::files::job(model.clone(), p, 0, &opts);
            }
        }
    });
}

/// The record reader on its own, as comma- and tab-separated.
pub fn table_reader(bytes: &[u8]) {
    let _ = crate::data::table::parse(bytes, b',');
    let _ = crate::data::table::parse(bytes, b'\t');
}

/// A saved model's `kiln_data` as an edited file would carry it: the bytes become the metadata
/// of a small numeric model and of a small text model, and `eval` and `predict` run on a small
/// table through each. They must refuse or work, never panic or write NaN.
pub fn data_spec(bytes: &[u8]) {
    use std::sync::OnceLock;
    static MODELS: OnceLock<Vec<kiln_graph::checkpoint::Checkpoint>> = OnceLock::new();
    let Ok(spec) = std::str::from_utf8(bytes) else {
        return;
    };
    let models = MODELS.get_or_init(|| {
        [
            r#"{"input": [2], "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}"#,
            r#"{"input": [4], "layers": [{"type": "embedding", "vocab": 8, "dim": 2}, {"type": "flatten"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
        ]
        .iter()
        .map(|json| {
            let config = ModelConfig::from_json(json).expect("a valid model");
            let pb = kiln_graph::ParamBuilder::new(0);
            config.init(&pb).expect("builds");
            let params = pb.build(&kiln_device::Device::cpu()).expect("allocates");
            let mut metadata = std::collections::HashMap::new();
            metadata.insert(
                "model_config".to_string(),
                serde_json::to_string(&config).expect("serializes"),
            );
            kiln_graph::checkpoint::Checkpoint {
                params: params.to_host().expect("reads"),
                optimizer: None,
                metadata,
            }
        })
        .collect()
    });
    let device = kiln_device::Device::cpu();
    with_file(b"a,b,label\n1,2,x\n3,4,y\n0.5,-1,x\n", "data.csv", |data| {
        for ck in models {
            let mut ck = ck.clone();
            ck.metadata
                .insert(crate::files::META_KEY.into(), spec.to_string());
            let dir = data.parent().expect("a folder");
            let (model, out) = (dir.join("model.safetensors"), dir.join("out.csv"));
            if ck.save(&model).is_ok() {
                let _ = crate::files::eval(&device, &model, data, false);
                let _ = crate::files::predict(&device, &model, data, &out, true);
            }
        }
    });
}
