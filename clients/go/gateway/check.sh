#!/usr/bin/env bash
# Build check: the protos' google.api.http rules through Debian's grpc-gateway generator give a
# reverse proxy that compiles against Debian's packages (not part of `go test ./...`).
#
#   clients/go/gateway/check.sh      # exit 0: generated and compiled (and vetted)
#
# Debian ships grpc-gateway 1.6.4 (the v1 generator, 2019): the protoc-gen-grpc-gateway binary
# (package golang-grpc-gateway) and its runtime's sources (golang-github-grpc-ecosystem-grpc-gateway-dev),
# both unpacked by `install.sh --gateway`, not installed. Two things differ from a plain run:
#   - protoc 3.21 refuses plugins that do not declare proto3 `optional` support, and 1.6.4 predates
#     it (ExtractRequest.threshold, ListInferencesRequest.limit, ... are optional). optional_shim.py
#     runs the real plugin and sets FEATURE_PROTO3_OPTIONAL in its answer. The generated gateway
#     code touches no optional field itself (bodies are decoded whole, query parameters by the
#     runtime), so the declaration is true of this output.
#   - The generator writes into the messages' Go package (glinerv1), where the checked-in stubs must
#     stay exactly what buf generates; the check compiles a scratch copy of gen/ with the gateway
#     files added, in a scratch module with the same go.mod plus grpc-gateway v1.6.4 and the same
#     vendor/ tree, and a main package that mounts both services on a runtime.ServeMux.
set -euo pipefail
cd "$(dirname "$0")/.."
GO_DIR="$PWD"
VENV="$(cd "${GLINER_VENV:-../../.venv}" && pwd)"
bash ./install.sh --gateway >/dev/null
GW_SRC="$GO_DIR/.offline/golang-github-grpc-ecosystem-grpc-gateway-dev/usr/share/gocode/src/github.com/grpc-ecosystem/grpc-gateway"
PLUGIN="$GO_DIR/.offline/golang-grpc-gateway/usr/bin/protoc-gen-grpc-gateway"
GOOGLE_API="$("$VENV/bin/python" -c 'import google.api, os; print(os.path.dirname(os.path.dirname(list(google.api.__path__)[0])))')"
export GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local

scratch="$(mktemp -d "${TMPDIR:-/tmp}/gliner-gateway-check.XXXXXX")"
trap '[ -n "${KEEP_SCRATCH:-}" ] || rm -rf "$scratch"' EXIT
# The scratch module: go.mod + grpc-gateway, vendor/ + grpc-gateway.
cp go.mod "$scratch/go.mod"
printf '\nrequire github.com/grpc-ecosystem/grpc-gateway v1.6.4\n' >>"$scratch/go.mod"
cp -a vendor "$scratch/vendor"
mkdir -p "$scratch/vendor/github.com/grpc-ecosystem"
ln -s "$GW_SRC" "$scratch/vendor/github.com/grpc-ecosystem/grpc-gateway"
{
  echo "# github.com/grpc-ecosystem/grpc-gateway v1.6.4"
  echo "## explicit"
  for pkg in runtime runtime/internal utilities; do echo "github.com/grpc-ecosystem/grpc-gateway/$pkg"; done
} >>"$scratch/vendor/modules.txt"
mkdir -p "$scratch/gen/gliner/v1" "$scratch/out" "$scratch/cmd/gateway"
cp gen/gliner/v1/*.go "$scratch/gen/gliner/v1/"

# Generate (protoc with the shim in front of Debian's plugin).
sed "1s|.*|#!$VENV/bin/python|" gateway/optional_shim.py >"$scratch/shim"
chmod +x "$scratch/shim"
REAL_PLUGIN="$PLUGIN" protoc -I ../../proto -I "$GOOGLE_API" -I /usr/include \
  --plugin=protoc-gen-grpc-gateway="$scratch/shim" --grpc-gateway_out=logtostderr=true:"$scratch/out" \
  gliner/v1/gliner_service.proto gliner/v1/history_service.proto
find "$scratch/out" -name '*.pb.gw.go' -exec mv {} "$scratch/gen/gliner/v1/" \;
ls "$scratch/gen/gliner/v1/"*.pb.gw.go >/dev/null

cat >"$scratch/cmd/gateway/main.go" <<'GO'
// A REST reverse proxy for a gliner2-serve gRPC port: gateway -grpc 127.0.0.1:50051 -http :8081
package main

import (
	"context"
	"flag"
	"log"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/runtime"
	"google.golang.org/grpc"

	glinerv1 "github.com/gliner2-service/gliner2-service/clients/go/gen/gliner/v1"
)

func main() {
	grpcAddr := flag.String("grpc", "127.0.0.1:50051", "the gRPC server")
	httpAddr := flag.String("http", "127.0.0.1:8081", "where to serve REST")
	flag.Parse()
	ctx := context.Background()
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(func(h string) (string, bool) {
		if h == "X-Api-Key" {
			return "x-api-key", true
		}
		return runtime.DefaultHeaderMatcher(h)
	}))
	opts := []grpc.DialOption{grpc.WithInsecure()}
	if err := glinerv1.RegisterGlinerServiceHandlerFromEndpoint(ctx, mux, *grpcAddr, opts); err != nil {
		log.Fatal(err)
	}
	if err := glinerv1.RegisterInferenceHistoryServiceHandlerFromEndpoint(ctx, mux, *grpcAddr, opts); err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(*httpAddr, mux))
}
GO
(cd "$scratch" && go build ./... && go build -o "$scratch/gateway-bin" ./cmd/gateway && go vet ./gen/... ./cmd/...)
echo "grpc-gateway check: protoc-gen-grpc-gateway $(cat "$GO_DIR/.offline/golang-grpc-gateway/.version")" \
     "generated $(cd "$scratch/gen/gliner/v1" && ls *.pb.gw.go | tr '\n' ' ')and they compile (with a ServeMux main) against Debian's grpc, protobuf and genproto"
