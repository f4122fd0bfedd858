//! What the tests that run kiln's programs as a user would (the `kiln` binary, the examples)
//! share: a command whose kernel choices follow the shape rules, away from the user's cache.

use std::ffi::OsStr;
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
#[allow(dead_code)] // tests/examples.rs runs the examples only
pub fn kiln() -> Command {
    command(env!("CARGO_BIN_EXE_kiln"))
}

/// `kiln`'s exit code for a runtime failure (no device, a diverged run, a write that failed).
#[allow(dead_code)]
pub const RUNTIME: i32 = 1;
/// `kiln`'s exit code for a usage error (a flag the command or job does not take, a value out of
/// range), as clap's own.
#[allow(dead_code)]
pub const USAGE: i32 = 2;
/// `kiln`'s exit code for a data error (a data, model or checkpoint file that cannot be used).
#[allow(dead_code)]
pub const DATA: i32 = 3;
