#!/usr/bin/env bash
# Build a wheel, install it (not editable) into a fresh virtual environment, and run a preset from the
# installed package in a folder outside the checkout: proves the package data (presets, py.typed) ships.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/pip wheel -q --no-deps -w "$work/dist" .
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q torch==2.13.0 "$work"/dist/gannorm-*.whl
cd "$work"
"$work/venv/bin/python" - <<'PY'
import pathlib, gannorm
where = pathlib.Path(gannorm.__file__).resolve()
assert "site-packages" in str(where), f"gannorm was imported from {where}, not from the installed wheel"
assert (where.parent / "py.typed").is_file() and (where.parent / "configs" / "ring8.yaml").is_file()
print("installed:", where.parent)
PY
"$work/venv/bin/gannorm" train ring8 train.steps=20 train.progress=false train.out_dir="$work/runs" train.run_name=smoke
"$work/venv/bin/python" -m gannorm list > "$work/list.txt"
grep -q "ring8" "$work/list.txt"
test -f "$work/runs/smoke/checkpoint.pt"
echo "wheel smoke test passed: $(ls "$work"/dist)"
