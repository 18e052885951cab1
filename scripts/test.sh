#!/usr/bin/env bash
# The test suite on a fresh machine, exactly what CI runs: the system packages the tests need (installed
# when root with apt-get, see system-packages.sh), set up .venv, run pytest. Tests that need ../shared or
# a missing tool skip, except when CI=true (then they fail). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
bash scripts/setup.sh test
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
