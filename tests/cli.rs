//! The `kiln` binary as a user runs it: `info`, `bench --json`, `profile`, and clear errors for bad
//! choices.

mod common;

use common::kiln_ok as kiln;

#[test]
fn info_lists_adapters_and_the_choice() {
    let (ok, stdout, stderr) = kiln(&["info"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("adapters (best first"), "{stdout}");
    assert!(stdout.contains("chosen: "), "{stdout}");
    let (ok, stdout, _) = kiln(&["--device", "cpu", "info"]);
    assert!(ok);
    assert!(stdout.contains("chosen: cpu"), "{stdout}");
}

#[test]
fn bench_writes_json_records_with_the_documented_fields() {
    let path = std::env::temp_dir().join(format!("kiln-bench-{}.json", std::process::id()));
    let path_s = path.to_str().unwrap();
    let (ok, stdout, stderr) = kiln(&["bench", "--quick", "--repeats", "1", "--json", path_s]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("tuned is"), "{stdout}");
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    let kernels: Vec<&str> = records
        .iter()
        .map(|r| r["kernel"].as_str().unwrap())
        .collect();
    for k in [
        "matmul",
        "elementwise",
        "reduce",
        "softmax",
        "embedding",
        "dropout",
        "optim",
        "conv2d_forward",
        "conv2d_backward",
        "pool2d_forward",
        "pool2d_backward",
        "lenet_training_step",
        "qqp_training_step",
        "training_memory",
        "dispatch_overhead",
    ] {
        assert!(kernels.contains(&k), "no {k} record in {kernels:?}");
    }
    for r in &records {
        for field in [
            "kernel",
            "variant",
            "shape",
            "median_ms",
            "dispatches",
            "adapter",
            "timing",
        ] {
            assert!(r.get(field).is_some(), "{field} missing from {r}");
        }
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
        let rate = ["gflops", "gbps", "samples_per_sec"]
            .iter()
            .any(|k| r.get(*k).is_some());
        assert!(rate || r["kernel"] == "dispatch_overhead", "{r}");
    }
    let variants: Vec<&str> = records
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert!(variants.contains(&"naive") && variants.contains(&"tuned"));
    // The fused LSTM path records a fixed handful of dispatches per step; the unfused one a
    // dozen or more per timestep, layer and direction.
    let qqp = |variant: &str| {
        records
            .iter()
            .find(|r| r["kernel"] == "qqp_training_step" && r["variant"] == variant)
            .unwrap_or_else(|| panic!("no {variant} qqp record"))
    };
    let (fused, unfused) = (qqp("fused"), qqp("unfused"));
    assert!(fused["submits_per_step"].as_f64().is_some(), "{fused}");
    let count = |r: &serde_json::Value| r["dispatches"].as_u64().unwrap();
    assert!(10 * count(fused) < count(unfused), "{fused} {unfused}");
    // Memory over a fit: device buffers are reused, so live bytes at the two steps are equal.
    let memory = &records
        .iter()
        .find(|r| r["kernel"] == "training_memory")
        .unwrap()["memory"];
    let live = memory["device_bytes_live"].as_array().unwrap();
    assert!(
        live[0].as_u64().unwrap() > 0 && live[0] == live[1],
        "{memory}"
    );
    assert!(stdout.contains("memory over a fit"), "{stdout}");
}

#[test]
fn bench_filter_picks_kernels() {
    let (ok, stdout, stderr) = kiln(&["bench", "--quick", "--repeats", "1", "--filter", "softmax"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("softmax") && !stdout.contains("matmul"),
        "{stdout}"
    );
}

#[test]
fn bad_device_choices_are_clear_errors() {
    let (ok, _, stderr) = kiln(&["--device", "tpu", "info"]);
    assert!(!ok);
    assert!(stderr.contains("invalid device choice `tpu`"), "{stderr}");
    let (ok, _, stderr) = kiln(&["--device", "name:no-such-adapter", "info"]);
    assert!(!ok);
    assert!(
        stderr.contains("no GPU adapter matches") && stderr.contains("lavapipe"),
        "{stderr}"
    );
    // A mistyped KILN_AUTOTUNE is refused where a GPU device opens, not taken as the default.
    let out = common::kiln()
        .args(["--device", "gpu", "info"])
        .env("KILN_AUTOTUNE", "maybe")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("KILN_AUTOTUNE: unknown value \"maybe\""),
        "{stderr}"
    );
}

fn weights(path: &std::path::Path) -> Vec<kiln::graph::checkpoint::NamedTensor> {
    kiln::graph::checkpoint::Checkpoint::load(path)
        .unwrap()
        .params
}

#[test]
fn a_killed_training_run_resumes_to_the_same_weights_and_is_never_overwritten() {
    killed_and_resumed("spirals", &["train", "spirals", "--epochs", "40"]);
}

/// The same for a transformer (attention dropout, positions, the masked mean) from a model file
/// on a text table: the resumed run's weights are the uninterrupted run's, bit for bit.
#[test]
fn a_killed_transformer_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let words = [
        "red", "blue", "green", "cat", "dog", "fish", "runs", "sleeps", "fast", "slow",
    ];
    let mut csv = String::from("text,label\n");
    for i in 0..160usize {
        let n = 2 + i % 5;
        let text: Vec<&str> = (0..n)
            .map(|k| words[(i * 7 + k * 3) % words.len()])
            .collect();
        csv += &format!("{},{}\n", text.join(" "), (i * 7 % words.len() < 5) as u8);
    }
    let data = dir.path().join("text.csv");
    std::fs::write(&data, csv).unwrap();
    let model = dir.path().join("model.json");
    std::fs::write(
        &model,
        r#"{"input": [8], "layers": [
            {"type": "embedding", "vocab": 16, "dim": 8, "mask_zero": true},
            {"type": "position_embedding", "sequence_length": 8},
            {"type": "transformer_encoder", "intermediate_dim": 16, "num_heads": 2, "dropout": 0.2},
            {"type": "global_average_pooling1d"},
            {"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
    )
    .unwrap();
    let (model, data) = (model.display().to_string(), data.display().to_string());
    killed_and_resumed(
        "transformer",
        &[
            "train", "--model", &model, "--data", &data, "--epochs", "40",
        ],
    );
}

/// The same with every training control that keeps state active at once: a cosine schedule with
/// warmup, clipping by global norm, BatchNormalization's moving statistics, early stopping (its
/// counters and best weights) and tracked metrics: the resumed run ends on the same weights.
#[test]
fn a_killed_run_with_every_training_control_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x1,x2,label\n");
    for i in 0..12_000usize {
        let (a, b) = (
            (i * 37 % 101) as f32 / 50.0 - 1.0,
            (i * 53 % 97) as f32 / 48.0 - 1.0,
        );
        csv += &format!("{a},{b},{}\n", (a * a + b > 0.3) as u8);
    }
    let data = dir.path().join("points.csv");
    common::write(&data, &csv);
    let model = dir.path().join("model.json");
    common::write(
        &model,
        r#"{"input": [2], "layers": [
            {"type": "dense", "units": 16},
            {"type": "batch_normalization"},
            {"type": "activation", "activation": "relu"},
            {"type": "dropout", "rate": 0.1},
            {"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
    );
    let (model, data) = (model.display().to_string(), data.display().to_string());
    // Early stopping ends this run at epoch 26, restoring epoch 18's weights; the kill comes
    // at epoch 3.
    killed_and_resumed(
        "controls",
        &[
            "train",
            "--model",
            &model,
            "--data",
            &data,
            "--epochs",
            "40",
            "--batch",
            "16",
            "--lr",
            "0.02",
            "--schedule",
            "cosine",
            "--warmup",
            "300",
            "--clip-norm",
            "0.5",
            "--patience",
            "8",
            "--metrics",
            "auc,precision",
        ],
    );
}

/// Trains `train_args` to the end, and again killed (SIGKILL) after its third epoch's
/// checkpoint: a second run without --resume is refused, and --resume ends on the same weights.
fn killed_and_resumed(name: &str, train_args: &[&str]) {
    let base = std::env::temp_dir().join(format!("kiln-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (full, killed) = (base.join("full"), base.join("killed"));
    let args = |out: &std::path::Path| {
        let mut a: Vec<String> = train_args.iter().map(|s| s.to_string()).collect();
        a.extend(["--quiet".into(), "--out".into(), out.display().to_string()]);
        a
    };
    let (ok, _, stderr) = kiln(&args(&full).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");

    let mut child = common::kiln()
        .args(args(&killed))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let third = killed.join("checkpoints/epoch-0003.safetensors");
    let start = std::time::Instant::now();
    while !third.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(third.exists(), "the run never reached epoch 3");
    // Killed mid-run (37 epochs were left): no final model.
    assert!(
        !killed.join("model.safetensors").exists(),
        "the run finished before it was killed"
    );

    let (ok, _, stderr) = kiln(&args(&killed).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !ok && stderr.contains("--resume"),
        "a second run must not overwrite the first: {stderr}"
    );

    let mut resume = args(&killed);
    resume.push("--resume".into());
    let (ok, _, stderr) = kiln(&resume.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert_eq!(
        weights(&full.join("model.safetensors")),
        weights(&killed.join("model.safetensors"))
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// The default device passes a software adapter over (the CPU device is faster) and says so;
/// asked for, the adapter trains the main job through the binary, end to end.
#[test]
fn the_main_job_trains_on_the_default_device_and_on_the_adapter_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let chosen = |args: &[&str]| {
        let (ok, info, _) = kiln(&[args, &["info"]].concat());
        let line = info
            .lines()
            .find(|l| l.starts_with("chosen: "))
            .map(|l| l["chosen: ".len()..].to_string());
        line.filter(|_| ok)
    };
    let train = |args: &[&str], name: &str| {
        let out = dir.path().join(name).display().to_string();
        let (ok, stdout, stderr) =
            kiln(&[args, &["train", "--epochs", "2", "--out", &out]].concat());
        assert!(ok, "{stderr}");
        assert!(dir.path().join(name).join("model.safetensors").exists());
        stdout + &stderr
    };
    let auto = chosen(&[]).expect("the default device opens");
    let text = train(&[], "auto");
    assert!(
        text.contains(&format!("training spirals on {auto}")),
        "{text}"
    );
    let Some(adapter) = chosen(&["--device", "gpu"]) else {
        assert!(
            std::env::var_os("KILN_REQUIRE_GPU").is_none(),
            "KILN_REQUIRE_GPU is set but there is no adapter"
        );
        eprintln!("SKIPPED the main job on the adapter: none");
        return;
    };
    if auto == "cpu" {
        // The only adapter is a software one.
        assert!(text.contains("faster than the software adapter"), "{text}");
    }
    let text = train(&["--device", "gpu"], "gpu");
    assert!(
        text.contains(&format!("training spirals on {adapter}")),
        "{text}"
    );
}

#[test]
fn train_refuses_an_unknown_model() {
    let (ok, _, stderr) = kiln(&["train", "mnist-but-not-yet"]);
    assert!(!ok);
    assert!(
        stderr.contains("invalid value 'mnist-but-not-yet' for '[JOB]'")
            && stderr.contains("[possible values: spirals, xor, mnist, qqp]"),
        "{stderr}"
    );
}

#[test]
fn default_run_folders_never_collide_and_resume_takes_the_newest() {
    let cwd = std::env::temp_dir().join(format!("kiln-default-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    let run = |args: &[&str]| {
        let out = common::kiln()
            .args(args)
            .current_dir(&cwd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["train", "xor", "--epochs", "2", "--quiet"]);
    let second = run(&["train", "xor", "--epochs", "2", "--quiet"]);
    assert!(cwd.join("runs/xor/model.safetensors").exists());
    assert!(second.contains("runs/xor-2"), "{second}");
    let resumed = run(&["train", "xor", "--epochs", "3", "--quiet", "--resume"]);
    assert!(resumed.contains("runs/xor-2"), "{resumed}");
    assert!(cwd
        .join("runs/xor-2/checkpoints/epoch-0003.safetensors")
        .exists());
    assert!(!cwd
        .join("runs/xor/checkpoints/epoch-0003.safetensors")
        .exists());
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn mnist_trains_on_a_slice_and_evaluates_with_pictures() {
    let out = std::env::temp_dir().join(format!("kiln-mnist-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = out.display().to_string();
    let (ok, _, stderr) = kiln(&[
        "train", "mnist", "--limit", "256", "--epochs", "1", "--batch", "32", "--quiet", "--out",
        &o,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("epoch 1/1") && stderr.contains("val_accuracy"),
        "{stderr}"
    );
    let model = out.join("model.safetensors").display().to_string();
    let (ok, stdout, stderr) = kiln(&["eval", "mnist", "--model", &model, "--limit", "200"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("200 test images, accuracy"), "{stdout}");
    for f in ["test_digits.png", "confusion.png", "history.png"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let (ok, stdout, _) = kiln(&[
        "eval", "mnist", "--model", &model, "--limit", "50", "--json",
    ]);
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let total: u64 = report["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!((report["samples"].as_u64(), total), (Some(50), 50));
    let (ok, _, stderr) = kiln(&["train", "mnist", "--pool", "median", "--out", &o]);
    assert!(
        !ok && stderr.contains("possible values: max, avg, stochastic"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn qqp_trains_evaluates_predicts_and_exports_on_both_formats() {
    let dir = std::env::temp_dir().join(format!("kiln-qqp-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("run");
    let o = out.display().to_string();
    // A Kaggle train.csv (with one bad row) and test.csv of our own.
    let train_csv = dir.join("train.csv");
    let mut rows =
        String::from("\"id\",\"qid1\",\"qid2\",\"question1\",\"question2\",\"is_duplicate\"\n");
    for i in 0..40 {
        rows += &format!(
            "\"{i}\",\"{}\",\"{}\",\"How do I learn topic {}?\",\"What is the way to learn topic {}?\",\"{}\"\n",
            2 * i,
            2 * i + 1,
            i % 7,
            (i + i % 2) % 7,
            1 - i % 2
        );
    }
    rows += "\"40\",\"80\",\"81\",\"\",\"An empty first question\",\"0\"\n";
    std::fs::write(&train_csv, rows).unwrap();
    let test_csv = dir.join("test.csv");
    std::fs::write(
        &test_csv,
        "\"test_id\",\"question1\",\"question2\"\n\"0\",\"How do I learn topic 3?\",\"What is topic 3?\"\n\"1\",\"Why?\",\"How?\"\n",
    )
    .unwrap();

    // The embedded Quora TSV, a slice, fused and unfused.
    for (lstm, arch) in [
        ("fused", "seed"),
        ("unfused", "siamese"),
        ("fused", "cnn"),
        ("fused", "gru"),
    ] {
        let run = dir.join(format!("run-{lstm}-{arch}"));
        let (ok, _, stderr) = kiln(&[
            "train",
            "qqp",
            "--limit",
            "32",
            "--epochs",
            "1",
            "--len",
            "6",
            "--quiet",
            "--lstm",
            lstm,
            "--arch",
            arch,
            "--out",
            &run.display().to_string(),
        ]);
        assert!(ok, "{stderr}");
        assert!(
            stderr.contains("9998 rows, 9998 kept") && stderr.contains("val_accuracy"),
            "{stderr}"
        );
        assert!(run.join("best.safetensors").exists());
    }
    // Kaggle's train.csv: the bad row is reported, not silently dropped; --strict refuses it.
    let (ok, _, stderr) = kiln(&[
        "train",
        "qqp",
        "--data",
        &train_csv.display().to_string(),
        "--epochs",
        "1",
        "--len",
        "8",
        "--quiet",
        "--out",
        &o,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("41 rows, 40 kept") && stderr.contains("1 with an empty question"),
        "{stderr}"
    );
    let (ok, _, stderr) = kiln(&[
        "train",
        "qqp",
        "--data",
        &train_csv.display().to_string(),
        "--strict",
        "--out",
        &dir.join("strict").display().to_string(),
    ]);
    assert!(!ok && stderr.contains("has an empty question"), "{stderr}");

    let model = out.join("model.safetensors").display().to_string();
    let (ok, stdout, stderr) = kiln(&[
        "eval",
        "qqp",
        "--model",
        &model,
        "--data",
        &train_csv.display().to_string(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["pairs"].as_u64(), Some(40));
    assert!(r["accuracy"].as_f64().unwrap() >= 0.0 && r["loss"].as_f64().unwrap() > 0.0);
    let (ok, stdout, stderr) = kiln(&["eval", "qqp", "--model", &model, "--limit", "20"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("20 pairs") && stdout.contains("validation split"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = kiln(&[
        "predict",
        "qqp",
        "--model",
        &model,
        "How do I learn topic 3?",
        "What is topic 3?",
    ]);
    assert!(ok, "{stderr}");
    let p: f32 = stdout.trim().parse().unwrap();
    assert!((0.0..=1.0).contains(&p), "{stdout}");
    let sub = dir.join("submission.csv");
    let s = sub.display().to_string();
    let args = [
        "predict",
        "qqp",
        "--model",
        &model,
        "--data",
        &test_csv.display().to_string(),
        "--out",
        &s,
    ];
    let (ok, _, stderr) = kiln(&args);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&sub).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "test_id,is_duplicate");
    assert!(
        lines[1].starts_with("0,") && lines[2].starts_with("1,"),
        "{text}"
    );
    // An existing submission is never overwritten without --force.
    let (ok, _, stderr) = kiln(&args);
    assert!(!ok && stderr.contains("--force"), "{stderr}");
    let (ok, _, stderr) = kiln(&[
        "eval",
        "qqp",
        "--model",
        &model,
        "--data",
        &test_csv.display().to_string(),
    ]);
    assert!(!ok && stderr.contains("no labels"), "{stderr}");
    let (ok, _, stderr) = kiln(&["predict", "qqp", "--model", &model, "only one question"]);
    assert!(!ok && stderr.contains("two questions"), "{stderr}");

    let export = dir.join("export.json");
    let (ok, _, stderr) = kiln(&[
        "export",
        "qqp",
        "--data",
        &train_csv.display().to_string(),
        "--len",
        "8",
        "--out",
        &export.display().to_string(),
    ]);
    assert!(ok, "{stderr}");
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(
        e["train"]["ids"].as_array().unwrap().len() + e["val"]["ids"].as_array().unwrap().len(),
        40
    );
    assert_eq!(e["train"]["ids"][0].as_array().unwrap().len(), 16);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_prints_kernels_and_writes_a_trace_with_every_launch() {
    let dir = tempfile::tempdir().unwrap();
    let (trace, json) = (dir.path().join("trace.json"), dir.path().join("table.json"));
    let (ok, stdout, stderr) = kiln(&[
        "--device",
        "cpu",
        "profile",
        "spirals",
        "--steps",
        "2",
        "--trace",
        trace.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("timing: wall-clock"), "{stdout}");
    assert!(stdout.contains("matmul"), "{stdout}");
    assert!(stdout.contains("adam_update"), "{stdout}");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let kernels = table["kernels"].as_array().unwrap();
    let ms: Vec<f64> = kernels
        .iter()
        .map(|k| k["ms_per_step"].as_f64().unwrap())
        .collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "longest first: {ms:?}");
    let calls: f64 = kernels
        .iter()
        .map(|k| k["calls_per_step"].as_f64().unwrap())
        .sum();
    assert_eq!(calls, table["launches_per_step"].as_f64().unwrap());
    let percent: f64 = kernels.iter().map(|k| k["percent"].as_f64().unwrap()).sum();
    assert!((percent - 100.0).abs() < 1e-6, "{percent}");
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    // Two profiled steps: every launch of both is one complete event.
    assert_eq!(events.len() as f64, 2.0 * calls);
    assert!(events
        .iter()
        .all(|e| e["ph"] == "X" && e["dur"].as_f64().unwrap() >= 0.0));
}

#[test]
fn tune_measures_a_jobs_matmuls_and_writes_the_cache() {
    // The CPU device has nothing to tune; without an adapter there is nothing to measure.
    let (has_adapter, _, _) = kiln(&["--device", "gpu", "info"]);
    if !has_adapter {
        assert!(
            std::env::var_os("KILN_REQUIRE_GPU").is_none(),
            "KILN_REQUIRE_GPU is set but there is no adapter"
        );
        eprintln!("SKIPPED tune: no adapter");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tune.txt");
    let out = common::kiln()
        .args(["--device", "gpu", "tune", "xor"])
        .env("KILN_TUNE_CACHE", &cache)
        .output()
        .expect("run kiln");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("shape classes tuned on"), "{stdout}");
    assert!(
        stdout.contains(&format!("written to {}", cache.display())),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(!text.is_empty());
    for line in text.lines() {
        let (class, choice) = line.split_once(' ').unwrap();
        let ok = match class.split(':').next() {
            Some("matmul_tiled") => ["large", "medium", "small"].contains(&choice),
            // A GPU's sweep also times units per thread (`rows2:units2`).
            Some("lstm") => {
                let (rows, units) = choice.split_once(':').unwrap_or((choice, "units1"));
                ["rows1", "rows2", "rows4", "rows8"].contains(&rows)
                    && ["units1", "units2", "units4"].contains(&units)
            }
            _ => false,
        };
        assert!(ok, "{line}");
        assert!(stdout.contains(class), "{class} printed");
    }
}

#[test]
fn profile_takes_a_model_file_on_the_jobs_data() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, model, stderr) = kiln(&["model", "xor"]);
    assert!(ok, "{stderr}");
    // A wider hidden layer than the job's: the profile runs the file's model.
    let model = model.replacen("\"units\": 8", "\"units\": 16", 1);
    assert!(model.contains("\"units\": 16"), "{model}");
    let path = dir.path().join("m.json");
    std::fs::write(&path, model).unwrap();
    let json = dir.path().join("p.json");
    let (ok, stdout, stderr) = kiln(&[
        "--device",
        "cpu",
        "profile",
        "xor",
        "--model",
        path.to_str().unwrap(),
        "--steps",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("xor on cpu"), "{stdout}");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(table["steps"], 1);
    assert!(table["launches_per_step"].as_f64().unwrap() > 0.0);
}

#[test]
fn patience_stops_a_run_and_keeps_the_best_epochs_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_s = out.to_str().unwrap();
    let args = ["--device", "cpu", "train", "spirals", "--epochs", "60"];
    let (ok, _, stderr) =
        kiln(&[&args[..], &["--patience", "1", "--quiet", "--out", out_s]].concat());
    assert!(ok, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("early stopping at epoch "))
        .unwrap_or_else(|| panic!("the run did not stop: {stderr}"));
    let stopped: usize = line["early stopping at epoch ".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(stopped < 60, "{line}");
    assert!(line.contains("weights were restored"), "{line}");
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), stopped + 1, "{history}");
    assert!(out.join("model.safetensors").exists());

    // Without a validation set there is nothing to watch: refused before training.
    common::refused(
        &["train", "xor", "--patience", "2"],
        common::USAGE,
        &["--patience", "no validation set"],
    );
}

/// `--optimizer` trains with each of Keras's optimizers; a run resumes only with the optimizer it
/// began with (its saved state means what that optimizer's kind says), and the refusal names
/// the flag to pass.
#[test]
fn each_optimizer_trains_and_a_resume_keeps_the_one_it_began_with() {
    let out = std::env::temp_dir().join(format!("kiln-optimizers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    for name in ["adam", "adamw", "rmsprop", "sgd"] {
        let dir = out.join(name).display().to_string();
        let args = [
            "train",
            "xor",
            "--epochs",
            "2",
            "--quiet",
            "--optimizer",
            name,
            "--out",
        ];
        common::ok(&[&args[..], &[dir.as_str()]].concat());
        assert!(out.join(name).join("model.safetensors").exists(), "{name}");
    }
    let dir = out.join("rmsprop").display().to_string();
    let (code, _, stderr) = common::run(&[
        "train",
        "xor",
        "--epochs",
        "3",
        "--quiet",
        "--resume",
        "--optimizer",
        "adam",
        "--out",
        &dir,
    ]);
    assert_eq!(code, common::DATA, "{stderr}");
    assert!(
        stderr.contains("trained with rmsprop") && stderr.contains("--optimizer rmsprop"),
        "{stderr}"
    );
    common::ok(&[
        "train",
        "xor",
        "--epochs",
        "3",
        "--quiet",
        "--resume",
        "--optimizer",
        "rmsprop",
        "--out",
        &dir,
    ]);
    let (code, _, stderr) = common::run(&["train", "xor", "--optimizer", "adagrad"]);
    assert_eq!(code, common::USAGE, "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--schedule cosine --warmup N` trains and records each epoch's rate in the history; a
/// plateau schedule needs a validation set, and `--warmup` a cosine schedule.
#[test]
fn schedules_from_the_cli() {
    let out = std::env::temp_dir().join(format!("kiln-schedule-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = out.display().to_string();
    common::ok(&[
        "train",
        "xor",
        "--epochs",
        "6",
        "--quiet",
        "--schedule",
        "cosine",
        "--warmup",
        "2",
        "--out",
        &o,
    ]);
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let header: Vec<&str> = history.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|c| *c == "learning_rate").unwrap();
    let rates: Vec<f32> = history
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    // xor takes one step an epoch: warmup from 0 over 2 steps, the peak, then the decay.
    assert_eq!(rates.len(), 6, "{history}");
    assert_eq!(rates[0], 0.0, "{history}");
    assert!(
        rates[1] < rates[2] && rates[5] < rates[3] && rates[3] < rates[2],
        "{history}"
    );
    common::refused(
        &["train", "xor", "--schedule", "plateau"],
        common::USAGE,
        &["plateau", "no validation set"],
    );
    common::refused(
        &["train", "xor", "--schedule", "plateau", "--warmup", "3"],
        common::USAGE,
        &["--warmup"],
    );
    let (code, _, stderr) = common::run(&["train", "xor", "--warmup", "3"]);
    assert_eq!(code, common::USAGE, "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--clip-norm` and `--clip-value` train; a threshold that is not positive, or both at once,
/// are refused before training.
#[test]
fn gradient_clipping_from_the_cli() {
    let out = std::env::temp_dir().join(format!("kiln-clip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    for flag in ["--clip-norm", "--clip-value"] {
        let o = out.join(&flag[2..]).display().to_string();
        common::ok(&[
            "train", "xor", "--epochs", "3", "--quiet", flag, "0.5", "--out", &o,
        ]);
        common::refused(&["train", "xor", flag, "0"], common::USAGE, &[&flag[2..]]);
    }
    let (code, _, stderr) = common::run(&["train", "xor", "--clip-norm", "1", "--clip-value", "1"]);
    assert_eq!(code, common::USAGE, "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `--tensorboard DIR` writes train/ and validation/ event files that read back to the run's
/// history.
#[test]
fn tensorboard_from_the_cli() {
    let out = std::env::temp_dir().join(format!("kiln-tb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (run, logs) = (out.join("run"), out.join("logs"));
    common::ok(&[
        "train",
        "qqp",
        "--limit",
        "32",
        "--len",
        "6",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        common::p(&run),
        "--tensorboard",
        common::p(&logs),
        "--metrics",
        "auc",
    ]);
    for part in ["train", "validation"] {
        let file = std::fs::read_dir(logs.join(part))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let scalars = kiln::train::read_scalars(&file).unwrap();
        let tags: std::collections::BTreeSet<_> = scalars.iter().map(|s| s.tag.as_str()).collect();
        assert!(
            tags.contains("epoch_loss")
                && tags.contains("epoch_accuracy")
                && tags.contains("epoch_auc"),
            "{tags:?}"
        );
        assert_eq!(scalars.iter().map(|s| s.step).max(), Some(2));
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `--metrics` and a model file's training section track precision, recall and AUC under
/// Keras's names (the flag overrides the file), `--monitor val_auc` follows one, a resume that
/// asks for other metrics is refused naming the run's, and unknown names are refused listing
/// the known ones.
#[test]
fn tracked_metrics_from_the_cli_and_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("x1,x2,label\n");
    for i in 0..200usize {
        let (a, b) = (
            (i * 37 % 101) as f32 / 50.0 - 1.0,
            (i * 53 % 97) as f32 / 48.0 - 1.0,
        );
        csv += &format!("{a},{b},{}\n", (a + 0.5 * b > 0.1) as u8);
    }
    let data = dir.path().join("points.csv");
    common::write(&data, &csv);
    let model = dir.path().join("model.json");
    common::write(
        &model,
        r#"{"input": [2], "layers": [
            {"type": "dense", "units": 8, "activation": "relu"},
            {"type": "dense", "units": 1, "activation": "sigmoid"}],
           "training": {"metrics": ["auc"]}}"#,
    );
    let header = |out: &std::path::Path| -> Vec<String> {
        let h = std::fs::read_to_string(out.join("history.csv")).unwrap();
        h.lines()
            .next()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let (m, d) = (common::p(&model), common::p(&data));
    // The file's section alone.
    let first = dir.path().join("file");
    common::ok(&[
        "train",
        "--model",
        m,
        "--data",
        d,
        "--epochs",
        "2",
        "--quiet",
        "--out",
        common::p(&first),
    ]);
    let cols = header(&first);
    assert!(
        cols.contains(&"auc".into()) && cols.contains(&"val_auc".into()),
        "{cols:?}"
    );
    assert!(!cols.contains(&"precision".into()), "{cols:?}");
    // The flag, and the monitor on a tracked metric, over a model file without a section.
    let plain = dir.path().join("plain.json");
    let text = std::fs::read_to_string(&model).unwrap();
    let section = text.find(",\n           \"training\"").unwrap();
    common::write(&plain, &format!("{}}}", &text[..section]));
    let m = common::p(&plain);
    let out = dir.path().join("flag");
    let o = common::p(&out);
    let text = common::ok(&[
        "train",
        "--model",
        m,
        "--data",
        d,
        "--epochs",
        "2",
        "--out",
        o,
        "--metrics",
        "precision,recall,auc",
        "--monitor",
        "val_auc",
    ]);
    let cols = header(&out);
    for name in [
        "accuracy",
        "precision",
        "recall",
        "auc",
        "val_precision",
        "val_recall",
        "val_auc",
    ] {
        assert!(cols.contains(&name.to_string()), "{name} not in {cols:?}");
    }
    assert!(text.contains("val_auc"), "{text}");
    assert!(out.join("best.safetensors").exists());
    // The saved model remembers its metrics: eval reports them, as Keras's evaluate does.
    let best = out.join("best.safetensors");
    let (code, report, stderr) =
        common::run(&["eval", "--model", common::p(&best), "--data", d, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&report).unwrap();
    for name in ["precision", "recall", "auc"] {
        let v = json["tracked"][name].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&v), "{name}: {report}");
    }
    // A resume that names no metrics keeps the run's; one naming others is refused.
    let resume = [
        "train", "--model", m, "--data", d, "--epochs", "3", "--out", o, "--resume",
    ];
    common::ok(&resume);
    let h = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let last = h.lines().last().unwrap();
    assert!(last.starts_with("3,") && !last.contains(",,"), "{h}");
    assert_eq!(header(&out), cols);
    common::refused(
        &[
            "train",
            "--model",
            m,
            "--data",
            d,
            "--epochs",
            "4",
            "--out",
            o,
            "--resume",
            "--metrics",
            "precision",
        ],
        common::DATA,
        &["precision,recall,auc", "--metrics"],
    );
    common::refused(
        &["train", "xor", "--metrics", "precision,f1"],
        common::USAGE,
        &["f1", "precision, recall, auc"],
    );
    let bad = dir.path().join("bad.json");
    common::write(
        &bad,
        r#"{"input": [2], "layers": [{"type": "dense", "units": 1}], "training": {"metric": ["auc"]}}"#,
    );
    let stderr = common::fails(&["train", "--model", common::p(&bad), "--data", d]);
    assert!(
        stderr.contains("\"training\"") && stderr.contains("metrics"),
        "{stderr}"
    );
}

/// `train --devices`: replicas on several devices train what one device does (the same
/// printed loss and accuracy to 4 places), on the CPU device and on the software adapter
/// twice; bad lists are usage errors that name the entry.
#[test]
fn train_devices_runs_data_parallel_and_refuses_bad_lists() {
    let dir = std::env::temp_dir().join(format!("kiln-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let last = |text: String| {
        text.lines()
            .find(|l| l.starts_with("final training loss"))
            .unwrap_or_else(|| panic!("no final line in {text}"))
            .to_string()
    };
    let base = ["train", "spirals", "--epochs", "2", "--out"];
    let one = last(common::ok(
        &[&base[..], &[&out("one"), "--device", "cpu"]].concat(),
    ));
    let two = common::ok(&[&base[..], &[&out("two"), "--devices", "cpu,cpu"]].concat());
    assert!(two.contains("on cpu + cpu"), "{two}");
    assert_eq!(last(two), one);
    if kiln_device::testing::gpu_device("train_devices").is_some() {
        let gpus = common::ok(&[&base[..], &[&out("gpus"), "--devices", "gpu,gpu"]].concat());
        assert_eq!(last(gpus), one);
    }
    common::refused(
        &[&base[..], &[&out("bad"), "--devices", "cpu,quantum"]].concat(),
        common::USAGE,
        &["--devices", "quantum"],
    );
    let no_gpu = kiln_device::list_adapters()
        .iter()
        .all(|a| a.device_type == "Cpu");
    if no_gpu {
        common::refused(
            &[&base[..], &[&out("all"), "--devices", "all"]].concat(),
            common::USAGE,
            &["no hardware GPU", "cpu,cpu"],
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kiln built without the `mpi` feature, started by an MPI launcher as one of several ranks,
/// refuses to train alone and says how to build it.
#[cfg(not(feature = "mpi"))]
#[test]
fn train_under_mpirun_without_the_mpi_feature_is_refused() {
    let out = common::kiln()
        .args([
            "train",
            "xor",
            "--quiet",
            "--out",
            "/nonexistent/never-written",
        ])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(common::USAGE));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--features mpi") && stderr.contains("2 ranks"),
        "{stderr}"
    );
}
