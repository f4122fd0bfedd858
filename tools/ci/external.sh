#!/usr/bin/env bash
# Builds and tests examples/external (a crate outside the workspace that uses kiln as a user's
# crate does), then runs its binary: kiln's command line with the crate's layer registered
# trains a model file that names the layer, evaluates and predicts with what it saved; kiln's own
# binary refuses that model, naming the fix. Shares the repository's target folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
export CARGO_TARGET_DIR="$repo/target"
cd "$repo/examples/external"
cargo test --release --locked
cargo build --release --locked
ext="$CARGO_TARGET_DIR/release/kiln-ext"
run="$(mktemp -d)/run"
"$ext" --device cpu train --model model.json --data moons.csv --epochs 30 --lr 0.02 --quiet --out "$run" 2>&1 | tail -n 3
"$ext" --device cpu eval --model "$run/model.safetensors" --data moons.csv | tee "$run/eval.txt"
grep -Eq "300 rows of moons.csv: accuracy 0\.(8|9)" "$run/eval.txt"
"$ext" --device cpu predict --model "$run/model.safetensors" --data moons.csv --out "$run/p.csv"
test "$(wc -l < "$run/p.csv")" -eq 301
if "$repo/target/release/kiln" --device cpu eval --model "$run/model.safetensors" --data moons.csv 2> "$run/refused.txt"; then
    echo "ci: kiln read a model with an unregistered layer" && exit 1
fi
grep -q "unknown layer type \`channel_swish\`" "$run/refused.txt"
grep -q "register_layer" "$run/refused.txt"
echo "ci: examples/external trains, saves and reloads its own layer through kiln's command line"
