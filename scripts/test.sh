#!/usr/bin/env bash
# Installs everything the tests need (.venv, Azurite) and runs ruff, mypy (durable_agents/) and the whole test suite.
# pytest's exit code 5 ("no tests collected") counts as a failure here.
set -uo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-1}"  # what the test run needs is installed above: a missing Azurite or Chromium fails, not skips
bash scripts/setup.sh || exit 1
bash scripts/install-azurite.sh || exit 1
.venv/bin/ruff check . || exit 1
.venv/bin/mypy || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
