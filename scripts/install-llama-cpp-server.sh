#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server (PyPI llama-cpp-python[server], built from its sdist): the real,
# independent upstream the proxy-mode tests put the guard in front of. Needs a C++ compiler and cmake
# (installed from Debian when missing and root/sudo is available). pip caches the built wheel, so a
# second run takes seconds; the first build takes about 15-20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  sudo_cmd=""; [[ "$(id -u)" != 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq cmake g++ >/dev/null
fi
# Portable CPU code (no -march=native), no tests or examples: only the library the server loads.
CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  .venv/bin/python -m pip --disable-pip-version-check -q install "llama-cpp-python[server]==0.3.36"
