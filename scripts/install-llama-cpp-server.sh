#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server (PyPI llama-cpp-python[server], built from its sdist): the real,
# independent upstream the proxy-mode tests put the guard in front of. Needs a C++ compiler and cmake
# (installed from Debian when missing and root/sudo is available). pip caches the built wheel and the C++
# server below is kept, so a second run takes seconds. The first C++ server build took 5 minutes on an idle
# 2-core machine (8 minutes beside other work; 2026-12-06).
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

# The C++ llama-server from the llama.cpp sources vendored in the same sdist: the one with per-request
# LoRA scales ("lora" in a request), --lora and --control-vector-scaled, which the Python server lacks.
# Steering in proxy mode and the exported-lever tests use it. About 6 minutes on 2 cores the first time;
# skipped when .venv/bin/llama-server was built from this version.
VERSION=0.3.36
STAMP=.venv/llama-server.version
if [[ -x .venv/bin/llama-server && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]]; then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip --disable-pip-version-check -q download --no-deps --no-binary :all: \
  "llama-cpp-python==$VERSION" -d "$work"
tar -xzf "$work/llama_cpp_python-$VERSION.tar.gz" -C "$work"
src="$work/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >/dev/null
cmake --build "$work/build" --target llama-server -j "$(nproc)" >/dev/null
install -m 755 "$work/build/bin/llama-server" .venv/bin/llama-server
echo "$VERSION" > "$STAMP"
