#!/usr/bin/env bash
# Make .venv and install repens-sklearn with its test and plot extras, and the
# repens-timm and repens-efficientnet-lite plugins (so their tests run). PyTorch is
# pinned per architecture to the builds this machine's pip can install without
# multi-GB downloads (README: Install).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
case "$(uname -m)" in
  x86_64) TORCH_PINS="torch==2.14.1 torchvision==0.29.1" ;;
  aarch64|arm64) TORCH_PINS="torch==2.9.1 torchvision==0.24.1" ;;
  *) echo "install.sh: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
$PIP install -q --disable-pip-version-check $TORCH_PINS
$PIP install -q --disable-pip-version-check -e ".[test,plot]" $TORCH_PINS
$PIP install -q --disable-pip-version-check -e ./plugins/repens-timm $TORCH_PINS
$PIP install -q --disable-pip-version-check -e ./plugins/repens-efficientnet-lite $TORCH_PINS
