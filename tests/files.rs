//! Models from a file over data from a file, through the binary as a user runs it: `kiln model`,
//! `kiln train --model M --data F` on a numeric table (classification and regression), a text
//! table and an image folder, each learning to a stated level; `kiln eval` and `kiln predict`
//! (one output row per input row); model files and flags that are refused with a clear message.

mod common;

use std::fmt::Write as _;
use std::path::Path;

use rand::{rngs::StdRng, RngExt, SeedableRng};

use common::{fails as refused, ok, p, write};

/// `kiln eval --json`'s metric.
fn eval_metric(model: &Path, data: &Path) -> (String, f64, usize) {
    let out = ok(&["eval", "--model", p(model), "--data", p(data), "--json"]);
    let json = &out[out.find('{').unwrap()..out.rfind('}').unwrap() + 1];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (
        v["metric"].as_str().unwrap().to_string(),
        v["value"].as_f64().unwrap(),
        v["rows"].as_u64().unwrap() as usize,
    )
}

#[test]
fn a_numeric_table_trains_a_classifier_and_a_regressor_from_model_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = StdRng::seed_from_u64(7);
    // Three Gaussian blobs with text labels.
    let mut blobs = String::from("x1,x2,x3,species\n");
    let centers = [
        ("setosa", [0.0, 0.0, 5.0]),
        ("versicolor", [3.0, 3.0, 5.0]),
        ("virginica", [0.0, 3.0, 9.0]),
    ];
    for i in 0..240 {
        let (name, c) = centers[i % 3];
        let x: Vec<String> = c
            .iter()
            .map(|v| format!("{:.3}", v + rng.random_range(-1.0..1.0)))
            .collect();
        writeln!(blobs, "{},{name}", x.join(",")).unwrap();
    }
    write(&d.join("blobs.csv"), &blobs);
    write(
        &d.join("mlp.json"),
        r#"{"input": [3], "layers": [{"type": "dense", "units": 16, "activation": "relu"},
            {"type": "layer_normalization"},
            {"type": "dense", "units": 3, "activation": "softmax"}]}"#,
    );
    let run = d.join("cls");
    let log = ok(&[
        "train",
        "--model",
        p(&d.join("mlp.json")),
        "--data",
        p(&d.join("blobs.csv")),
        "--out",
        p(&run),
        "--epochs",
        "15",
        "--quiet",
    ]);
    assert!(
        log.contains("classification into 3 classes (setosa, versicolor, virginica)"),
        "{log}"
    );
    assert!(log.contains("inferred"), "{log}");
    let (metric, acc, rows) = eval_metric(&run.join("model.safetensors"), &d.join("blobs.csv"));
    assert_eq!((metric.as_str(), rows), ("accuracy", 240));
    assert!(acc >= 0.95, "blob accuracy {acc}");

    // Predict: one row per input row, in order, with the class names; labels not needed.
    let unlabelled: String = blobs
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    write(&d.join("new.csv"), &unlabelled);
    let preds = d.join("preds.csv");
    ok(&[
        "predict",
        "--model",
        p(&run.join("model.safetensors")),
        "--data",
        p(&d.join("new.csv")),
        "--out",
        p(&preds),
    ]);
    let text = std::fs::read_to_string(&preds).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "line,prediction,p_setosa,p_versicolor,p_virginica"
    );
    assert_eq!(lines.len(), 241);
    let right = lines[1..]
        .iter()
        .zip(blobs.lines().skip(1))
        .filter(|(pred, truth)| pred.split(',').nth(1) == truth.rsplit(',').next())
        .count();
    assert!(right >= 228, "{right} of 240 predictions right");
    // predict refuses (never skips) a row it cannot read, naming it; and will not overwrite.
    write(&d.join("holey.csv"), "x1,x2,x3\n1,2,3\n1,,3\n");
    let e = refused(&[
        "predict",
        "--model",
        p(&run.join("model.safetensors")),
        "--data",
        p(&d.join("holey.csv")),
        "--out",
        p(&d.join("h.csv")),
    ]);
    assert!(e.contains("line 3") && e.contains("x2"), "{e}");
    let e = refused(&[
        "predict",
        "--model",
        p(&run.join("model.safetensors")),
        "--data",
        p(&d.join("new.csv")),
        "--out",
        p(&preds),
    ]);
    assert!(e.contains("--force"), "{e}");
    // eval refuses a file whose labels hold a class the model does not know, naming it and
    // where it first appears, with or without --strict; an empty label is a row it skips.
    write(
        &d.join("odd.csv"),
        "x1,x2,x3,species\n0,0,5,setosa\n3,3,5,rose\n",
    );
    let (model, odd) = (run.join("model.safetensors"), d.join("odd.csv"));
    for strict in [false, true] {
        let mut args = vec!["eval", "--model", p(&model), "--data", p(&odd)];
        if strict {
            args.push("--strict");
        }
        let e = refused(&args);
        assert!(
            e.contains("`rose` (line 3)") && e.contains("does not know") && e.contains("setosa"),
            "{e}"
        );
    }
    write(
        &d.join("holey_label.csv"),
        "x1,x2,x3,species\n0,0,5,setosa\n0,3,9,\n",
    );
    let out = ok(&[
        "eval",
        "--model",
        p(&run.join("model.safetensors")),
        "--data",
        p(&d.join("holey_label.csv")),
    ]);
    assert!(
        out.contains("1 rows of")
            && out.contains("skipped 1 rows")
            && out.contains("line 3: empty label"),
        "{out}"
    );

    // Regression: y = 2a - 0.3b, MSE, reported as mean absolute error.
    let mut reg = String::from("a,b,target\n");
    for _ in 0..400 {
        let (a, b): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(0.0..10.0));
        writeln!(reg, "{a:.4},{b:.4},{:.4}", 2.0 * a - 0.3 * b).unwrap();
    }
    write(&d.join("reg.csv"), &reg);
    write(
        &d.join("reg.json"),
        r#"{"input": [2], "layers": [{"type": "dense", "units": 16, "activation": "tanh"}, {"type": "dense", "units": 1}]}"#,
    );
    let run = d.join("reg");
    let log = ok(&[
        "train",
        "--model",
        p(&d.join("reg.json")),
        "--data",
        p(&d.join("reg.csv")),
        "--out",
        p(&run),
        "--epochs",
        "30",
        "--quiet",
    ]);
    assert!(log.contains("regression (inferred"), "{log}");
    let (metric, mae, _) = eval_metric(&run.join("model.safetensors"), &d.join("reg.csv"));
    // The target's spread is about 1.7; predicting its mean would give an MAE near 1.
    assert_eq!(metric, "mae");
    assert!(mae < 0.25, "regression MAE {mae}");
    // --task classification on a 1-unit linear model and many label values: a clear refusal.
    let e = refused(&[
        "train",
        "--model",
        p(&d.join("reg.json")),
        "--data",
        p(&d.join("reg.csv")),
        "--out",
        p(&d.join("x")),
        "--task",
        "classification",
    ]);
    assert!(e.contains("classes but the model ends in 1 unit"), "{e}");
}

#[test]
fn a_text_table_trains_through_the_tokenizer_capped_to_the_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = StdRng::seed_from_u64(3);
    let (pos, neg) = (
        ["good", "great", "fine", "love"],
        ["bad", "awful", "poor", "hate"],
    );
    let filler = ["the", "a", "movie", "was", "it", "really", "plot", "so"];
    // A text pair: the one sentiment word is in the title or in the review.
    let mut csv = String::from("id,title,review,label\n");
    for i in 0..240 {
        let y = i % 2;
        let mut texts: Vec<Vec<&str>> = (0..2)
            .map(|_| {
                (0..3)
                    .map(|_| filler[rng.random_range(0..filler.len())])
                    .collect()
            })
            .collect();
        texts[rng.random_range(0..2)].insert(
            rng.random_range(0..4),
            if y == 1 { pos[i % 4] } else { neg[i % 4] },
        );
        writeln!(
            csv,
            "{i},{},\"{}\",{y}",
            texts[0].join(" "),
            texts[1].join(" ")
        )
        .unwrap();
    }
    write(&d.join("reviews.csv"), &csv);
    write(
        &d.join("text.json"),
        r#"{"input": [8], "layers": [{"type": "embedding", "vocab": 24, "dim": 8},
            {"type": "lstm", "units": 8}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
    );
    let run = d.join("run");
    let log = ok(&[
        "train",
        "--model",
        p(&d.join("text.json")),
        "--data",
        p(&d.join("reviews.csv")),
        "--out",
        p(&run),
        "--epochs",
        "20",
        "--quiet",
    ]);
    assert!(
        log.contains("text inputs title, review") && log.contains("not used: id"),
        "{log}"
    );
    let (_, acc, _) = eval_metric(&run.join("model.safetensors"), &d.join("reviews.csv"));
    assert!(acc >= 0.9, "text accuracy {acc}");
    // An empty review is a valid (empty) input: predicted, not dropped.
    write(
        &d.join("new.csv"),
        "title,review\nmovie,\"so good\"\n,\"\"\n\"awful plot\",it\n",
    );
    let out = d.join("p.csv");
    ok(&[
        "predict",
        "--model",
        p(&run.join("model.safetensors")),
        "--data",
        p(&d.join("new.csv")),
        "--out",
        p(&out),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].starts_with("2,1,") && lines[3].starts_with("4,0,"),
        "{text}"
    );
    // The tokenizer keeps at most vocab - 2 words, so a tiny embedding never sees an id past it.
    write(
        &d.join("tiny.json"),
        r#"{"input": [8], "layers": [{"type": "embedding", "vocab": 5, "dim": 2},
            {"type": "lstm", "units": 2}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
    );
    ok(&[
        "train",
        "--model",
        p(&d.join("tiny.json")),
        "--data",
        p(&d.join("reviews.csv")),
        "--out",
        p(&d.join("tiny")),
        "--epochs",
        "1",
        "--quiet",
    ]);
}

fn bar_image(vertical: bool, size: u32, at: u32, rgb: bool) -> image::DynamicImage {
    let grey = image::GrayImage::from_fn(size, size, |x, y| {
        let on = if vertical {
            x == at || x == at + 1
        } else {
            y == at || y == at + 1
        };
        image::Luma([if on { 230 } else { 20 }])
    });
    let img = image::DynamicImage::ImageLuma8(grey);
    if rgb {
        image::DynamicImage::ImageRgb8(img.to_rgb8())
    } else {
        img
    }
}

#[test]
fn an_image_folder_trains_a_cnn_and_predicts_every_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("bars");
    for class in ["horizontal", "vertical"] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..24u32 {
            let img = bar_image(class == "vertical", 8, 1 + i % 5, false);
            // A few JPEGs of another size and in colour: read as grey and resized.
            if i % 6 == 0 {
                let big = bar_image(class == "vertical", 16, 2 * (1 + i % 5), true);
                big.save(data.join(class).join(format!("{i}.jpg"))).unwrap();
            } else {
                img.save(data.join(class).join(format!("{i}.png"))).unwrap();
            }
        }
    }
    std::fs::write(data.join("horizontal").join("notes.txt"), "not an image").unwrap();
    write(
        &d.join("cnn.json"),
        r#"{"input": [1, 8, 8], "layers": [{"type": "conv2d", "filters": 4, "kernel": 3, "activation": "relu"},
            {"type": "max_pool2d", "size": 2}, {"type": "flatten"},
            {"type": "dense", "units": 2}]}"#,
    );
    let run = d.join("run");
    let log = ok(&[
        "train",
        "--model",
        p(&d.join("cnn.json")),
        "--data",
        p(&data),
        "--out",
        p(&run),
        "--epochs",
        "25",
        "--batch",
        "8",
        "--lr",
        "0.01",
        "--quiet",
    ]);
    assert!(
        log.contains("48 rows") && log.contains("8 resized"),
        "{log}"
    );
    assert!(log.contains("2 classes (horizontal, vertical)"), "{log}");
    let (_, acc, rows) = eval_metric(&run.join("model.safetensors"), &data);
    assert_eq!(rows, 48);
    assert!(acc >= 0.9, "image accuracy {acc}");
    let out = d.join("p.csv");
    ok(&[
        "predict",
        "--model",
        p(&run.join("model.safetensors")),
        "--data",
        p(&data),
        "--out",
        p(&out),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with("file,prediction,p_horizontal,p_vertical\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 49);
    // A model whose input is not an image is refused before training.
    write(
        &d.join("flat.json"),
        r#"{"input": [64], "layers": [{"type": "dense", "units": 2}]}"#,
    );
    let e = refused(&[
        "train",
        "--model",
        p(&d.join("flat.json")),
        "--data",
        p(&data),
        "--out",
        p(&d.join("x")),
    ]);
    assert!(e.contains("[channels, height, width]"), "{e}");
}

#[test]
fn built_in_models_print_as_files_that_train_on_the_jobs_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for job in ["spirals", "xor", "mnist", "qqp"] {
        let json = ok(&["model", job]);
        let v: serde_json::Value = serde_json::from_str(json.trim()).expect("a JSON model file");
        assert!(v["layers"].is_array(), "{job}: {json}");
        write(&d.join(format!("{job}.json")), &json);
    }
    assert!(ok(&["model", "qqp", "--arch", "siamese"]).contains("\"siamese\""));
    assert!(ok(&["model", "mnist", "--pool", "avg"]).contains("avg_pool2d"));
    // The spirals preset over its own model file: the same path as `kiln train spirals`.
    let (a, b) = (d.join("a"), d.join("b"));
    ok(&[
        "train",
        "spirals",
        "--epochs",
        "2",
        "--out",
        p(&a),
        "--quiet",
    ]);
    ok(&[
        "train",
        "spirals",
        "--model",
        p(&d.join("spirals.json")),
        "--epochs",
        "2",
        "--out",
        p(&b),
        "--quiet",
    ]);
    let weights = |run: &Path| {
        kiln::graph::checkpoint::Checkpoint::load(&run.join("model.safetensors"))
            .unwrap()
            .params
    };
    assert!(
        weights(&a) == weights(&b),
        "the job's own model, from a file, trains to the same weights"
    );
    // A file model that does not read the job's data is refused, naming the fix.
    let e = refused(&[
        "train",
        "xor",
        "--model",
        p(&d.join("mnist.json")),
        "--out",
        p(&d.join("c")),
    ]);
    assert!(e.contains("set \"input\" to [2]"), "{e}");
}

#[test]
fn bad_model_files_and_flags_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(&d.join("data.csv"), "a,b,label\n1,2,0\n2,1,1\n3,3,0\n");
    let data = d.join("data.csv");
    let cases: [(&str, &[&str]); 9] = [
        (
            r#"{"input": [2], "layers": [{"type": "dense", "units": 4}, {"type": "dnse", "units": 1}]}"#,
            &["layer 2", "unknown layer type `dnse`", "dense, embedding"],
        ),
        (
            r#"{"input": [2], "layers": [{"type": "dense", "activation": "relu"}]}"#,
            &["layer 1 (dense)", "missing field `units`"],
        ),
        (
            r#"{"input": [2], "layers": [{"type": "dense", "units": 1, "activaton": "sigmoid"}]}"#,
            &["unknown field `activaton`"],
        ),
        (
            r#"{"input": [2], "layers": [{"type": "dense", "units": 4}, {"type": "max_pool2d", "size": 2}]}"#,
            &["layer 2", "pooling needs (C, H, W)"],
        ),
        (
            r#"{"input": [2], "layers": [{"type": "embedding", "vocab": 100000000000, "dim": 64}, {"type": "lstm", "units": 1}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
            &["layer 1 (embedding", "too many elements"],
        ),
        (
            r#"{"input": [2], "layerz": []}"#,
            &["unknown field `layerz`"],
        ),
        (
            r#"{"input": [2], "layers": [{"type": "reshape", "target_shape": [2, 1]}, {"type": "conv1d", "filters": 2, "kernel_size": 3}]}"#,
            &[
                "layer 2",
                "Conv1D",
                "fewer than the kernel's span 3",
                "same",
            ],
        ),
        (
            r#"{"input": [2], "layers": [{"type": "batch_normalization", "axis": 0}]}"#,
            &[
                "layer 1",
                "BatchNormalization",
                "axis 0",
                "the batch is axis 0",
            ],
        ),
        (
            r#"{"input": [2], "layers": [{"type": "dense", "units": 1, "activation": "gelu_exact"}]}"#,
            &["unknown variant `gelu_exact`", "gelu_approximate"],
        ),
    ];
    for (i, (json, needles)) in cases.iter().enumerate() {
        let file = d.join(format!("m{i}.json"));
        write(&file, json);
        let e = refused(&[
            "train",
            "--model",
            p(&file),
            "--data",
            p(&data),
            "--out",
            p(&d.join(format!("r{i}"))),
            "--epochs",
            "1",
        ]);
        for n in *needles {
            assert!(e.contains(n), "case {i}: `{n}` not in:\n{e}");
        }
        assert!(
            !d.join(format!("r{i}")).exists(),
            "case {i} left a run folder"
        );
    }
    // Flags a job does not take name the jobs that do.
    let e = refused(&["train", "xor", "--pool", "max"]);
    assert!(e.contains("--pool applies to mnist only"), "{e}");
    let e = refused(&["train", "spirals", "--data", p(&data)]);
    assert!(
        e.contains("--data applies to mnist, qqp and --model"),
        "{e}"
    );
    let e = refused(&["train", "mnist", "--task", "regression"]);
    assert!(e.contains("--task applies to --model --data only"), "{e}");
    let e = refused(&["train", "xor", "--pool", "bogus"]);
    assert!(e.contains("possible values: max, avg, stochastic"), "{e}");
    let e = refused(&["train", "--model", p(&d.join("m0.json"))]);
    assert!(e.contains("--model needs data"), "{e}");
}

/// Every registered layer's example, alone in a model file as `kiln train --model` reads it,
/// parses and outlines (a new layer needs no edit here).
#[test]
fn every_registered_layer_reads_as_a_model_file() {
    for (config, input) in kiln::graph::LayerConfig::examples() {
        let json = serde_json::json!({"input": input.shape, "layers": [config]}).to_string();
        let model = kiln_cli::models::ModelConfig::from_json(&json)
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        let outline = model.outline().unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(outline.input, input.shape, "{json}");
        assert_eq!(outline.takes_ids, input.ids, "{json}");
    }
}
