//! The row-count invariant of `kiln train --model --data`, `kiln eval` and `kiln predict` on
//! numeric and text tables, under generated tables with quotes, delimiters and line ends injected
//! at random: rows used + rows skipped = records in the file (every line accounted for by the
//! reader, `src/data/table.rs`), `--strict` and `predict` either take every row or refuse naming
//! a line, and `predict` writes one row per input row, in order. A clean table loses nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln::device::Device;
use kiln_cli::data::table;
use kiln_cli::files::{self, FileOptions};
use kiln_cli::models::ModelConfig;
use proptest::prelude::*;

const NUMERIC: &str = r#"{"input": [2], "layers": [{"type": "dense", "units": 4, "activation": "relu"}, {"type": "dense", "units": 2, "activation": "softmax"}]}"#;
const TEXT: &str = r#"{"input": [4], "layers": [{"type": "embedding", "vocab": 30, "dim": 3}, {"type": "flatten"}, {"type": "dense", "units": 2, "activation": "softmax"}]}"#;

/// A table's cells: (f1 (None: left empty), f2, text, label (None: left empty)) per row.
type Rows = Vec<(Option<f32>, f32, String, Option<bool>)>;

fn quoted(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

/// The table as CSV: numeric (`f1,f2,label`) or text (`text,label`).
fn render(rows: &Rows, text: bool) -> String {
    let mut out = String::from(if text {
        "text,label\n"
    } else {
        "f1,f2,label\n"
    });
    for (a, b, t, l) in rows {
        let label = match l {
            Some(true) => "yes",
            Some(false) => "no",
            None => "",
        };
        let a = a.map_or(String::new(), |a| a.to_string());
        if text {
            out.push_str(&format!("{},{label}\n", quoted(t)));
        } else {
            out.push_str(&format!("{a},{b},{label}\n"));
        }
    }
    out
}

/// Inserts each (position, byte) into the body (after the header), positions taken modulo its
/// length.
fn corrupt(csv: &str, injections: &[(usize, u8)]) -> Vec<u8> {
    let header = csv.find('\n').map_or(csv.len(), |i| i + 1);
    let mut bytes = csv.as_bytes().to_vec();
    for &(at, b) in injections {
        let body = bytes.len() - header;
        bytes.insert(header + at % (body + 1), b);
    }
    bytes
}

fn rows() -> impl Strategy<Value = Rows> {
    // Both labels appear: the first two rows hold one of each.
    let word = prop::sample::select(vec!["red", "blue", "a, b", "say \"hi\"", "x y", "é"]);
    // Now and then a row has an empty feature or label: a dirty table's rows to skip.
    prop::collection::vec(
        (
            prop::option::weighted(0.9, -5.0f32..5.0),
            -5.0f32..5.0,
            prop::collection::vec(word, 1..4),
            prop::option::weighted(0.9, any::<bool>()),
        ),
        4..30,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (a, b, w, l))| match i {
                0 | 1 => (Some(a.unwrap_or(0.0)), b, w.join(" "), Some(i == 0)),
                _ => (a, b, w.join(" "), l),
            })
            .collect()
    })
}

fn injections() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec(
        (
            any::<usize>(),
            prop::sample::select(vec![b'"', b',', b'\n', b'\r', b';', b' ']),
        ),
        0..4,
    )
}

/// A model trained once per kind on a clean table, through the binary.
fn trained(text: bool) -> PathBuf {
    static MODELS: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, numeric, texts) = MODELS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let clean: Rows = (0..40)
            .map(|i| {
                let (a, b) = (i as f32 / 10.0, -(i as f32) / 7.0);
                (Some(a), b, format!("red blue {}", i % 3), Some(i % 2 == 0))
            })
            .collect();
        let mut out = vec![];
        for (kind, json, is_text) in [("numeric", NUMERIC, false), ("text", TEXT, true)] {
            let (model, data, run) = (
                dir.path().join(format!("{kind}.json")),
                dir.path().join(format!("{kind}.csv")),
                dir.path().join(kind),
            );
            std::fs::write(&model, json).unwrap();
            std::fs::write(&data, render(&clean, is_text)).unwrap();
            let status = common::kiln()
                .args([
                    "--device", "cpu", "train", "--quiet", "--epochs", "1", "--model",
                ])
                .args([&model, &Path::new("--data").to_path_buf(), &data])
                .args([Path::new("--out"), &run])
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "{}",
                String::from_utf8_lossy(&status.stderr)
            );
            out.push(run.join("model.safetensors"));
        }
        (dir, out[0].clone(), out[1].clone())
    });
    if text {
        texts.clone()
    } else {
        numeric.clone()
    }
}

/// What the reader makes of `bytes`: (rows, bad rows), or None when it refuses the whole file.
fn reader_counts(bytes: &[u8]) -> Option<(usize, usize)> {
    table::parse(bytes, b',')
        .ok()
        .map(|t| (t.rows.len(), t.bad.len()))
}

/// "N rows skipped" or "no rows skipped" from a data report.
fn skipped_in(report: &str) -> usize {
    if report.contains("no rows skipped") {
        return 0;
    }
    let i = report.find(" rows skipped").expect("a skip count");
    let start = report[..i].rfind(' ').map_or(0, |j| j + 1);
    report[start..i].parse().unwrap()
}

/// The rows of an uncorrupted table that training can use: a label, and every feature.
fn usable(rows: &Rows, text: bool) -> usize {
    rows.iter()
        .filter(|(a, _, _, l)| l.is_some() && (text || a.is_some()))
        .count()
}

/// Checks one generated table through train (with and without --strict), eval and predict.
fn check(rows: &Rows, text: bool, injections: &[(usize, u8)]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.csv");
    let bytes = corrupt(&render(rows, text), injections);
    std::fs::write(&data, &bytes).unwrap();
    let config = ModelConfig::from_json(if text { TEXT } else { NUMERIC }).unwrap();
    let counts = reader_counts(&bytes);
    let records = counts.map(|(r, b)| r + b);
    let refusal_names_the_problem = |e: &str| {
        assert!(!e.is_empty() && e.len() < 4_000, "refusal: {e}");
    };
    for strict in [false, true] {
        let opts = FileOptions {
            strict,
            ..FileOptions::default()
        };
        match files::job(config.clone(), &data, 0, &opts) {
            Ok(job) => {
                let report = job.data_report.as_deref().unwrap_or_default();
                let used = job.train.len() + job.val.as_ref().map_or(0, |v| v.len());
                let skipped = skipped_in(report);
                assert_eq!(
                    Some(used + skipped),
                    records,
                    "train strict={strict}: {report}"
                );
                if strict {
                    assert_eq!(skipped, 0, "{report}");
                }
                if injections.is_empty() {
                    assert_eq!(used, usable(rows, text), "a clean table: {report}");
                }
            }
            Err(e) => {
                let holes = usable(rows, text) < rows.len();
                assert!(
                    !injections.is_empty() || (strict && holes),
                    "a clean table was refused: {e}"
                );
                if strict && counts.is_some_and(|(_, bad)| bad > 0) {
                    assert!(e.contains("line "), "strict refusal names no line: {e}");
                }
                refusal_names_the_problem(&e);
            }
        }
    }
    let device = Device::cpu();
    let model = trained(text);
    match files::eval(&device, &model, &data, false) {
        Ok(r) => assert_eq!(Some(r.rows + r.skipped), records, "eval: {r:?}"),
        Err(e) => {
            assert!(!injections.is_empty(), "eval refused a clean table: {e}");
            refusal_names_the_problem(&e);
        }
    }
    let out = dir.path().join("predictions.csv");
    match files::predict(&device, &model, &data, &out, false) {
        Ok(n) => {
            let t = table::parse(&bytes, b',').unwrap();
            assert!(
                t.bad.is_empty(),
                "predict wrote rows past bad ones: {:?}",
                t.bad
            );
            assert_eq!(n, t.rows.len());
            let written = table::parse(&std::fs::read(&out).unwrap(), b',').unwrap();
            let lines: Vec<String> = written.rows.iter().map(|r| r.cells[0].clone()).collect();
            let want: Vec<String> = t.rows.iter().map(|r| r.lines.first.to_string()).collect();
            assert_eq!(lines, want, "predict's rows are the input's, in order");
        }
        Err(e) => {
            let holes = !text && rows.iter().any(|r| r.0.is_none());
            assert!(
                !injections.is_empty() || holes,
                "predict refused a clean table: {e}"
            );
            assert!(!out.exists(), "a refused predict wrote {}", out.display());
            refusal_names_the_problem(&e);
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("KILN_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn numeric_tables_keep_every_row_or_name_the_line(rows in rows(), inj in injections()) {
        check(&rows, false, &inj);
    }

    #[test]
    fn text_tables_keep_every_row_or_name_the_line(rows in rows(), inj in injections()) {
        check(&rows, true, &inj);
    }
}

/// The label is the column named `label` whatever the columns' order (a table of points `x, y`
/// and a `label` must not learn to predict `y`), else `target`, `class` or `y`, else the last; a
/// loss that does not fit the label names the column and the flag that picks another.
#[test]
fn the_label_column_is_chosen_by_name_before_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = ModelConfig::from_json(
        r#"{"input": [2], "layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}"#,
    )
    .unwrap();
    let label_of = |header: &str, rows: &[&str]| {
        let path = dir.path().join(format!("{}.csv", header.replace(',', "_")));
        std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        files::job(config.clone(), &path, 0, &FileOptions::default())
            .map(|job| job.data_report.unwrap_or_default())
    };
    let rows = [
        "0.1,0.5,0",
        "0.9,0.7,1",
        "0.2,0.3,0",
        "0.8,0.2,1",
        "0.4,0.9,0",
    ];
    for header in ["x,y,label", "label,x,y", "y,target,x"] {
        let cols: Vec<&str> = header.split(',').collect();
        let want = if cols.contains(&"label") {
            "label"
        } else {
            "target"
        };
        let at = cols.iter().position(|c| *c == want).unwrap();
        // Put the 0/1 labels in the wanted column.
        let rows: Vec<String> = rows
            .iter()
            .map(|r| {
                let mut cells: Vec<&str> = r.split(',').collect();
                cells.swap(at, 2);
                cells.join(",")
            })
            .collect();
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let report = label_of(header, &rows).unwrap();
        assert!(
            report.contains(&format!("label `{want}`")),
            "{header}: {report}"
        );
    }
    let err = match label_of("a,b,y", &["0.1,0.5,0.3", "0.9,0.7,1.5", "0.2,0.3,2.5"]) {
        Err(e) => e,
        Ok(report) => panic!("a one-unit classifier on 3 classes: {report}"),
    };
    assert!(
        err.contains("the label column is `y`") && err.contains("--label"),
        "{err}"
    );
}
