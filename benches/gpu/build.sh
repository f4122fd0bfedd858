#!/usr/bin/env bash
# Builds what run.sh runs on a GPU machine that has no Rust toolchain: the kiln binary and the
# GPU test tiers, stripped, into benches/gpu/bin/ and packed as benches/gpu/bin.tgz (about 31 MB,
# under the device tool's 64 MiB; both ignored by git: name benches/gpu/bin.tgz in the run's
# `carry`). Run from anywhere, here on the development machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked
bin=benches/gpu/bin
rm -rf "$bin"
mkdir -p "$bin/tests"
cp target/release/kiln "$bin/"
# The test binaries of the GPU tiers (kernels against their references, gradients, the LSTM,
# the Keras goldens, training, the back-end translation), found by name in cargo's JSON.
cargo test --release --locked --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
want = {"gpu_kernels", "lstm", "conv_pool", "device", "cpu_fast", "gradients", "recurrent",
        "keras_golden", "training", "shader_backends"}
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and m.get("executable") and t.get("kind") == ["test"] and t.get("name") in want:
        shutil.copy(m["executable"], "benches/gpu/bin/tests/" + t["name"])
'
strip "$bin/kiln" "$bin"/tests/*
# Test binaries read golden files at the path they were built in; run.sh links it there.
pwd > "$bin/manifest_dir"
ls "$bin/tests"
tar czf benches/gpu/bin.tgz -C benches/gpu bin
du -sh "$bin" benches/gpu/bin.tgz
