#!/usr/bin/env bash
# The GRU's figures in one sitting on one machine (not run by CI): kiln's CPU device against
# Keras (TensorFlow CPU) on the seed's model with BiGRU and with BiLSTM layers, three rounds
# alternating the two so that this host's drift lands on both; then the fused GRU against its
# unfused composition and the LSTM on lavapipe. Needs the venv of tools/keras/steps.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../../.."
cargo build --release -q
kiln=target/release/kiln
for round in 1 2 3; do
  $kiln --device cpu bench --filter qqp_ --repeats 5 --json "$here/kiln-cpu-$round.json" --force
  "${PYTHON:-/tmp/kvenv/bin/python}" tools/keras/steps.py --only seed --only gru --json "$here/keras-$round.json"
done
$kiln --device vulkan bench --filter qqp_gru --repeats 3 --json "$here/lavapipe.json" --force
