#!/usr/bin/env bash
# kiln's CPU device against PyTorch's CPU build (and numpy, and Keras for the seed step), one after
# the other on one machine (issue 26). Not run by CI. Needs PyTorch in a venv
# (python3 -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch numpy threadpoolctl) and, for the
# Keras row, the venv of benches/results/cpu-vs-keras. Usage: run.sh RUN_NAME (writes RUN_NAME/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/${1:?a name for this run, e.g. run-1}"
mkdir -p "$out"
cd "$here/../../.."
cargo build --release -q
kiln=target/release/kiln
$kiln --device cpu bench --filter training_step --repeats 3 --json "$out/kiln-steps.json" --force
$kiln --device cpu bench --filter matmul --repeats 5 --json "$out/kiln-matmul.json" --force
# numpy's OpenBLAS picks its kernel from the CPU unless told otherwise: unset here only.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${TORCH_PYTHON:-/tmp/tvenv/bin/python}" \
    tools/torch/steps.py --seed-batches 16,256 --matmul 1024,2048 --numpy --no-attention \
    --json "$out/torch.json"
"${KERAS_PYTHON:-/tmp/kvenv/bin/python}" tools/keras/steps.py --only seed --json "$out/keras.json"
$kiln --device cpu profile qqp --batch 256 --json "$out/profile-qqp-b256-cpu.json" --force
# sgemm alone, interleaved: kiln then numpy, three rounds (this host's speed moves from minute to
# minute; a round puts both sides in the same minute).
for round in 1 2 3; do
    $kiln --device cpu bench --filter matmul --repeats 9 --json "$out/kiln-matmul-round-$round.json" --force > /dev/null
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${TORCH_PYTHON:-/tmp/tvenv/bin/python}" -c '
import json, sys, time, statistics, numpy as np
out = []
for n in (1024, 2048):
    a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(9):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    ms = statistics.median(ts) * 1e3
    out.append({"shape": f"{n}x{n}x{n}", "median_ms": ms, "gflops": 2 * n ** 3 / ms / 1e6})
json.dump(out, open(sys.argv[1], "w"), indent=1)
' "$out/numpy-matmul-round-$round.json"
done
# The training steps, interleaved the same way: kiln's, then PyTorch's, three rounds.
for round in 1 2 3; do
    $kiln --device cpu bench --filter training_step --repeats 5 --json "$out/kiln-steps-round-$round.json" --force > /dev/null
    "${TORCH_PYTHON:-/tmp/tvenv/bin/python}" tools/torch/steps.py --seed-batches 16,256 --matmul "" \
        --no-attention --json "$out/torch-steps-round-$round.json" > /dev/null
done
