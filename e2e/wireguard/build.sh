#!/usr/bin/env bash
# Builds wireguard-go (the userspace WireGuard, https://git.zx2c4.com/wireguard-go) from the
# Go module proxy into ~/.cache/novacron/tools, keyed by version, and prints its path.
# The tunnel manager uses it where the kernel has no wireguard module (this machine's kernel
# has none and cannot load modules). Later runs reuse the binary.
set -euo pipefail

WG_GO_VERSION=${WG_GO_VERSION:-v0.0.0-20260522210424-ecfc5a8d5446}  # no tags on the proxy
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=$CACHE/tools/wireguard-go-$WG_GO_VERSION
BIN=$OUT/wireguard-go

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "build-wireguard-go: no go toolchain (apt-get install golang-go)" >&2; exit 1; }
mkdir -p "$OUT"
printf '[wireguard-go %(%H:%M:%S)T] building %s into %s\n' -1 "$WG_GO_VERSION" "$OUT" >&2
GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$OUT.tmp" \
  go install -trimpath -ldflags='-s -w' "golang.zx2c4.com/wireguard@$WG_GO_VERSION"
mv "$OUT.tmp/wireguard" "$BIN"
rmdir "$OUT.tmp"
echo "$BIN"
