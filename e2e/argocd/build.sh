#!/usr/bin/env bash
# Builds Argo CD's application controller, repo server and ApplicationSet controller (one
# multi-call binary; no UI, no API server) from the Go module proxy into a cache outside the
# repo, with Argo CD's CRDs and the git-verify wrapper the repo server runs, so later runs
# reuse it. Prints the directory.
# Why these knobs (see docs/argocd.md): v3.6.1 is the newest release that builds from the
# proxy alone; it needs Go >= 1.27, which GOTOOLCHAIN fetches from the proxy; its go.mod
# pins k8s.io/* through replace directives, which only take effect in the main module, so a
# wrapper module copies them (minus the ./gitops-engine one: that module is required at the
# same tag instead).
set -euo pipefail

ARGOCD_VERSION=${ARGOCD_VERSION:-v3.6.1}
ARGOCD_GO=${ARGOCD_GO:-go1.27.4}
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=${ARGOCD_BIN_DIR:-$CACHE/argocd/argocd-$ARGOCD_VERSION}

if [ -x "$OUT/argocd" ] && [ -x "$OUT/git-verify-wrapper.sh" ] && [ -d "$OUT/crds" ]; then
  echo "$OUT"
  exit 0
fi
export GOTOOLCHAIN=$ARGOCD_GO CGO_ENABLED=0 GOFLAGS=-buildvcs=false
log() { printf '[argocd-bin %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
log "building argo-cd $ARGOCD_VERSION into $OUT (first build takes ~6 min; later runs reuse it)"
start=$(date +%s)
mkdir -p "$OUT"
work=$(mktemp -d "${TMPDIR:-/tmp}/novacron-argocd-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
go mod init novacron.local/build-argocd >/dev/null 2>&1
mod=github.com/argoproj/argo-cd/v3
info=$(go mod download -json "$mod@$ARGOCD_VERSION")
gomod=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"$info")
src=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' <<<"$info")
go mod edit -require="$mod@$ARGOCD_VERSION"
python3 - "$gomod" <<'PY' | while read -r old new ver; do go mod edit -replace="$old=$new@$ver"; done
import re, sys
text = open(sys.argv[1]).read()
for block in re.findall(r"^replace\s*\((.*?)^\)", text, re.M | re.S):
    for m in re.finditer(r"^\s*(\S+)\s+=>\s+(\S+)\s+(v\S+)\s*$", block, re.M):
        print(*m.groups())
for m in re.finditer(r"^replace\s+(\S+)\s+=>\s+(\S+)\s+(v\S+)\s*$", text, re.M):
    print(*m.groups())  # single-line replaces; local ones (./gitops-engine) have no version
PY
GOFLAGS="$GOFLAGS -mod=mod" go mod tidy -e >/dev/null 2>&1 || true
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/argoproj/argo-cd/v3/cmd"
GO
GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath \
  -ldflags "-s -w -X github.com/argoproj/argo-cd/v3/common.version=${ARGOCD_VERSION#v}" \
  -o "$OUT/argocd.tmp" "$mod/cmd"
mv "$OUT/argocd.tmp" "$OUT/argocd"
install -m 0755 "$src/hack/git-verify-wrapper.sh" "$OUT/git-verify-wrapper.sh"
rm -rf "$OUT/crds" && cp -r "$src/manifests/crds" "$OUT/crds" && chmod -R u+w "$OUT/crds"
log "done in $(( $(date +%s) - start ))s"
echo "$OUT"
