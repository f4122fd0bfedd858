//! `kiln eval mnist`: a saved model on the test set: accuracy, loss, a confusion matrix, and
//! pictures (a grid of test digits with predicted and true labels; the confusion matrix).

use std::path::{Path, PathBuf};

use kiln_device::Device;
use kiln_graph::{LossKind, Tape};
use kiln_train::Values;
use serde::Serialize;

use crate::{data, pictures};

/// What `kiln eval mnist` reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The model file.
    pub model: PathBuf,
    /// Test images evaluated.
    pub samples: usize,
    /// The share classified right.
    pub accuracy: f32,
    /// The mean loss.
    pub loss: f32,
    /// `confusion[true][predicted]`
    pub confusion: [[usize; 10]; 10],
    /// The metrics the model's run tracked (`--metrics`), by name, in order.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::models::in_order"
    )]
    pub tracked: Vec<(String, f32)>,
}

/// Evaluates the model at `model_path` on the MNIST test set in `data_dir`; draws pictures into
/// `pictures_dir` when given.
pub fn mnist(
    device: &Device,
    model_path: &Path,
    data_dir: &Path,
    pictures_dir: Option<&Path>,
    limit: Option<usize>,
) -> Result<Report, String> {
    let saved = crate::models::load_saved(device, model_path)?;
    if saved.outline.input != [1, 28, 28] || saved.outline.outputs != 10 {
        return Err(format!(
            "{}: takes {:?} and gives {} values; `kiln eval mnist` needs a model of 28x28 digits into 10 classes",
            model_path.display(),
            saved.outline.input,
            saved.outline.outputs
        ));
    }
    let (model, params, checkpoint) = (saved.model, saved.params, saved.checkpoint);
    let test = data::mnist::load_test(data_dir)
        .map_err(|e| e.to_string())?
        .first(limit);
    let loss = LossKind::CategoricalCrossentropyFromLogits;
    let e =
        crate::models::evaluate_saved((&*model, &params), (&checkpoint, model_path), &test, loss)?;
    let (avg_loss, accuracy) = (e.loss, e.metric);

    // Predictions, batch by batch: one argmax readback per batch.
    let mut predicted = Vec::with_capacity(test.len());
    for start in (0..test.len()).step_by(256) {
        let idx: Vec<usize> = (start..(start + 256).min(test.len())).collect();
        let tape = Tape::inference(device);
        let x = tape.constant(
            test.input()
                .select(&idx)
                .upload(device)
                .map_err(|e| e.to_string())?,
        );
        let logits = model
            .forward(&tape, &params, &[x])
            .map_err(|e| e.to_string())?;
        let arg = device
            .argmax(logits.value(), 1)
            .map_err(|e| e.to_string())?;
        predicted.extend(
            device
                .to_u32(&arg)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|v| v as usize),
        );
    }
    let Values::F32(targets) = &test.targets.values else {
        unreachable!("MNIST targets are one-hot f32")
    };
    let truth: Vec<usize> = targets
        .chunks(10)
        .map(|r| r.iter().position(|&v| v == 1.0).unwrap_or(0))
        .collect();
    let mut confusion = [[0usize; 10]; 10];
    for (&t, &p) in truth.iter().zip(&predicted) {
        confusion[t][p] += 1;
    }
    if let Some(dir) = pictures_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let Values::F32(pixels) = &test.input().values else {
            unreachable!("MNIST inputs are f32")
        };
        pictures::digit_grid(
            &dir.join("test_digits.png"),
            pixels,
            &predicted,
            &truth,
            100.min(predicted.len()),
        )?;
        let title = format!("MNIST test: accuracy {:.2}%", 100.0 * accuracy);
        pictures::confusion_matrix(&dir.join("confusion.png"), &confusion, &title)?;
    }
    Ok(Report {
        model: model_path.to_path_buf(),
        samples: test.len(),
        accuracy,
        loss: avg_loss,
        confusion,
        tracked: e.tracked,
    })
}
