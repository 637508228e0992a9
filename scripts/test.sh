#!/usr/bin/env bash
# Install everything (scripts/setup.sh --dev), then lint, check the formatting (ruff format), type-check,
# build the docs site and run the default test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m heavy).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
.venv/bin/ruff check guard adapters graphs tests benchmarks scripts
.venv/bin/ruff format --check guard adapters graphs tests benchmarks scripts
scripts/typecheck.sh
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet -d build/site
.venv/bin/python -m pytest -q "$@"
