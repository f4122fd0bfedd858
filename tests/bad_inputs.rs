//! Bad input through the binary, as a careless or adversarial user gives it: flags out of range
//! or for another job, missing and broken data, edited model files, run folders in use. Each case
//! must end with a non-zero exit code and a message that names the problem, never a panic, an
//! abort or a success. (The model-file and data-file cases of `kiln train --model` are in
//! tests/files.rs; the loaders' own cases in tests/data.rs.)

mod common;

use std::path::{Path, PathBuf};

use kiln::graph::checkpoint::Checkpoint;

/// (exit code, stderr).
fn kiln(args: &[&str]) -> (i32, String) {
    let out = common::kiln().args(args).output().expect("run kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(args: &[&str], code: i32, needles: &[&str]) {
    let (got, stderr) = kiln(args);
    assert_eq!(got, code, "kiln {args:?}: exit {got}\n{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "kiln {args:?} panicked:\n{stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "kiln {args:?}: `{n}` not in\n{stderr}");
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn flags_out_of_range_or_for_another_job_are_refused() {
    let cases: &[(&[&str], i32, &[&str])] = &[
        (
            &["train", "spirals", "--lr", "NaN"],
            1,
            &["--lr", "NaN", "(0, 10]"],
        ),
        (&["train", "xor", "--lr", "inf"], 1, &["--lr", "inf"]),
        (&["train", "qqp", "--lr", "1e38"], 1, &["1e38", "(0, 10]"]),
        (&["train", "xor", "--lr=-0.1"], 1, &["-0.1"]),
        (
            &["train", "xor", "--epochs", "0"],
            1,
            &["--epochs", "0 trains nothing"],
        ),
        (&["train", "xor", "--batch", "0"], 1, &["--batch"]),
        (&["train", "xor", "--keep", "0"], 1, &["--keep 0"]),
        (&["train", "mnist", "--limit", "0"], 1, &["--limit 0"]),
        (&["train", "qqp", "--vocab-cap", "0"], 1, &["--vocab-cap"]),
        (&["train", "qqp", "--len", "0"], 1, &["--len 0", "1..=1000"]),
        (&["train", "qqp", "--len", "100000"], 1, &["--len 100000"]),
        (
            &["export", "qqp", "--len", "0", "--out", "x.json"],
            1,
            &["--len 0"],
        ),
        (
            &["train", "xor", "--pool", "bogus"],
            2,
            &["possible values: max, avg, stochastic"],
        ),
        (
            &["train", "xor", "--pool", "max", "--data", "/nonexistent"],
            1,
            &["--pool applies to mnist only"],
        ),
        (
            &["train", "spirals", "--arch", "siamese"],
            1,
            &["--arch applies to qqp only"],
        ),
        (
            &["train", "spirals", "--len", "8"],
            1,
            &["--len applies to qqp only"],
        ),
        (
            &["train", "xor", "--strict"],
            1,
            &["--strict applies to qqp and --model --data"],
        ),
        (
            &["train", "qqp", "--task", "regression"],
            1,
            &["--task applies to --model --data only"],
        ),
        (
            &["train", "xor", "--resume", "--force"],
            2,
            &["cannot be used with"],
        ),
        (
            &["train", "bogus"],
            2,
            &["possible values: spirals, xor, mnist, qqp"],
        ),
        (&["bench", "--repeats", "0"], 1, &["--repeats 0"]),
        (&["profile", "xor", "--steps", "0"], 1, &["--steps 0"]),
        (
            &["--device", "cpu", "tune"],
            1,
            &["the CPU device has nothing to tune"],
        ),
        (
            &["profile", "xor", "--batch", "0"],
            1,
            &["--batch must be at least 1"],
        ),
        (
            &["--device", "quantum", "info"],
            1,
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
            1,
            &["--limit 0"],
        ),
        (
            &["--device", "name:nope", "eval", "--model", "m"],
            1,
            &["--data FILE"],
        ),
        (
            &["--device", "name:nope", "predict", "--model", "m"],
            1,
            &["--data FILE (or DIR): what to predict"],
        ),
        (
            &["--device", "name:nope", "bench", "--repeats", "0"],
            1,
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
        1,
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
        1,
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
        1,
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
        1,
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
        1,
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
        1,
        &["huge.safetensors", "too many elements"],
    );
    let wider = edit("wider.safetensors", &|ck| {
        let c = ck.metadata.get_mut("model_config").unwrap();
        *c = c.replacen("\"units\":64", "\"units\":65", 1);
    });
    refused(
        &["eval", "mnist", "--model", p(&wider)],
        1,
        &[
            "shape differs",
            "dense_1.kernel: file [2, 64], model [2, 65]",
        ],
    );
    let garbage = d.join("garbage.safetensors");
    std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a model").unwrap();
    refused(
        &["eval", "mnist", "--model", p(&garbage)],
        1,
        &["garbage.safetensors"],
    );
    // A spirals model is not a qqp model.
    refused(
        &["predict", "qqp", "--model", p(&model), "a", "b"],
        1,
        &["no vocabulary"],
    );
}

#[test]
fn run_folders_are_never_overwritten_or_resumed_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    refused(
        &["train", "xor", "--resume", "--out", p(&out)],
        1,
        &["nothing to resume"],
    );
    spirals(&out);
    refused(
        &["train", "spirals", "--epochs", "1", "--out", p(&out)],
        1,
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
        1,
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
        1,
        &["is a folder"],
    );
}
