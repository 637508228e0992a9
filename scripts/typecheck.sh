#!/usr/bin/env bash
# mypy over the causalguard package. guard/, adapters/ and graphs/ become one package only through
# pyproject's package-dir mapping, which mypy cannot read, so mirror that layout with symlinks first.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree/causalguard"
for entry in guard/*; do ln -s "$PWD/$entry" "$tree/causalguard/$(basename "$entry")"; done
ln -s "$PWD/adapters" "$tree/causalguard/adapters"
ln -s "$PWD/graphs" "$tree/causalguard/graphs"
cd "$tree" && ../../.venv/bin/python -m mypy --config-file ../../pyproject.toml -p causalguard
