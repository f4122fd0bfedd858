//! The command line as types: every command refuses every flag it does not take, at parse time
//! (clap: a flag of another command) or at validation (a job flag for another job, a flag that
//! does not go with the others), before any file is read or device opened; and exit codes
//! follow the documented classes (README, `kiln_cli::cli`): 0 success, 1 runtime, 2 usage, 3 data.

mod common;

use std::collections::BTreeSet;

use clap::{CommandFactory, Parser};
use common::{DATA, RUNTIME, USAGE};
use kiln_cli::cli::{Cli, CliError};
use kiln_cli::models::JobName;

/// The arguments each command needs besides flags, so that only the flag under test is wrong.
fn base(command: &str) -> Vec<&'static str> {
    match command {
        "train" => vec!["train"],
        "model" => vec!["model", "qqp"],
        "eval" => vec!["eval", "--model", "m.safetensors"],
        "predict" => vec!["predict", "--model", "m.safetensors"],
        "export" => vec!["export", "qqp", "--out", "x.json"],
        "profile" => vec!["profile", "qqp"],
        other => vec![Box::leak(other.to_string().into_boxed_str())],
    }
}

/// Each subcommand's long flags.
fn flags_by_command() -> Vec<(String, BTreeSet<String>)> {
    Cli::command()
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .map(|c| {
            let flags = c
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !["help", "version", "device"].contains(l))
                .map(str::to_string)
                .collect();
            (c.get_name().to_string(), flags)
        })
        .collect()
}

#[test]
fn every_command_refuses_the_flags_of_the_others_at_parse_time() {
    let commands = flags_by_command();
    assert_eq!(commands.len(), 9, "{commands:?}");
    let all: BTreeSet<&String> = commands.iter().flat_map(|(_, f)| f).collect();
    let mut checked = 0;
    for (command, flags) in &commands {
        for flag in all.iter().filter(|f| !flags.contains(**f)) {
            let mut args = vec!["kiln"];
            args.extend(base(command));
            let flag = format!("--{flag}");
            args.extend([flag.as_str(), "1"]);
            let e = Cli::try_parse_from(&args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}: {e}"
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked} cases");
}

/// Parses and validates `args` (after `kiln`), as the binary does before it reads anything.
fn validate(args: &[&str]) -> Result<(), CliError> {
    let cli = Cli::try_parse_from(std::iter::once("kiln").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    cli.command.validate()
}

#[test]
fn every_command_that_takes_a_job_refuses_the_flags_of_other_jobs() {
    let job_flags: [(&str, &str, JobName); 4] = [
        ("--pool", "avg", JobName::Mnist),
        ("--arch", "siamese", JobName::Qqp),
        ("--len", "50", JobName::Qqp),
        ("--vocab-cap", "100", JobName::Qqp),
    ];
    for command in ["train", "model", "profile"] {
        for job in [JobName::Spirals, JobName::Xor, JobName::Mnist, JobName::Qqp] {
            for (flag, value, only) in job_flags {
                let args = [command, job.as_str(), flag, value];
                let result = validate(&args);
                if job == only {
                    assert!(result.is_ok(), "{args:?}: {result:?}");
                } else {
                    match result {
                        Err(CliError::Usage(m)) => {
                            assert!(m.contains(&format!("{flag} applies to")), "{args:?}: {m}")
                        }
                        other => panic!("{args:?}: {other:?}"),
                    }
                }
            }
        }
    }
    // The example the issue found: all three ignored before.
    let e = validate(&[
        "profile", "xor", "--pool", "avg", "--arch", "siamese", "--len", "50",
    ]);
    assert!(matches!(e, Err(CliError::Usage(_))), "{e:?}");
}

#[test]
fn flags_that_do_not_go_with_the_others_are_refused() {
    let usage = |args: &[&str], needle: &str| match validate(args) {
        Err(CliError::Usage(m)) => assert!(m.contains(needle), "{args:?}: {m}"),
        other => panic!("{args:?}: {other:?}"),
    };
    usage(
        &[
            "predict", "qqp", "--model", "m", "Q1", "Q2", "--out", "x", "--force",
        ],
        "--out and --force apply to predictions of a file",
    );
    usage(
        &["predict", "qqp", "--model", "m", "Q1"],
        "give two questions",
    );
    usage(&["predict", "--model", "m"], "--data FILE");
    usage(
        &["eval", "--model", "m", "--data", "d", "--limit", "3"],
        "--pictures and --limit",
    );
    usage(
        &["eval", "mnist", "--model", "m", "--strict"],
        "--strict applies to",
    );
    usage(
        &["eval", "qqp", "--model", "m", "--pictures", "p"],
        "--pictures applies to",
    );
    usage(
        &["model", "mnist", "--data", "d"],
        "--data applies to qqp only",
    );
    usage(
        &["train", "xor", "--task", "regression"],
        "--task applies to --model --data only",
    );
    usage(
        &[
            "train", "--model", "m.json", "--data", "d.csv", "--len", "8",
        ],
        "shape the built-in jobs",
    );
    usage(
        &["train", "mnist", "--model", "m.json", "--pool", "avg"],
        "with --model",
    );
    assert!(validate(&["predict", "qqp", "--model", "m", "Q1", "Q2"]).is_ok());
    assert!(validate(&["predict", "qqp", "--model", "m", "--data", "d", "--out", "s.csv"]).is_ok());
}

/// (exit code, stderr) of the binary.
fn exit(args: &[&str]) -> (i32, String) {
    let out = common::kiln().args(args).output().expect("run kiln");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_follow_the_documented_classes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let missing = missing.to_str().unwrap();
    let cases: &[(&[&str], i32)] = &[
        (&["model", "xor"], 0),
        (&["train", "xor", "--pool", "avg"], USAGE),
        (&["train", "xor", "--no-such-flag"], USAGE),
        (&["--device", "quantum", "info"], USAGE),
        (&["profile", "xor", "--steps", "0"], USAGE),
        (&["eval", "mnist", "--model", missing], DATA),
        (&["predict", "--model", missing, "--data", missing], DATA),
        (&["--device", "name:no-such-adapter", "info"], RUNTIME),
    ];
    for (args, code) in cases {
        let (got, stderr) = exit(args);
        assert_eq!(got, *code, "kiln {args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
