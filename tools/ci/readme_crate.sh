#!/usr/bin/env bash
# Builds the README's "Use kiln from your crate" as a fresh crate and runs it: the blocks after
# `<!-- readme-crate:PATH -->` become PATH, with `kiln = "0.1"` pointed at this repository's
# crates/kiln (kiln is not on crates.io yet). Shares the repository's target folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
crate="$(mktemp -d)/readme-crate"
mkdir -p "$crate/src"
python3 - "$repo/README.md" "$crate" "$repo/crates/kiln" <<'PY'
import pathlib, re, sys
readme, crate, kiln = pathlib.Path(sys.argv[1]).read_text(), pathlib.Path(sys.argv[2]), sys.argv[3]
blocks = re.findall(r"<!-- readme-crate:(\S+) -->\n```\w*\n(.*?)```", readme, re.S)
assert {p for p, _ in blocks} == {"Cargo.toml", "src/main.rs"}, blocks
for path, text in blocks:
    if path == "Cargo.toml":
        assert 'kiln = "0.1"' in text, text
        text = '[package]\nname = "readme-crate"\nversion = "0.1.0"\nedition = "2021"\n\n' + text
        text = text.replace('kiln = "0.1"', f'kiln = {{ path = "{kiln}" }}')
    (crate / path).write_text(text)
PY
# The versions kiln's own lock file pins, as a start for the fresh crate's.
cp "$repo/examples/external/Cargo.lock" "$crate/Cargo.lock"
cd "$crate"
# The workspace's release settings, so that its builds are reused.
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR="$repo/target" cargo run --release --quiet | tee "$crate/out.txt"
grep -q "accuracy Some(1.0)" "$crate/out.txt"
echo "ci: the README's crate builds and learns XOR"
