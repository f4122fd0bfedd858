//! Bad input through the binary, as a careless or adversarial user gives it: flags out of range
//! or for another job, missing and broken data, edited model files, run folders in use. Each case
//! must end with a non-zero exit code and a message that names the problem, never a panic, an
//! abort or a success. (The model-file and data-file cases of `kiln train --model` are in
//! tests/files.rs; the loaders' own cases in tests/data.rs.)

mod common;

use std::path::{Path, PathBuf};

use common::{ok, p, refused, run, write, DATA, RUNTIME, USAGE};
use kiln::graph::checkpoint::Checkpoint;

/// (exit code, stderr).
fn kiln(args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = run(args);
    (code, stderr)
}

#[test]
fn flags_out_of_range_or_for_another_job_are_refused() {
    let cases: &[(&[&str], i32, &[&str])] = &[
        (
            &["train", "spirals", "--lr", "NaN"],
            USAGE,
            &["--lr", "NaN", "(0, 10]"],
        ),
        (&["train", "xor", "--lr", "inf"], USAGE, &["--lr", "inf"]),
        (
            &["train", "qqp", "--lr", "1e38"],
            USAGE,
            &["1e38", "(0, 10]"],
        ),
        (&["train", "xor", "--lr=-0.1"], USAGE, &["-0.1"]),
        (
            &["train", "xor", "--epochs", "0"],
            USAGE,
            &["--epochs", "0 trains nothing"],
        ),
        (&["train", "xor", "--batch", "0"], USAGE, &["--batch"]),
        (
            &["train", "xor", "--clip-norm", "0"],
            USAGE,
            &["--clip-norm", "positive and finite"],
        ),
        (
            &["train", "xor", "--clip-value", "NaN"],
            USAGE,
            &["--clip-value", "positive and finite"],
        ),
        (
            &["train", "xor", "--schedule", "plateau"],
            USAGE,
            &["--schedule plateau", "no validation set"],
        ),
        (
            &["train", "xor", "--optimizer", "adam", "--lr", "0"],
            USAGE,
            &["--lr", "(0, 10]"],
        ),
        (&["train", "xor", "--keep", "0"], USAGE, &["--keep 0"]),
        (&["train", "mnist", "--limit", "0"], USAGE, &["--limit 0"]),
        (
            &["train", "qqp", "--vocab-cap", "0"],
            USAGE,
            &["--vocab-cap"],
        ),
        (
            &["train", "qqp", "--len", "0"],
            USAGE,
            &["--len 0", "1..=1000"],
        ),
        (
            &["train", "qqp", "--len", "100000"],
            USAGE,
            &["--len 100000"],
        ),
        (
            &["export", "qqp", "--len", "0", "--out", "x.json"],
            USAGE,
            &["--len 0"],
        ),
        (
            &["train", "xor", "--pool", "bogus"],
            USAGE,
            &["possible values: max, avg, stochastic"],
        ),
        (
            &["train", "xor", "--pool", "max", "--data", "/nonexistent"],
            USAGE,
            &["--pool applies to mnist only"],
        ),
        (
            &["train", "spirals", "--arch", "siamese"],
            USAGE,
            &["--arch applies to qqp only"],
        ),
        (
            &["train", "spirals", "--len", "8"],
            USAGE,
            &["--len applies to qqp only"],
        ),
        (
            &["train", "xor", "--strict"],
            USAGE,
            &["--strict applies to qqp and --model --data"],
        ),
        (
            &["train", "qqp", "--task", "regression"],
            USAGE,
            &["--task applies to --model --data only"],
        ),
        (
            &["train", "xor", "--resume", "--force"],
            USAGE,
            &["cannot be used with"],
        ),
        (
            &["train", "bogus"],
            USAGE,
            &["possible values: spirals, xor, mnist, qqp"],
        ),
        (&["bench", "--repeats", "0"], USAGE, &["--repeats 0"]),
        (&["profile", "xor", "--steps", "0"], USAGE, &["--steps 0"]),
        (
            &["--device", "cpu", "tune"],
            USAGE,
            &["the CPU device has nothing to tune"],
        ),
        (
            &["profile", "xor", "--batch", "0"],
            USAGE,
            &["--batch must be at least 1"],
        ),
        (
            &["--device", "quantum", "info"],
            USAGE,
            &["invalid device choice `quantum`"],
        ),
        // A flag's mistake is named before any device is opened (here none would open).
        (
            &[
                "--device",
                "name:nope",
                "eval",
                "mnist",
                "--model",
                "m",
                "--limit",
                "0",
            ],
            USAGE,
            &["--limit 0"],
        ),
        (
            &["--device", "name:nope", "eval", "--model", "m"],
            USAGE,
            &["--data FILE"],
        ),
        (
            &["--device", "name:nope", "predict", "--model", "m"],
            USAGE,
            &["--data FILE (or DIR): what to predict"],
        ),
        (
            &["--device", "name:nope", "bench", "--repeats", "0"],
            USAGE,
            &["--repeats 0"],
        ),
    ];
    for (args, code, needles) in cases {
        refused(args, *code, needles);
    }
}

#[test]
fn missing_and_broken_data_are_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("run");
    refused(
        &["train", "mnist", "--data", "/nonexistent", "--out", p(&out)],
        DATA,
        &[
            "/nonexistent/train-images-idx3-ubyte.gz",
            "--data names a folder",
        ],
    );
    refused(
        &[
            "train",
            "qqp",
            "--data",
            "/nonexistent.tsv",
            "--out",
            p(&out),
        ],
        DATA,
        &["/nonexistent.tsv", "--data names a file"],
    );
    // A Quora TSV whose unclosed quote swallows the records after it.
    let tsv = d.join("quora.tsv");
    std::fs::write(
        &tsv,
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n\
         0\t1\t2\tWhat is one?\tWhat is 1?\t1\n\
         1\t3\t4\t\"An unclosed quote\tAnother\t0\n\
         2\t5\t6\tThird q\tThird other\t0\n",
    )
    .unwrap();
    refused(
        &[
            "train",
            "qqp",
            "--strict",
            "--data",
            p(&tsv),
            "--out",
            p(&out),
        ],
        DATA,
        &["lines 3-4", "unclosed quote"],
    );
    // A gzip bomb in an MNIST folder is refused at its declared size.
    let mnist = d.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let mut idx = 2051u32.to_be_bytes().to_vec();
    for v in [1u32, 28, 28] {
        idx.extend(v.to_be_bytes());
    }
    idx.extend(vec![0u8; 8 << 20]);
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(mnist.join("train-images-idx3-ubyte.gz")).unwrap(),
        flate2::Compression::best(),
    );
    std::io::Write::write_all(&mut e, &idx).unwrap();
    e.finish().unwrap();
    refused(
        &["train", "mnist", "--data", p(&mnist), "--out", p(&out)],
        DATA,
        &["more data than the 1 items its header declares"],
    );
    assert!(!out.exists(), "no run folder for a refused run");
}

/// Trains spirals for one epoch into `out`.
fn spirals(out: &Path) -> PathBuf {
    let (code, stderr) = kiln(&[
        "train",
        "spirals",
        "--epochs",
        "1",
        "--out",
        p(out),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    out.join("model.safetensors")
}

#[test]
fn edited_model_files_are_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = spirals(&d.join("run"));
    let edit = |name: &str, f: &dyn Fn(&mut Checkpoint)| {
        let mut ck = Checkpoint::load(&model).unwrap();
        f(&mut ck);
        let path = d.join(name);
        ck.save(&path).unwrap();
        path
    };
    // NaN weights (a diverged run's): eval and predict refuse them.
    let nan = edit("nan.safetensors", &|ck| ck.params[0].2[0] = f32::NAN);
    refused(
        &["eval", "mnist", "--model", p(&nan)],
        DATA,
        &["NaN or infinite values", "dense_1"],
    );
    // A config edited to sizes its tensors do not have: refused by name and shape, not
    // allocated (a dense layer of 10^11 units would need 800 GB).
    let huge = edit("huge.safetensors", &|ck| {
        let c = ck.metadata.get_mut("model_config").unwrap();
        *c = c.replacen("\"units\":64", "\"units\":100000000000", 1);
    });
    refused(
        &["eval", "mnist", "--model", p(&huge)],
        DATA,
        &["huge.safetensors", "too many elements"],
    );
    let wider = edit("wider.safetensors", &|ck| {
        let c = ck.metadata.get_mut("model_config").unwrap();
        *c = c.replacen("\"units\":64", "\"units\":65", 1);
    });
    refused(
        &["eval", "mnist", "--model", p(&wider)],
        DATA,
        &[
            "shape differs",
            "dense_1.kernel: file [2, 64], model [2, 65]",
        ],
    );
    let garbage = d.join("garbage.safetensors");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a model").unwrap();
    refused(
        &["eval", "mnist", "--model", p(&garbage)],
        DATA,
        &["garbage.safetensors"],
    );
    // A spirals model is not a qqp model.
    refused(
        &["predict", "qqp", "--model", p(&model), "a", "b"],
        DATA,
        &["no vocabulary"],
    );
}

#[test]
fn run_folders_are_never_overwritten_or_resumed_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    refused(
        &["train", "xor", "--resume", "--out", p(&out)],
        USAGE,
        &["nothing to resume"],
    );
    spirals(&out);
    refused(
        &["train", "spirals", "--epochs", "1", "--out", p(&out)],
        USAGE,
        &[
            "holds an earlier run (model.safetensors",
            "--resume",
            "--force",
        ],
    );
    // A folder with a model but no checkpoints is an earlier run too.
    std::fs::remove_dir_all(out.join("checkpoints")).unwrap();
    refused(
        &["train", "spirals", "--epochs", "1", "--out", p(&out)],
        USAGE,
        &["holds an earlier run (model.safetensors"],
    );
    let (code, stderr) = kiln(&[
        "train",
        "spirals",
        "--epochs",
        "1",
        "--out",
        p(&out),
        "--force",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Early stopping's kept best weights, damaged: the resume is refused, naming the file and
    // the way on.
    let es = dir.path().join("es");
    let args = [
        "--device",
        "cpu",
        "train",
        "spirals",
        "--patience",
        "5",
        "--quiet",
        "--out",
    ];
    let (code, stderr) = kiln(&[&args[..], &[p(&es), "--epochs", "2"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let best = es.join("checkpoints/early-stopping-best.safetensors");
    std::fs::write(&best, b"garbage").unwrap();
    refused(
        &[&args[..], &[p(&es), "--epochs", "3", "--resume"]].concat(),
        DATA,
        &[
            "early-stopping-best.safetensors",
            "delete the file to resume",
        ],
    );
    std::fs::remove_file(&best).unwrap();
    let (code, stderr) = kiln(&[&args[..], &[p(&es), "--epochs", "3", "--resume"]].concat());
    assert_eq!(code, 0, "{stderr}");
    // predict's --out must be a file.
    refused(
        &[
            "predict",
            "--model",
            p(&out.join("model.safetensors")),
            "--data",
            "x.csv",
            "--out",
            p(dir.path()),
        ],
        USAGE,
        &["is a folder"],
    );
}

// ---- The new surface: tables, model metadata and outputs (issue: reliability, round two) ----

/// A 200-row table `f1,f2,label` (labels p/n by the sign of f1 + f2) as lines, header first.
fn table_lines() -> Vec<String> {
    let mut lines = vec!["f1,f2,label".to_string()];
    for i in 0..200 {
        let (a, b) = (
            ((i * 37) % 101) as f32 / 50.0 - 1.0,
            ((i * 53) % 97) as f32 / 48.0 - 1.0,
        );
        let label = if a + b > 0.0 { "p" } else { "n" };
        lines.push(format!("{a:.3},{b:.3},{label}"));
    }
    lines
}

const MLP: &str = r#"{"input": [2], "layers": [{"type": "dense", "units": 8, "activation": "relu", "use_bias": true}, {"type": "dense", "units": 2, "activation": "softmax", "use_bias": true}]}"#;

/// Trains the MLP on the 200-row table in `d`: (model file, table, saved model).
fn trained_mlp(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (json, csv, run) = (d.join("mlp.json"), d.join("table.csv"), d.join("mlp-run"));
    write(&json, MLP);
    write(&csv, &(table_lines().join("\n") + "\n"));
    train_one_epoch(&json, &csv, &run);
    (json, csv, run.join("model.safetensors"))
}

/// `kiln train --model json --data csv --out run` for one epoch, which must succeed; its log.
fn train_one_epoch(json: &Path, csv: &Path, run: &Path) -> String {
    ok(&[
        "train",
        "--model",
        p(json),
        "--data",
        p(csv),
        "--out",
        p(run),
        "--epochs",
        "1",
        "--quiet",
    ])
}

/// `kiln train`'s data report line ("data: FILE: N rows (...), ...").
fn data_line(log: &str) -> &str {
    log.lines().find(|l| l.starts_with("data: ")).unwrap_or("")
}

#[test]
fn stray_quotes_in_tables_lose_no_rows_and_merge_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (json, _, model) = trained_mlp(d);
    // A stray quote at the start of line 21: a parser reads it and every line after it as one
    // field. Only line 21 is lost, and it is named.
    let mut lines = table_lines();
    lines[20] = format!("\"{}", lines[20]);
    let stray = d.join("stray.csv");
    write(&stray, &(lines.join("\n") + "\n"));
    let log = train_one_epoch(&json, &stray, &d.join("r1"));
    let line = data_line(&log);
    assert!(
        line.contains("199 rows") && line.contains("1 rows skipped (line 21:"),
        "{log}"
    );
    refused(
        &[
            "train",
            "--strict",
            "--model",
            p(&json),
            "--data",
            p(&stray),
            "--out",
            p(&d.join("r2")),
        ],
        DATA,
        &["line 21", "quote"],
    );
    refused(
        &[
            "predict",
            "--model",
            p(&model),
            "--data",
            p(&stray),
            "--out",
            p(&d.join("p.csv")),
        ],
        DATA,
        &["line 21", "one row per input row"],
    );
    let out = ok(&["eval", "--model", p(&model), "--data", p(&stray)]);
    assert!(
        out.contains("199 rows of") && out.contains("skipped 1 rows") && out.contains("line 21"),
        "{out}"
    );
    refused(
        &[
            "eval",
            "--strict",
            "--model",
            p(&model),
            "--data",
            p(&stray),
        ],
        DATA,
        &["line 21"],
    );

    // Two balanced stray quotes (lines 21 and 30) would merge ten lines into one label: now the
    // two lines holding them are skipped and named, the eight between them kept.
    let mut lines = table_lines();
    lines[20] = lines[20]
        .replacen(",p", ",\"p", 1)
        .replacen(",n", ",\"n", 1);
    lines[29].push('"');
    let balanced = d.join("balanced.csv");
    write(&balanced, &(lines.join("\n") + "\n"));
    let log = train_one_epoch(&json, &balanced, &d.join("r3"));
    let line = data_line(&log);
    assert!(
        line.contains("198 rows")
            && line.contains("2 rows skipped (line 21:")
            && line.contains("line 30:"),
        "{log}"
    );
    for args in [
        vec![
            "train",
            "--strict",
            "--model",
            p(&json),
            "--data",
            p(&balanced),
            "--out",
            p(&d.join("r4")),
        ],
        vec![
            "eval",
            "--strict",
            "--model",
            p(&model),
            "--data",
            p(&balanced),
        ],
        vec![
            "predict",
            "--model",
            p(&model),
            "--data",
            p(&balanced),
            "--out",
            p(&d.join("p.csv")),
        ],
    ] {
        refused(&args, DATA, &["line 21"]);
    }
    assert!(!d.join("p.csv").exists());

    // Text tables go through the same reader.
    let mut text = String::from("question,label\n");
    for i in 0..60 {
        let q = if i % 2 == 0 {
            "how do magnets work"
        } else {
            "best pizza in town"
        };
        text.push_str(&format!("{q} {i},{}\n", i % 2));
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[11] = format!("\"{}", lines[11]);
    let texts = d.join("text.csv");
    write(&texts, &(lines.join("\n") + "\n"));
    let tjson = d.join("text.json");
    write(
        &tjson,
        r#"{"input": [6], "layers": [{"type": "embedding", "vocab": 40, "dim": 4}, {"type": "flatten"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
    );
    let log = train_one_epoch(&tjson, &texts, &d.join("r5"));
    assert!(
        data_line(&log).contains("59 rows") && data_line(&log).contains("(line 12:"),
        "{log}"
    );
    refused(
        &[
            "predict",
            "--model",
            p(&d.join("r5/model.safetensors")),
            "--data",
            p(&texts),
            "--out",
            p(&d.join("t.csv")),
        ],
        DATA,
        &["line 12"],
    );
}

fn png(path: &Path, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(4, 4, image::Luma([value]))
        .save(path)
        .unwrap();
}

const CNN: &str = r#"{"input": [1, 4, 4], "layers": [{"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}]}"#;

#[test]
fn runs_and_models_refuse_data_that_does_not_match_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (json, csv, model) = trained_mlp(d);
    let lines = table_lines();
    // --resume reads the new file the way the run reads its data: reordered columns by name.
    let run = d.join("run");
    train_one_epoch(&json, &csv, &run);
    let reordered: Vec<String> = lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("{},{},{}", f[2], f[1], f[0])
        })
        .collect();
    let reorder = d.join("reorder.csv");
    write(&reorder, &(reordered.join("\n") + "\n"));
    ok(&[
        "train",
        "--model",
        p(&json),
        "--data",
        p(&reorder),
        "--out",
        p(&run),
        "--epochs",
        "2",
        "--resume",
        "--quiet",
    ]);
    // A renamed column, another class set, and other options are refused, naming the difference.
    let renamed = d.join("renamed.csv");
    write(
        &renamed,
        &(format!("feature1,f2,label\n{}\n", lines[1..].join("\n"))),
    );
    let classes = d.join("classes.csv");
    write(&classes, &(lines.join("\n").replace(",p", ",q") + "\n"));
    let resume = |data: &Path, extra: &[&str], code: i32, needles: &[&str]| {
        let mut args = vec![
            "train",
            "--model",
            p(&json),
            "--data",
            p(data),
            "--out",
            p(&run),
            "--epochs",
            "3",
            "--resume",
        ];
        args.extend(extra);
        refused(&args, code, needles);
    };
    resume(&renamed, &[], DATA, &["column `f1`", "feature1"]);
    resume(&classes, &[], DATA, &["`q`", "does not know"]);
    resume(&csv, &["--label", "f1"], USAGE, &["--label f1", "`label`"]);
    resume(
        &csv,
        &["--task", "regression"],
        USAGE,
        &["--task regression"],
    );
    // eval and predict read by name too, and refuse a renamed column.
    refused(
        &["eval", "--model", p(&model), "--data", p(&renamed)],
        DATA,
        &["column `f1`", "feature1"],
    );
    refused(
        &[
            "predict",
            "--model",
            p(&model),
            "--data",
            p(&renamed),
            "--out",
            p(&d.join("x.csv")),
        ],
        DATA,
        &["column `f1`"],
    );
    let out = ok(&["eval", "--model", p(&model), "--data", p(&reorder)]);
    assert!(out.contains("200 rows of"), "{out}");

    // Duplicate header names are refused by every command; --columns may not hold the label.
    let dup = d.join("dup.csv");
    write(&dup, "f1,f1,label\n1,2,p\n3,4,n\n");
    refused(
        &[
            "train",
            "--model",
            p(&json),
            "--data",
            p(&dup),
            "--out",
            p(&d.join("r2")),
        ],
        DATA,
        &["`f1` twice"],
    );
    refused(
        &["eval", "--model", p(&model), "--data", p(&dup)],
        DATA,
        &["`f1` twice"],
    );
    refused(
        &[
            "predict",
            "--model",
            p(&model),
            "--data",
            p(&dup),
            "--out",
            p(&d.join("x.csv")),
        ],
        DATA,
        &["`f1` twice"],
    );
    refused(
        &[
            "train",
            "--model",
            p(&json),
            "--data",
            p(&csv),
            "--columns",
            "f1,label",
            "--out",
            p(&d.join("r2")),
        ],
        DATA,
        &["--columns names `label`, the label column"],
    );

    // Images in nested class folders are read by train, eval and predict alike.
    let imgs = d.join("imgs");
    for i in 0..6u8 {
        png(&imgs.join("dark").join(format!("{i}.png")), 10 + i);
        png(&imgs.join("light/sub").join(format!("{i}.png")), 240 - i);
    }
    let cnn = d.join("cnn.json");
    write(&cnn, CNN);
    let irun = d.join("irun");
    let log = ok(&[
        "train",
        "--model",
        p(&cnn),
        "--data",
        p(&imgs),
        "--out",
        p(&irun),
        "--epochs",
        "1",
        "--quiet",
    ]);
    assert!(
        data_line(&log).contains("12 rows") && data_line(&log).contains("no rows skipped"),
        "{log}"
    );
    let imodel = irun.join("model.safetensors");
    let out = ok(&["eval", "--model", p(&imodel), "--data", p(&imgs)]);
    assert!(out.contains("12 rows of"), "{out}");
    ok(&[
        "predict",
        "--model",
        p(&imodel),
        "--data",
        p(&imgs),
        "--out",
        p(&d.join("i.csv")),
    ]);
    assert_eq!(
        std::fs::read_to_string(d.join("i.csv"))
            .unwrap()
            .lines()
            .count(),
        13
    );
    // An image folder whose classes differ is refused by eval (it panicked), naming the class.
    let other = d.join("other");
    png(&other.join("dark/a.png"), 5);
    png(&other.join("grey/b.png"), 128);
    refused(
        &["eval", "--model", p(&imodel), "--data", p(&other)],
        DATA,
        &["`grey`", "does not know"],
    );
}

/// `model` saved again as `name` in `d` with its `kiln_data` edited by `f`.
fn edit_spec(d: &Path, model: &Path, name: &str, f: &dyn Fn(&mut serde_json::Value)) -> PathBuf {
    let mut ck = Checkpoint::load(model).unwrap();
    let mut spec: serde_json::Value = serde_json::from_str(ck.meta("kiln_data").unwrap()).unwrap();
    f(&mut spec);
    ck.metadata.insert("kiln_data".into(), spec.to_string());
    let path = d.join(name);
    ck.save(&path).unwrap();
    path
}

#[test]
fn edited_data_specs_are_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, csv, model) = trained_mlp(d);
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "short_std",
            &|s| s["source"]["std"] = serde_json::json!([1.0]),
            "2 features but 2 means and 1 deviations",
        ),
        (
            "zero_std",
            &|s| s["source"]["std"][0] = serde_json::json!(0.0),
            "deviation 0",
        ),
        (
            "denormal_std",
            &|s| s["source"]["std"][1] = serde_json::json!(1e-45),
            "deviation 0.000000000000000000000000000000000000000000001",
        ),
        (
            "huge_mean",
            &|s| s["source"]["mean"][0] = serde_json::json!(1e39),
            "not a finite number",
        ),
        (
            "no_features",
            &|s| s["source"]["features"] = serde_json::json!([]),
            "lists no feature columns",
        ),
        (
            "dup_classes",
            &|s| s["classes"] = serde_json::json!(["p", "p"]),
            "names classes `p` twice",
        ),
        (
            "one_class",
            &|s| s["classes"] = serde_json::json!(["p"]),
            "one class",
        ),
        (
            "label_feature",
            &|s| s["source"]["features"][0] = serde_json::json!("label"),
            "label `label` as a feature",
        ),
        (
            "unknown_field",
            &|s| s["extra"] = serde_json::json!(1),
            "unknown field `extra`",
        ),
    ];
    for (name, f, needle) in cases {
        let edited = edit_spec(d, &model, &format!("{name}.safetensors"), *f);
        refused(
            &["eval", "--model", p(&edited), "--data", p(&csv)],
            DATA,
            &["kiln_data", needle],
        );
        refused(
            &[
                "predict",
                "--model",
                p(&edited),
                "--data",
                p(&csv),
                "--out",
                p(&d.join("p.csv")),
            ],
            DATA,
            &["kiln_data"],
        );
    }
    assert!(!d.join("p.csv").exists());
    // A spec that passes its checks but standardises a value past f32 names the row.
    let far = edit_spec(d, &model, "far.safetensors", &|s| {
        s["source"]["mean"][0] = serde_json::json!(3e38);
        s["source"]["std"][0] = serde_json::json!(0.5);
    });
    refused(
        &["eval", "--model", p(&far), "--data", p(&csv)],
        DATA,
        &["data row 1", "past f32's range"],
    );
    // Weights that are finite but overflow the outputs: no NaN predictions are written.
    let mut ck = Checkpoint::load(&model).unwrap();
    for v in ck.params.iter_mut().flat_map(|t| t.2.iter_mut()) {
        *v = 3e38;
    }
    let overflow = d.join("overflow.safetensors");
    ck.save(&overflow).unwrap();
    refused(
        &["eval", "--model", p(&overflow), "--data", p(&csv)],
        DATA,
        &["not finite"],
    );
    refused(
        &[
            "predict",
            "--model",
            p(&overflow),
            "--data",
            p(&csv),
            "--out",
            p(&d.join("p.csv")),
        ],
        DATA,
        &["output for line", "not finite", "nothing was written"],
    );
    assert!(!d.join("p.csv").exists());
}

#[test]
fn qqp_metadata_and_data_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A small Quora TSV; one question is 10 MB on one line without quotes: a long question, not
    // an unclosed quote.
    let mut tsv = String::from("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n");
    for i in 0..40 {
        let q2 = if i == 3 {
            "word ".repeat(2_000_000)
        } else {
            format!("what is {}", i % 7)
        };
        tsv.push_str(&format!(
            "{i}\t{}\t{}\twhat is {}\t{q2}\t{}\n",
            2 * i,
            2 * i + 1,
            i % 5,
            i % 2
        ));
    }
    let data = d.join("q.tsv");
    write(&data, &tsv);
    let run = d.join("qrun");
    let log = ok(&[
        "train",
        "qqp",
        "--data",
        p(&data),
        "--out",
        p(&run),
        "--epochs",
        "1",
        "--quiet",
        "--len",
        "8",
    ]);
    assert!(
        log.contains("40 kept") && log.contains("0 swallowing"),
        "{log}"
    );
    assert!(
        log.len() < 20_000,
        "the log echoes the 10 MB question: {} bytes",
        log.len()
    );
    // Resuming on other data (another vocabulary) is refused.
    let other = d.join("other.tsv");
    write(&other, &tsv.replace("what is", "who was"));
    refused(
        &[
            "train",
            "qqp",
            "--data",
            p(&other),
            "--out",
            p(&run),
            "--epochs",
            "2",
            "--len",
            "8",
            "--resume",
        ],
        DATA,
        &["`vocabulary` differs", "the data"],
    );
    // An edited preprocessing is refused before the model is used.
    let model = run.join("model.safetensors");
    let mut ck = Checkpoint::load(&model).unwrap();
    let pre = ck
        .meta("qqp_preprocess")
        .unwrap()
        .replace("\"test_size\":0.2", "\"test_size\":1.5");
    ck.metadata.insert("qqp_preprocess".into(), pre);
    let edited = d.join("edited.safetensors");
    ck.save(&edited).unwrap();
    refused(
        &["eval", "qqp", "--model", p(&edited), "--data", p(&data)],
        DATA,
        &["test_size 1.5", "(0, 1)"],
    );
}

#[cfg(unix)]
#[test]
fn outputs_never_replace_special_files_and_follow_the_umask() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, csv, model) = trained_mlp(d);
    refused(
        &[
            "predict",
            "--model",
            p(&model),
            "--data",
            p(&csv),
            "--out",
            "/dev/null",
            "--force",
        ],
        USAGE,
        &["/dev/null is a device"],
    );
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    // Files are created with the process's umask (the tests run under 022 or stricter), not 0600.
    let preds = d.join("preds.csv");
    ok(&[
        "predict",
        "--model",
        p(&model),
        "--data",
        p(&csv),
        "--out",
        p(&preds),
    ]);
    let mode = std::fs::metadata(&preds).unwrap().permissions().mode() & 0o777;
    let umask_allows_group_read = mode & 0o040 != 0 || mode == 0o600;
    assert!(
        mode & 0o400 != 0 && umask_allows_group_read,
        "mode {mode:o}"
    );
    let history = std::fs::metadata(d.join("mlp-run/history.png"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(history, mode, "history.png {history:o} vs {mode:o}");
    // export writes only with --force over an existing file; a failing path is named as it is.
    let out = d.join("export.json");
    write(&out, "keep me");
    refused(
        &["export", "qqp", "--out", p(&out)],
        USAGE,
        &["exists", "--force"],
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    refused(
        &[
            "predict",
            "--model",
            p(&model),
            "--data",
            p(&csv),
            "--out",
            "/proc/kiln-x.csv",
        ],
        RUNTIME,
        &["cannot write /proc/kiln-x.csv", "in /proc"],
    );
    // A closed stdout (`| head -1`) ends quietly with success; a full one is an error.
    let mut child = common::kiln()
        .args(["model", "mnist"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(first.trim(), "{");
    assert!(
        out.status.success(),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if Path::new("/dev/full").exists() {
        let out = common::kiln()
            .args(["model", "mnist"])
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("cannot write to standard output") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn answers_come_at_once_and_lead_somewhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = table_lines();
    let json = d.join("mlp.json");
    write(&json, MLP);
    let train = |data: &Path| -> (i32, String) {
        let (code, stdout, stderr) = run(&[
            "train",
            "--model",
            p(&json),
            "--data",
            p(data),
            "--out",
            p(&d.join("run")),
            "--epochs",
            "1",
            "--quiet",
            "--force",
        ]);
        (code, stdout + &stderr)
    };
    // 100,000 dense layers: refused at once by the layer limit.
    let layer = r#"{"type": "dense", "units": 2}"#;
    let huge = d.join("huge.json");
    write(
        &huge,
        &format!(
            r#"{{"input": [2], "layers": [{}]}}"#,
            vec![layer; 100_000].join(",")
        ),
    );
    let start = std::time::Instant::now();
    refused(
        &["train", "--model", p(&huge), "--data", "x.csv"],
        DATA,
        &["more than 10000 layers"],
    );
    assert!(start.elapsed().as_secs_f32() < 2.0, "{:?}", start.elapsed());
    // A number too large for f32 is named as such, not as text.
    let big = d.join("big.csv");
    write(&big, &format!("{}\n1e300,0.5,p\n", lines.join("\n")));
    let (code, log) = train(&big);
    assert_eq!(code, 0, "{log}");
    assert!(
        data_line(&log).contains("line 202: column `f1` is 1e300, beyond the range of f32"),
        "{log}"
    );
    // A semicolon-separated file is read as one, and the report says so.
    let semi = d.join("semi.csv");
    write(&semi, &(lines.join("\n").replace(',', ";") + "\n"));
    let (code, log) = train(&semi);
    assert_eq!(code, 0, "{log}");
    assert!(
        data_line(&log).contains("200 rows") && log.contains("semicolon-separated"),
        "{log}"
    );
    // A file with no delimiter at all gets advice about its columns, not about "input": [0].
    let single = d.join("single.csv");
    write(&single, "label\np\nn\n");
    let (code, log) = train(&single);
    assert_eq!(code, DATA);
    assert!(
        log.contains("only column is the label") && !log.contains("[0]"),
        "{log}"
    );
    // A table of one class gets one piece of advice that does not go in a circle.
    let one = d.join("one.csv");
    write(
        &one,
        &(lines
            .iter()
            .map(|l| l.replace(",n", ",p"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"),
    );
    let (code, log) = train(&one);
    assert_eq!(code, DATA);
    assert!(log.contains("one class") && !log.contains("units"), "{log}");
    // Echoed cells are capped: a 10 MB text cell in a numeric table.
    let long = d.join("long.csv");
    write(
        &long,
        &format!("f1,f2,label\n{},1,p\n1,2,n\n", "x".repeat(10 << 20)),
    );
    let (code, log) = train(&long);
    assert_eq!(code, DATA);
    assert!(
        log.contains("holds text") && log.len() < 4_000,
        "{} bytes",
        log.len()
    );
    // Fields a model file leaves out are said, not silently taken.
    write(
        &json,
        r#"{"input": [2], "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}"#,
    );
    let clean = d.join("clean.csv");
    write(&clean, &(lines.join("\n") + "\n"));
    let (code, log) = train(&clean);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("fields left out take their defaults: layers[1] (dense): use_bias true"),
        "{log}"
    );
}
