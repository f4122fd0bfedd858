//! What the tests that run kiln's programs as a user would (the `kiln` binary, the examples)
//! share: a command whose kernel choices follow the shape rules, away from the user's cache.

#![allow(dead_code)] // each test binary uses its own share of these

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// The tuning cache file the programs the tests run are pointed at: in cargo's scratch folder
/// for tests (`target/tmp`), never the user's own (`~/.cache/kiln/tune`).
pub const TUNE_CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/kiln-tune.txt");

/// `program` with autotuning off (`KILN_AUTOTUNE=0`: every kernel choice by its shape rule) and
/// the tests' cache file. Its runs then neither depend on what a cache holds (a warm cache once
/// hid a failure that a fresh machine showed) nor pay for measuring, which took 22 s of the CLI
/// tests on lavapipe. Every choice gives the same bits (the device crate's tests pin each one),
/// and `kiln tune`'s own test measures with a cache of its own.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env("KILN_AUTOTUNE", "0")
        .env("KILN_TUNE_CACHE", TUNE_CACHE);
    command
}

/// The `kiln` binary, as [`command`] sets it up.
pub fn kiln() -> Command {
    command(env!("CARGO_BIN_EXE_kiln"))
}

/// `kiln`'s exit code for a runtime failure (no device, a diverged run, a write that failed).
pub const RUNTIME: i32 = 1;
/// `kiln`'s exit code for a usage error (a flag the command or job does not take, a value out of
/// range), as clap's own.
pub const USAGE: i32 = 2;
/// `kiln`'s exit code for a data error (a data, model or checkpoint file that cannot be used).
pub const DATA: i32 = 3;

/// Runs `kiln args`: (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = kiln().args(args).output().expect("run kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `kiln args`: (success, stdout, stderr).
pub fn kiln_ok(args: &[&str]) -> (bool, String, String) {
    let (code, stdout, stderr) = run(args);
    (code == 0, stdout, stderr)
}

/// Runs `kiln args` and expects success; returns stdout and stderr together.
pub fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = run(args);
    assert_eq!(code, 0, "kiln {args:?}: exit {code}\n{stderr}");
    stdout + &stderr
}

/// Asserts that stderr shows no panic.
fn no_panic(args: &[&str], stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "kiln {args:?} panicked:\n{stderr}"
    );
}

/// Runs `kiln args` and expects a failure (any class) without a panic; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let (code, _, stderr) = run(args);
    assert_ne!(code, 0, "kiln {args:?} should have failed");
    no_panic(args, &stderr);
    stderr
}

/// Runs `kiln args` and expects exit `code` (a class: [`USAGE`], [`DATA`], [`RUNTIME`]) with
/// every needle in stderr and no panic.
pub fn refused(args: &[&str], code: i32, needles: &[&str]) {
    let (got, _, stderr) = run(args);
    assert_eq!(got, code, "kiln {args:?}: exit {got}\n{stderr}");
    no_panic(args, &stderr);
    for n in needles {
        assert!(stderr.contains(n), "kiln {args:?}: `{n}` not in\n{stderr}");
    }
}

/// A path as the argument it is.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes a test file.
pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}
