#!/usr/bin/env bash
# Builds MinIO (an S3-compatible server) from the Go module proxy into the tools cache outside
# the repo, keyed by version, so later runs reuse it. Prints the binary's path. The backup
# tests (tests/dr/) start it on loopback as the real S3 target. The module has no tags on the
# proxy (the project is archived upstream): the pseudo-version `@latest` resolves to is pinned
# (see /work/shared/notes/argo-cd-and-minio.md). A cold build takes ~2.5 min on 2 cores: run it
# under the heavy-work lock:
#   flock /tmp/novacron-heavy.lock nice -n 10 bash e2e/minio/build.sh
set -euo pipefail

MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=$CACHE/tools/minio-$MINIO_VERSION

if [ -x "$OUT/minio" ]; then
  echo "$OUT/minio"
  exit 0
fi
log() { printf '[minio %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
log "building github.com/minio/minio@$MINIO_VERSION into $OUT (once)"
start=$(date +%s)
mkdir -p "$OUT"
tmp=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$tmp"
go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION"
mv "$tmp/minio" "$OUT/minio"
log "done in $(( $(date +%s) - start ))s"
echo "$OUT/minio"
