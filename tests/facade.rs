//! The library is one dependency that brings none of the command line's: `kiln` (crates/kiln)
//! depends on kiln-device, kiln-graph, kiln-train and kiln-data, and its dependency tree holds no
//! clap (the command line's parser) and no kiln-cli.

use std::process::Command;

/// The names of every package in the normal (non-dev, non-build) dependency tree of `package`.
fn normal_dependencies(package: &str) -> Vec<String> {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let out = Command::new(cargo)
        .args([
            "tree", "-p", package, "-e", "normal", "--prefix", "none", "--locked",
        ])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_library_brings_none_of_the_command_lines_dependencies() {
    let deps = normal_dependencies("kiln");
    for wanted in [
        "kiln",
        "kiln-device",
        "kiln-graph",
        "kiln-train",
        "kiln-data",
        "kiln-shaders",
        "wgpu",
    ] {
        assert!(
            deps.iter().any(|d| d == wanted),
            "{wanted} missing from {deps:?}"
        );
    }
    for cli_only in ["kiln-cli", "clap", "clap_builder"] {
        assert!(
            !deps.iter().any(|d| d == cli_only),
            "the library pulls {cli_only}: {deps:?}"
        );
    }
    // The command line does use them (so the check above is not vacuous).
    let cli = normal_dependencies("kiln-cli");
    for cli_only in ["clap", "clap_builder"] {
        assert!(
            cli.iter().any(|d| d == cli_only),
            "{cli_only} not in {cli:?}"
        );
    }
}
