#!/usr/bin/env bash
# Runs the app on the embedded local runtime (http://127.0.0.1:7071/api/...). Extra arguments go to the runtime,
# e.g. --port 7072 or --state .local/other.sqlite3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/durable-agents-local "$@"
