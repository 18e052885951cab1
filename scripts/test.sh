#!/usr/bin/env bash
# The test suite on a fresh machine: set up, then run pytest. Tests that need ../shared skip
# without it, except when CI=true (then they fail). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
