//! The library examples run as a user runs them, and succeed: a model of one's own with two
//! inputs (trained to >= 90% validation accuracy, saved, reloaded, the same predictions) and a
//! regression with MSE (validation MAE < 0.05). Each example checks its own claim and exits
//! non-zero otherwise. `cargo test` builds the examples next to the test binaries.

mod common;

use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    dir.join("examples").join(name)
}

fn run(name: &str) {
    let path = example(name);
    assert!(
        path.exists(),
        "{} is missing; `cargo test` builds the examples",
        path.display()
    );
    let cwd = std::env::temp_dir().join(format!("kiln-example-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&cwd).unwrap();
    let out = common::command(&path).current_dir(&cwd).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{text}");
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn the_custom_two_input_model_learns_saves_reloads_and_predicts_the_same() {
    run("custom_model");
}

#[test]
fn the_regression_example_reaches_its_error() {
    run("regression");
}

#[test]
fn the_xor_example_learns_through_the_library() {
    run("xor");
}
