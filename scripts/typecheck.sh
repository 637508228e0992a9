#!/usr/bin/env bash
# mypy over the causalguard package: its three source roots (guard/, adapters/, graphs/) are named in
# pyproject.toml ([tool.mypy] files and mypy_path), so plain mypy resolves causalguard.* across them.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m mypy
