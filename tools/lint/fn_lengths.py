#!/usr/bin/env python3
"""Lists functions longer than a limit (default 100 lines) in the Rust sources outside tests.

    python3 tools/lint/fn_lengths.py [LIMIT]

A function is measured from its `fn` line to its closing brace (brace counting that skips
strings, chars and comments well enough for this codebase). Files under tests/, benches/ and
examples/, and `#[cfg(test)]` modules, are left out. Exits 1 when any function is too long.
"""
import pathlib
import re
import sys

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ROOT = pathlib.Path(__file__).resolve().parents[2]
SKIP = ("tests", "benches", "examples", "target", "fuzz", "tools")


def strip(line):
    """The line without string literals and comments."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//")[0]


def functions(path):
    lines = path.read_text().splitlines()
    in_test = False
    i = 0
    while i < len(lines):
        text = lines[i]
        if text.strip().startswith("#[cfg(test)]"):
            in_test = True
        m = re.match(r"\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)", text)
        if m and not in_test:
            depth, started, j = 0, False, i
            while j < len(lines):
                code = strip(lines[j])
                if not started and ";" in code and "{" not in code:
                    break  # a declaration without a body
                depth += code.count("{") - code.count("}")
                started = started or "{" in code
                if started and depth <= 0:
                    yield m.group(6), i + 1, j - i + 1
                    break
                j += 1
        i += 1


def main():
    long = []
    for path in sorted(ROOT.rglob("*.rs")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP for part in rel.parts[:-1]) or rel.parts[0] in SKIP:
            continue
        for name, line, n in functions(path):
            if n > LIMIT:
                long.append(f"{rel}:{line}: fn {name} is {n} lines")
    print("\n".join(long) if long else f"no function outside tests is longer than {LIMIT} lines")
    sys.exit(1 if long else 0)


main()
