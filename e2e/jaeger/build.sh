#!/usr/bin/env bash
# Builds Jaeger v2 (`cmd/jaeger`: the all-in-one built on the OpenTelemetry Collector, with
# an OTLP receiver and the query API/UI) from the Go module proxy into the tools cache
# outside the repo, keyed by version, so later runs reuse it. Prints the binary's path.
# The observability tests (tests/observe/test_jaeger.py) send spans from real node
# processes to it and read the trace back from its query API. A cold build compiles the
# collector and all its storage backends: minutes, so run it under the heavy-work lock:
#   flock /tmp/novacron-heavy.lock nice -n 10 bash e2e/jaeger/build.sh
set -euo pipefail

# The module's v1.x tags carry the v2 binary in cmd/jaeger (v2.x tags are the same code).
JAEGER_VERSION=${JAEGER_VERSION:-v1.76.0}
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=$CACHE/tools/jaeger-$JAEGER_VERSION

if [ -x "$OUT/jaeger" ]; then
  echo "$OUT/jaeger"
  exit 0
fi
log() { printf '[jaeger %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
log "building github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION into $OUT (once)"
start=$(date +%s)
mkdir -p "$OUT"
tmp=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# `go install pkg@version` refuses the module: its go.mod has a replace directive (sarama).
# A throwaway consumer module requires it and repeats that replace instead.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mod=github.com/jaegertracing/jaeger
(
  cd "$tmp"
  go mod init novacron.local/build-jaeger >/dev/null 2>&1
  gomod=$(go mod download -json "$mod@$JAEGER_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  go mod edit -require="$mod@$JAEGER_VERSION"
  sed -n 's/^replace[[:space:]]\+\(\S\+\)[[:space:]]\+=>[[:space:]]\+\(\S\+\)[[:space:]]\+\(v\S\+\)$/\1=\2@\3/p' "$gomod" |
    while read -r r; do go mod edit -replace="$r"; done
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/jaeger"\n' "$mod" > tools.go
  go mod tidy -e >/dev/null 2>&1 || true
  GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w" -o "$tmp/jaeger" "$mod/cmd/jaeger"
)
mv "$tmp/jaeger" "$OUT/jaeger"
log "done in $(( $(date +%s) - start ))s"
echo "$OUT/jaeger"
