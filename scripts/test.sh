#!/usr/bin/env bash
# Set up a virtualenv with every extra and run the checks and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all]"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy src/lookalike
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
# pytest's 5 means "no tests collected": that is a failure here, never a silent pass.
exit $rc
