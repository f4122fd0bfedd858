#!/usr/bin/env bash
# kiln's CPU device against Keras (TensorFlow CPU) and numpy, measured in one run on one machine.
# Needs a venv with tensorflow-cpu (python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install
# tensorflow-cpu); not run by CI. Writes kiln-steps.json, kiln-matmul.json, keras.json here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
cargo build --release -q
kiln=target/release/kiln
$kiln --device cpu bench --filter training_step --repeats 3 --json "$here/kiln-steps.json"
$kiln --device cpu bench --filter matmul --repeats 5 --json "$here/kiln-matmul.json"
"${PYTHON:-/tmp/kvenv/bin/python}" tools/keras/steps.py --json "$here/keras.json"
$kiln --device cpu profile qqp --json "$here/profile-qqp-cpu.json"
$kiln --device cpu profile mnist --json "$here/profile-mnist-cpu.json"
