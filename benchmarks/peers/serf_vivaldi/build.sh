#!/usr/bin/env bash
# Builds the Serf Vivaldi replayer (main.go) from the Go module proxy into
# ~/.cache/novacron/tools and prints its path; later runs reuse it.
set -euo pipefail
SERF_VERSION=${SERF_VERSION:-v0.10.4}
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=$CACHE/tools/serf-vivaldi-$SERF_VERSION
if [ -x "$OUT/serf-vivaldi" ]; then echo "$OUT/serf-vivaldi"; exit 0; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/novacron-serf.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$(dirname "$0")/main.go" "$work/"
cd "$work"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
go mod init novacron.local/serf-vivaldi >/dev/null 2>&1
go mod edit -require="github.com/hashicorp/serf@$SERF_VERSION"
go mod tidy >/dev/null 2>&1
mkdir -p "$OUT"
go build -trimpath -ldflags='-s -w' -o "$OUT/serf-vivaldi" .
echo "$OUT/serf-vivaldi"
