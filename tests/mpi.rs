//! `mpirun -np 2 kiln train ...` (the `mpi` feature; `.ci/run` installs Open MPI and runs these
//! with `--features mpi`): two ranks train what one process with the same global batch trains,
//! a killed rank ends the job, and a killed two-rank run resumes on one or two ranks.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kiln_graph::checkpoint::Checkpoint;

fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &ranks.to_string(),
    ])
    .arg(env!("CARGO_BIN_EXE_kiln"))
    // Containers often forbid the cross-process memory copy Open MPI's shared-memory transport
    // tries first; copying through the shared segment works everywhere.
    .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
    .env("KILN_AUTOTUNE", "0")
    .env("KILN_TUNE_CACHE", common::TUNE_CACHE);
    c
}

/// `kiln args` on `ranks` ranks (1: no mpirun); its output, which must be a success.
fn train(ranks: usize, args: &[&str]) -> Output {
    let out = match ranks {
        1 => common::kiln().args(args).output(),
        n => mpirun(n).args(args).output(),
    }
    .expect("run kiln");
    assert!(
        out.status.success(),
        "{ranks} rank(s), kiln {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = Checkpoint::load(path).unwrap();
    ck.params.into_iter().map(|(n, _, v)| (n, v)).collect()
}

fn assert_close(what: &str, a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) {
    assert_eq!(a.len(), b.len(), "{what}");
    for ((name, x), (_, y)) in a.iter().zip(b) {
        for (i, (x, y)) in x.iter().zip(y).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5,
                "{what}: {name}[{i}]: {x} against {y}"
            );
        }
    }
}

/// LeNet and the seed model, 20 steps each: two ranks end with one process's weights.
#[test]
fn two_ranks_train_what_one_process_trains() {
    let dir = tempfile::tempdir().unwrap();
    for (job, limit, batch) in [("mnist", "640", "32"), ("qqp", "320", "16")] {
        let run = |ranks: usize| {
            let out = dir.path().join(format!("{job}-{ranks}"));
            let args = [
                "--device", "cpu", "train", job, "--epochs", "1", "--limit", limit, "--batch",
                batch, "--quiet", "--out",
            ];
            train(ranks, &[&args[..], &[out.to_str().unwrap()]].concat());
            weights(&out.join("model.safetensors"))
        };
        assert_close(&format!("{job} on 2 ranks"), &run(2), &run(1));
    }
}

/// The processes `mpirun` (pid `root`) started: its children, and theirs.
fn descendants(root: u32) -> Vec<u32> {
    let mut found = vec![];
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        let path = format!("/proc/{parent}/task/{parent}/children");
        let children = std::fs::read_to_string(path).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            found.push(pid);
            frontier.push(pid);
        }
    }
    found
}

/// The kiln processes among `mpirun`'s descendants.
fn ranks_of(mpirun: u32) -> Vec<u32> {
    descendants(mpirun)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "kiln")
        })
        .collect()
}

/// Waits for `child` up to `limit`; its exit status, or None (it is killed then).
fn wait_for(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

/// Starts a long two-rank run into `out` and SIGKILLs one rank once `ready` holds.
fn kill_a_rank(out: &Path, ready: impl Fn() -> bool) -> std::process::ExitStatus {
    let mut job = mpirun(2)
        .args([
            "--device", "cpu", "train", "spirals", "--epochs", "100000", "--quiet",
        ])
        .args(["--batch", "8", "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !(ready() && ranks_of(job.id()).len() == 2) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the ranks never got going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ranks = ranks_of(job.id());
    Command::new("kill")
        .args(["-9", &ranks[1].to_string()])
        .status()
        .unwrap();
    wait_for(&mut job, Duration::from_secs(20)).expect("the job outlived its killed rank")
}

/// A rank killed mid-run ends the whole job, with a failure, within seconds.
#[test]
fn a_killed_rank_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let first = out.join("checkpoints/epoch-0001.safetensors");
    let status = kill_a_rank(&out, || first.exists());
    assert!(!status.success());
}

/// A two-rank run killed mid-epoch resumes from its newest checkpoint, on one rank or two, to
/// the weights of an uninterrupted two-rank run.
#[test]
fn a_killed_two_rank_run_resumes_on_one_or_two_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let killed = dir.path().join("killed");
    let third = killed.join("checkpoints/epoch-0003.safetensors");
    kill_a_rank(&killed, || third.exists());
    let newest: usize = std::fs::read_dir(killed.join("checkpoints"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            name.to_str()?
                .strip_prefix("epoch-")?
                .get(..4)?
                .parse()
                .ok()
        })
        .max()
        .expect("a checkpoint");
    let epochs = (newest + 1).to_string();
    let args = |out: &Path| -> Vec<String> {
        [
            "--device", "cpu", "train", "spirals", "--quiet", "--batch", "8", "--epochs", &epochs,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--out".into(), out.to_str().unwrap().into()])
        .collect()
    };
    let whole = dir.path().join("whole");
    let whole_args = args(&whole);
    train(
        2,
        &whole_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let expected = weights(&whole.join("model.safetensors"));
    for ranks in [1, 2] {
        let resumed = dir.path().join(format!("resumed-{ranks}"));
        copy_dir(&killed, &resumed);
        let mut a = args(&resumed);
        a.push("--resume".into());
        train(ranks, &a.iter().map(String::as_str).collect::<Vec<_>>());
        let got = weights(&resumed.join("model.safetensors"));
        assert_close(&format!("resumed on {ranks} rank(s)"), &got, &expected);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
