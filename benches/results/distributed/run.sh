#!/usr/bin/env bash
# Data parallelism on one machine (issue 23), not run by CI: kiln train under mpirun with 1, 2
# and 4 ranks (LeNet on MNIST, the seed model on the embedded Quora sample), each rank on the
# CPU device; the in-process replicas' step times (kiln bench --filter data_parallel); and the
# seed model's one-epoch validation accuracy on 1 and 2 ranks. Needs Open MPI (openmpi-bin
# libopenmpi-dev libclang-dev). Usage: run.sh RUN_NAME (writes RUN_NAME/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/${1:?a name for this run, e.g. run-1}"
mkdir -p "$out"
cd "$here/../../.."
cargo build --release -q --features mpi
kiln=target/release/kiln
mpi=(mpirun --allow-run-as-root --oversubscribe)
for ranks in 1 2 4; do
    for job in "mnist --limit 6400 --batch 64" "qqp --batch 16"; do
        name=$(echo "$job" | cut -d' ' -f1)-$ranks
        "${mpi[@]}" -np "$ranks" $kiln --device cpu train $job --epochs 1 --quiet --force \
            --out "$out/$name" > "$out/$name.log" 2>&1
        # The figures stay (history.json, .csv); the weights and checkpoints (megabytes) go.
        rm -rf "$out/$name/checkpoints" "$out/$name"/*.safetensors "$out/$name/history.png" \
            "$out/$name/.kiln.lock"
    done
done
$kiln --device cpu bench --filter data_parallel --repeats 5 --json "$out/bench-replicas.json" --force
