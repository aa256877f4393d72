#!/usr/bin/env bash
# The Go client's tests: `go test ./...` against a live gliner2-serve that the tests start on the tiny
# checkpoint (GLINER_VENV: the venv with gliner2-serve, default ../../.venv). Offline: builds from the
# vendor/ tree that install.sh writes over Debian's Go sources, with no module proxy.
#   clients/go/test.sh [go test flags]       # e.g. -run Conformance
set -euo pipefail
cd "$(dirname "$0")"
bash ./install.sh >/dev/null
export GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local
go build ./...
go vet ./...
exec go test -count=1 -v "$@" ./...
