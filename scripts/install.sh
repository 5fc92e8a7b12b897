#!/usr/bin/env bash
# One-shot install of vlmq and everything it needs on a fresh Debian machine:
# Debian's Chromium + ChromeDriver (MiniWoB++), the CPU build of torch, the package and dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if ! command -v chromedriver >/dev/null 2>&1 || ! [ -x /usr/bin/chromium ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
fi
python3 -m pip install -q --upgrade pip
# Pin torch first: an unpinned torch would pull several GB of CUDA wheels.
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[dev]"
python3 -m pip check || true
echo "vlmq installed: $(python3 -c 'import vlmq; print(vlmq.__version__)')"
