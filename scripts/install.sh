#!/usr/bin/env bash
# One-shot install of vlmq and everything it needs on a fresh Debian machine:
# Debian's Chromium + ChromeDriver (MiniWoB++), torch 2.13.0, the package and dev tools.
#
# torch: with an NVIDIA GPU (nvidia-smi lists one) the default build from the configured package
# index (on PyPI: the CUDA build). Without one, a CPU build: the configured index's torch when it is
# one (e.g. a local wheel), else PyTorch's CPU wheel index (https://download.pytorch.org/whl/cpu, as
# PyTorch's install guide documents), so a CPU-only machine does not pull several GB of CUDA wheels.
#
#   bash scripts/install.sh            # install
#   bash scripts/install.sh --dry-run  # only say which torch build it would install
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH="torch==2.13.0"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
PIP=(python3 -m pip)

has_nvidia_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }

configured_torch_is_cuda() {  # does the configured index resolve $TORCH to a CUDA build? (downloads nothing big)
  local report
  report=$(mktemp)
  if ! "${PIP[@]}" install -q --dry-run --ignore-installed --no-deps --report "$report" "$TORCH" >/dev/null 2>&1; then
    rm -f "$report"
    return 0  # the configured index has no $TORCH: take the CPU index
  fi
  python3 - "$report" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))["install"][0]["metadata"]
cuda = "+cu" in meta["version"] or any(d.startswith("nvidia-") for d in meta.get("requires_dist") or [])
sys.exit(0 if cuda else 1)
EOF
  local cuda=$?
  rm -f "$report"
  return $cuda
}

if has_nvidia_gpu; then
  torch_args=("$TORCH")
  echo "torch: NVIDIA GPU found, the default (CUDA) build from the configured package index"
elif configured_torch_is_cuda; then
  torch_args=("$TORCH" --index-url "$CPU_INDEX")
  echo "torch: no NVIDIA GPU, the CPU build from PyTorch's CPU wheel index ($CPU_INDEX)"
else
  torch_args=("$TORCH")
  echo "torch: no NVIDIA GPU, the CPU build that the configured package index serves"
fi
if [ "${1:-}" = "--dry-run" ]; then exit 0; fi

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if ! command -v chromedriver >/dev/null 2>&1 || ! [ -x /usr/bin/chromium ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
fi
"${PIP[@]}" install -q --upgrade pip
# torch first, pinned: the package's own torch==2.13.0 is then already satisfied.
"${PIP[@]}" install -q "${torch_args[@]}"
"${PIP[@]}" install -q -e ".[dev]"
"${PIP[@]}" check || true
echo "vlmq installed: $(python3 -c 'import vlmq, torch; print(vlmq.__version__, "with torch", torch.__version__)')"
