#!/usr/bin/env bash
# A headless browser for tests/inspector/: Debian's chromium and its chromedriver (Selenium drives it).
# Needs root for apt-get (as CI and the developers' machines have); idempotent and quick when installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium.sh: install chromium and its chromedriver with your system's package manager" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "chromium.sh: $(chromium --version 2>/dev/null) and $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2) installed"
