#!/usr/bin/env bash
# Installs the Azurite storage emulator (npm package `azurite`, pinned) into .local/node for the Table ledger
# tests (tests/integration/test_ledger_azurite.py). Idempotent: does nothing when the pinned version is there.
# Needs Node.js >= 18 and npm on PATH. Usage: scripts/install-azurite.sh
set -euo pipefail

AZURITE_VERSION="3.37.0"
APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${APP_DIR}/.local/node"
PACKAGE_JSON="${PREFIX}/node_modules/azurite/package.json"

if ! command -v npm >/dev/null 2>&1; then
  echo "install-azurite: npm not found; install Node.js 18+ first" >&2
  exit 1
fi

if [[ -f "${PACKAGE_JSON}" ]] && grep -q "\"version\": \"${AZURITE_VERSION}\"" "${PACKAGE_JSON}"; then
  echo "install-azurite: azurite ${AZURITE_VERSION} already installed in ${PREFIX}"
  exit 0
fi

mkdir -p "${PREFIX}"
npm install --prefix "${PREFIX}" --no-audit --no-fund --loglevel=error "azurite@${AZURITE_VERSION}"
echo "install-azurite: installed azurite ${AZURITE_VERSION}: ${PREFIX}/node_modules/.bin/azurite-table"
