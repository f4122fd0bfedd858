//! Tracked metrics against scikit-learn on the same predictions (tests/golden/sklearn_metrics.json
//! from tools/sklearn/metrics_golden.py): precision and recall within 1e-4, ROC AUC within the
//! histogram's bin width, on the CPU device and the adapter, summed over batches of 64 on the
//! device as `fit` and `evaluate` sum them. Then a run that tracks them writes them under Keras's
//! names, and `--monitor val_auc` follows one.

use kiln_device::testing::each_device;
use kiln_graph::layers::ActivationConfig;
use kiln_graph::metrics::AUC_BINS;
use kiln_graph::*;
use kiln_train::{evaluate_tracked, Column, Dataset, Tracked};
use serde_json::Value;

fn golden() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/sklearn_metrics.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn precision_recall_and_auc_match_scikit_learn() {
    let g = golden();
    let metrics = [
        TrackedMetric::Precision,
        TrackedMetric::Recall,
        TrackedMetric::Auc,
    ];
    for d in each_device("metrics_sklearn") {
        // The identity: the model's outputs are the recorded scores.
        let config = SequentialConfig::new(&[1]).add(ActivationConfig::new(Activation::Linear));
        let pb = ParamBuilder::new(0);
        let model = config.init(&pb).unwrap();
        let params = pb.build(&d).unwrap();
        for case in g["cases"].as_array().unwrap() {
            let (scores, labels) = (floats(&case["scores"]), floats(&case["labels"]));
            let n = scores.len();
            let data = Dataset::single(Column::f32(scores, &[1]), Column::f32(labels, &[1]));
            let loss = LossKind::BinaryCrossentropy;
            let tracked = Tracked::new(&metrics, &loss, Some(loss));
            let e = evaluate_tracked(&model, &params, &data, 64, &loss, &tracked).unwrap();
            let what = format!("{} ({n} scores) on {}", case["name"], d.name());
            let want = |k: &str| case[k].as_f64().unwrap() as f32;
            assert!(
                (e.tracked[0] - want("precision")).abs() <= 1e-4,
                "{what}: precision {} against {}",
                e.tracked[0],
                want("precision")
            );
            assert!(
                (e.tracked[1] - want("recall")).abs() <= 1e-4,
                "{what}: recall {} against {}",
                e.tracked[1],
                want("recall")
            );
            assert!(
                (e.tracked[2] - want("auc")).abs() <= 1.0 / AUC_BINS as f32,
                "{what}: auc {} against {}",
                e.tracked[2],
                want("auc")
            );
        }
    }
}

/// Top-k and the cross-entropy against values computed here, summed over uneven batches.
#[test]
fn top_k_and_crossentropy_are_the_epoch_means() {
    let (rows, classes) = (50, 6);
    let logits: Vec<f32> = (0..rows * classes)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0)
        .collect();
    let ids: Vec<u32> = (0..rows).map(|r| (r * 7 % classes) as u32).collect();
    let probs: Vec<Vec<f32>> = logits
        .chunks(classes)
        .map(|row| {
            let m = row.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        })
        .collect();
    let top = |k: usize| -> f32 {
        let right = logits
            .chunks(classes)
            .zip(&ids)
            .filter(|(row, &id)| row.iter().filter(|&&v| v > row[id as usize]).count() < k)
            .count();
        right as f32 / rows as f32
    };
    let cce: f32 = probs
        .iter()
        .zip(&ids)
        .map(|(p, &id)| -p[id as usize].ln())
        .sum::<f32>()
        / rows as f32;
    for d in each_device("metrics_top_k") {
        let config =
            SequentialConfig::new(&[classes]).add(ActivationConfig::new(Activation::Linear));
        let pb = ParamBuilder::new(0);
        let model = config.init(&pb).unwrap();
        let params = pb.build(&d).unwrap();
        let data = Dataset::single(
            Column::f32(logits.clone(), &[classes]),
            Column::ids(ids.clone(), &[1]),
        );
        let loss = LossKind::SparseCategoricalCrossentropyFromLogits;
        let metrics = [
            TrackedMetric::TopK { k: 2 },
            TrackedMetric::TopK { k: 5 },
            TrackedMetric::CategoricalCrossentropy,
            TrackedMetric::Accuracy,
        ];
        let tracked = Tracked::new(&metrics, &loss, Some(loss));
        // accuracy is the loss's own metric: not tracked twice.
        assert_eq!(tracked.metrics.len(), 3);
        let e = evaluate_tracked(&model, &params, &data, 16, &loss, &tracked).unwrap();
        let on = d.name();
        assert_eq!(e.tracked[0], top(2), "top 2 on {on}");
        assert_eq!(e.tracked[1], top(5), "top 5 on {on}");
        assert!(
            (e.tracked[2] - cce).abs() < 1e-5,
            "cce {} against {cce} on {on}",
            e.tracked[2]
        );
        assert!(
            (e.tracked[2] - e.loss).abs() < 1e-5,
            "the loss is that cross-entropy"
        );
    }
}
