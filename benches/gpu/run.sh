#!/usr/bin/env bash
# The GPU check (issue 11): on a machine with a GPU and no Rust toolchain, runs what build.sh
# built: `kiln info`, the GPU test tiers with KILN_REQUIRE_GPU=1, `kiln tune` (the adapter's
# matmul tiles, LSTM rows and units), `kiln bench --json`, `kiln profile` of the seed model's
# and LeNet's training steps, and the PyTorch peers (tools/torch/steps.py, when torch imports),
# in about 8 minutes at most. Writes eight files to $OUT (default benches/gpu/out): info.txt, tests.txt, bench.json,
# bench.txt (the tuning table first), profile-qqp.json, profile-mnist.json, torch.json,
# summary.json. QUICK=1 runs the quick benchmark (for a software adapter).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/benches/gpu/bin
out=${OUT:-$root/benches/gpu/out}
mkdir -p "$out"
export KILN_REQUIRE_GPU=1
# The adapter, not the CPU device, for every kiln command: a software adapter (the dry run on
# lavapipe) is otherwise passed over by the default choice.
export KILN_DEVICE=${KILN_DEVICE:-gpu}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
if [ ! -x "$bin/kiln" ] && [ -f "$root/benches/gpu/bin.tgz" ]; then
    tar xzf "$root/benches/gpu/bin.tgz" -C "$root/benches/gpu"
fi
[ -x "$bin/kiln" ] || { echo "run benches/gpu/build.sh first (on a machine with Rust)"; exit 1; }
built=$(cat "$bin/manifest_dir")
if [ ! -e "$built/tests/golden" ]; then
    mkdir -p "$(dirname "$built")"
    ln -sfn "$root" "$built"
fi
start=$(date +%s)
"$bin/kiln" info > "$out/info.txt" 2>&1
tests="["
: > "$out/tests.txt"
for t in "$bin"/tests/*; do
    name=$(basename "$t")
    s=$(date +%s)
    log=$(timeout 150 "$t" --test-threads 2 2>&1)
    rc=$?
    printf '==== %s (exit %s)\n%s\n' "$name" "$rc" "$log" >> "$out/tests.txt"
    passed=$(grep -Eo '[0-9]+ passed' <<< "$log" | awk '{s+=$1} END {print s+0}')
    failed=$(grep -Eo '[0-9]+ failed' <<< "$log" | awk '{s+=$1} END {print s+0}')
    skipped=$(grep -c '^SKIPPED' <<< "$log")
    tests+="{\"binary\": \"$name\", \"exit\": $rc, \"passed\": $passed, \"failed\": $failed, \"skipped\": $skipped, \"seconds\": $(( $(date +%s) - s ))},"
done
tests="${tests%,}]"
export KILN_TUNE_CACHE=${KILN_TUNE_CACHE:-$(mktemp -d)/tune.txt}
timeout 90 "$bin/kiln" tune > "$out/bench.txt" 2>&1
tune_rc=$?
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
timeout 270 "$bin/kiln" bench "${quick[@]}" --repeats 5 --json "$out/bench.json" >> "$out/bench.txt" 2>&1
bench_rc=$?
profile_rc=0
for job in qqp mnist; do
    timeout 60 "$bin/kiln" profile "$job" --json "$out/profile-$job.json" >> "$out/bench.txt" 2>&1 || profile_rc=$?
done
torch_rc=null
if python3 -c 'import torch' 2> /dev/null; then
    timeout 120 python3 "$root/tools/torch/steps.py" --json "$out/torch.json" > /dev/null 2>&1
    torch_rc=$?
fi
adapter=$(sed -n 's/^chosen: //p' "$out/info.txt")
cat > "$out/summary.json" << JSON
{"adapter": "$adapter", "tests": $tests, "tune_exit": $tune_rc, "bench_exit": $bench_rc,
 "profile_exit": $profile_rc, "torch_exit": $torch_rc, "seconds": $(( $(date +%s) - start ))}
JSON
cat "$out/summary.json"
