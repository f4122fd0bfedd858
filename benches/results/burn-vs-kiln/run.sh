#!/usr/bin/env bash
# Burn 0.22.1 (wgpu backend) against kiln on the same adapter, in one run: LeNet's training step
# (batch 64) and the seed model's (batch 16, T = 62). Writes burn.json and kiln-profile-*.json
# here. Not run by CI (building Burn takes about 15 minutes on 2 cores).
#
#   bash benches/results/burn-vs-kiln/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

(cd "$root/tools/burn" && cargo build --release --locked)
(cd "$root" && cargo build --release --locked)

# kiln: tune first (kept in the cache), then the profiled steps' wall time per step.
"$root/target/release/kiln" tune mnist qqp --device gpu >/dev/null
for job in mnist qqp; do
    "$root/target/release/kiln" profile "$job" --device gpu --steps 5 \
        --json "$here/kiln-profile-$job.json" | tee "$here/kiln-profile-$job.txt"
done
"$root/tools/burn/target/release/kiln-burn-peer" --steps 5 --json "$here/burn.json"
