#!/usr/bin/env bash
# Installs the TypeScript client's dependencies (node_modules) from package-lock.json, idempotently:
# `npm ci` only when node_modules is missing or was installed from another package-lock.json.
# Called by the project's scripts/install.sh; then `npm test` here builds and runs the tests.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v npm >/dev/null; then
  echo "clients/typescript/install.sh: npm not found (Node.js 20 or later is needed)" >&2
  exit 1
fi
stamp=node_modules/.installed-from-lock
lock="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -d node_modules ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock" ]; then
  exit 0
fi
npm ci --no-fund --no-audit --loglevel=error
echo "$lock" > "$stamp"
