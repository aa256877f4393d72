#!/usr/bin/env bash
# Offline setup of the Go client, idempotent: Debian's Go toolchain and its packaged Go modules, and a
# git-ignored vendor/ tree over their sources, so that plain `go build ./... && go test ./...` work in
# ordinary module mode (the go command uses vendor/ by itself when vendor/modules.txt exists) with no
# module proxy and no go.sum. A machine with a module proxy needs none of this: delete vendor/ (or never
# run this script) and `go mod tidy && go build ./...` as usual.
#
#   clients/go/install.sh            # run from anywhere; scripts/install.sh calls it
#   clients/go/install.sh --gateway  # also unpacks Debian's grpc-gateway 1.6.4 (gateway/check.sh uses it)
#
# What it does:
#   1. As root with apt-get, when `go` or Debian's Go sources are missing, installs the Debian packages
#      golang-go golang-google-grpc-dev golang-google-protobuf-dev protoc-gen-go protoc-gen-go-grpc
#      protobuf-compiler.
#   2. Fetches Debian's golang-github-golang-protobuf-1-5-dev (github.com/golang/protobuf 1.5.2, the
#      APIv2-backed one that grpc 1.33 and protobuf 1.28 go with) with `apt-get download` and unpacks it
#      into .offline/ (git-ignored), without installing it: it conflicts with the -1-3- package that
#      apt picks for golang-google-grpc-dev, and the machine's packages stay as they are. Skipped when
#      the 1.5 package is the one installed.
#   3. Writes vendor/: one symlink per module into /usr/share/gocode/src (or .offline/), and
#      vendor/modules.txt naming the versions that go.mod requires, with every package of each tree.
#      vendor/SOURCES.txt says which Debian package (and version) stands in for each module.
#   4. With --gateway: golang-grpc-gateway (the protoc-gen-grpc-gateway binary) and
#      golang-github-grpc-ecosystem-grpc-gateway-dev (its runtime's sources), unpacked into .offline/.
set -euo pipefail
cd "$(dirname "$0")"
GATEWAY=0
[ "${1:-}" = "--gateway" ] && GATEWAY=1
SRC="${GLINER_GOCODE:-/usr/share/gocode/src}"
PACKAGES=(golang-go golang-google-grpc-dev golang-google-protobuf-dev protoc-gen-go protoc-gen-go-grpc protobuf-compiler)
as_root() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; }

# 1. The toolchain and the packaged sources.
if ! command -v go >/dev/null || [ ! -d "$SRC/google.golang.org/grpc" ] || [ ! -d "$SRC/google.golang.org/protobuf" ] \
   || [ ! -d "$SRC/google.golang.org/genproto" ]; then
  if as_root; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
  else
    echo "clients/go/install.sh: go or Debian's Go sources ($SRC) are missing; install the Debian packages" \
         "${PACKAGES[*]} (as root), or build with a module proxy instead (see README.md, Go client)." >&2
    exit 1
  fi
fi

# unpack_deb PACKAGE: the package's files under .offline/PACKAGE/ (downloaded once, never installed).
unpack_deb() {
  local pkg="$1" dir=".offline/$1" tmp
  [ -f "$dir/.done" ] && return 0
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/gliner-go-deb.XXXXXX")"
  chmod 755 "$tmp"
  if ! (cd "$tmp" && apt-get download "$pkg" >download.log 2>&1); then
    if as_root && (apt-get update -qq && cd "$tmp" && apt-get download "$pkg" >download.log 2>&1); then :; else
      echo "clients/go/install.sh: 'apt-get download $pkg' failed:" >&2
      cat "$tmp/download.log" >&2 || true
      rm -rf "$tmp"
      exit 1
    fi
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  dpkg-deb -x "$tmp"/"$pkg"_*.deb "$dir"
  dpkg-deb -f "$tmp"/"$pkg"_*.deb Version >"$dir/.version"
  rm -rf "$tmp"
  touch "$dir/.done"
}

installed_version() {  # the installed version of Debian package $1, or nothing
  local state
  state="$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$1" 2>/dev/null || true)"
  [ "${state%% *}" = installed ] && echo "${state#* }" || true
}

# 2. github.com/golang/protobuf 1.5.
if [ -n "$(installed_version golang-github-golang-protobuf-1-5-dev)" ]; then
  GOLANG_PROTOBUF="$SRC/github.com/golang/protobuf"
  GOLANG_PROTOBUF_FROM="golang-github-golang-protobuf-1-5-dev $(installed_version golang-github-golang-protobuf-1-5-dev) (installed)"
else
  unpack_deb golang-github-golang-protobuf-1-5-dev
  GOLANG_PROTOBUF="$PWD/.offline/golang-github-golang-protobuf-1-5-dev/usr/share/gocode/src/github.com/golang/protobuf"
  GOLANG_PROTOBUF_FROM="golang-github-golang-protobuf-1-5-dev $(cat .offline/golang-github-golang-protobuf-1-5-dev/.version) (unpacked in .offline/, not installed)"
fi

# 3. vendor/: module path, the version go.mod requires, the source tree, where it came from.
MODULES=(
  "github.com/golang/protobuf|$GOLANG_PROTOBUF|$GOLANG_PROTOBUF_FROM"
  "golang.org/x/net|$SRC/golang.org/x/net|golang-golang-x-net-dev $(installed_version golang-golang-x-net-dev)"
  "golang.org/x/sys|$SRC/golang.org/x/sys|golang-golang-x-sys-dev $(installed_version golang-golang-x-sys-dev)"
  "golang.org/x/text|$SRC/golang.org/x/text|golang-golang-x-text-dev $(installed_version golang-golang-x-text-dev)"
  "google.golang.org/genproto|$SRC/google.golang.org/genproto|golang-google-genproto-dev $(installed_version golang-google-genproto-dev)"
  "google.golang.org/grpc|$SRC/google.golang.org/grpc|golang-google-grpc-dev $(installed_version golang-google-grpc-dev)"
  "google.golang.org/protobuf|$SRC/google.golang.org/protobuf|golang-google-protobuf-dev $(installed_version golang-google-protobuf-dev)"
)
required_version() {  # the version go.mod requires for module $1
  awk -v m="$1" '$1 == m {print $2} $1 == "require" && $2 == m {print $3}' go.mod | head -n1
}

tmp_vendor="$(mktemp -d "$PWD/.vendor.XXXXXX")"
chmod 755 "$tmp_vendor"
trap 'rm -rf "$tmp_vendor"' EXIT
{
  echo "Where each module in vendor/ comes from (written by install.sh; vendor/modules.txt names the"
  echo "versions go.mod requires, which a build with a module proxy uses):"
} >"$tmp_vendor/SOURCES.txt"
for entry in "${MODULES[@]}"; do
  IFS='|' read -r module dir from <<<"$entry"
  version="$(required_version "$module")"
  if [ -z "$version" ]; then echo "clients/go/install.sh: go.mod does not require $module" >&2; exit 1; fi
  if [ ! -d "$dir" ]; then echo "clients/go/install.sh: $dir is missing (for $module)" >&2; exit 1; fi
  mkdir -p "$tmp_vendor/$(dirname "$module")"
  ln -s "$dir" "$tmp_vendor/$module"
  go_line="$(awk '$1 == "go" {print $2; exit}' "$dir/go.mod" 2>/dev/null || true)"
  echo "# $module $version"
  echo "## explicit${go_line:+; go $go_line}"
  # Every package of the tree (directories with non-test Go files), outside testdata and _/. folders.
  (cd "$dir" && find . \( -name testdata -o -name 'vendor' -o -name '_*' -o -name '.?*' \) -prune -o \
      -name '*.go' ! -name '*_test.go' -print | sed -e 's|^\./||' -e 's|/[^/]*$||' -e 's|^[^/]*\.go$||' | sort -u) |
    while read -r pkg; do echo "$module${pkg:+/$pkg}"; done
  printf '  %-28s %-40s <- %s\n' "$module" "$version" "$from" >>"$tmp_vendor/SOURCES.txt"
done >"$tmp_vendor/modules.txt"
rm -rf vendor
mv "$tmp_vendor" vendor
trap - EXIT

# 4. The grpc-gateway build check's generator and runtime (never installed).
if [ "$GATEWAY" = 1 ]; then
  unpack_deb golang-grpc-gateway
  unpack_deb golang-github-grpc-ecosystem-grpc-gateway-dev
fi
echo "clients/go: vendor/ set up over Debian's Go sources ($(go version | awk '{print $3}')); see vendor/SOURCES.txt"
