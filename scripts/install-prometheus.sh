#!/usr/bin/env bash
# Install Prometheus and promtool (Debian package 'prometheus') for the integration tests, if missing.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then exit 0; fi
sudo=()
if [[ "$(id -u)" != "0" ]]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package may start a system service; the tests run their own server on loopback.
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
  "${sudo[@]}" systemctl stop prometheus || true
fi
command -v prometheus && command -v promtool
