#!/usr/bin/env bash
# Installs the Automerge peer of `python -m benchmarks conflict` (the npm package pinned in
# package-lock.json, next to this script) into ~/.cache/novacron/automerge/<version> and
# prints that directory; later runs reuse it. Needs Node.js (tested with 20) and npm
# (registry access).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's/.*"@automerge\/automerge": "\(.*\)".*/\1/p' "$here/package.json")
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=$CACHE/automerge/$version
if [ -f "$OUT/node_modules/@automerge/automerge/package.json" ] \
  && cmp -s "$here/package-lock.json" "$OUT/package-lock.json"; then
  echo "$OUT"; exit 0
fi
command -v npm >/dev/null || { echo "npm not found: install Node.js (tested with 20) and npm" >&2; exit 1; }
# install into a temp dir, then move it in place: an interrupted run leaves no half cache
mkdir -p "$CACHE/automerge"
work=$(mktemp -d "$CACHE/automerge/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
rm -rf "$OUT"
mv "$work" "$OUT"
trap - EXIT
echo "$OUT"
