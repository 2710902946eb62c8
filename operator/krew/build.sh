#!/usr/bin/env bash
# The krew release archive of `kubectl novacron`: the plugin and its dependencies
# (kubernetes, click, rich and theirs, pinned by constraints.txt) in lib/, a launcher that
# runs them with python3.11, and the manifest with the archive's sha256 filled in.
# The kubernetes client pulls in pydantic-core, a compiled module: the archive is for
# CPython 3.11 on linux/amd64, and the manifest's selector and caveats say so.
#   Usage: operator/krew/build.sh [OUT_DIR]   (default dist/krew)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-dist/krew}")
VERSION=v$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
PY=${PYTHON:-python3}
archive="$OUT/kubectl-novacron-$VERSION-linux-amd64.tar.gz"
# the same inputs give the same archive: reuse the cached one
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}/krew
key=$(cat constraints.txt pyproject.toml operator/krew/build.sh operator/krew/novacron.yaml \
      operator/novacron_operator/__init__.py operator/novacron_operator/plugin/*.py | sha256sum | cut -c1-16)
if [ -s "$CACHE/$key/$(basename "$archive")" ]; then
  mkdir -p "$OUT"
  cp "$CACHE/$key/$(basename "$archive")" "$CACHE/$key/novacron.yaml" "$OUT/"
  echo "$archive"
  echo "$OUT/novacron.yaml"
  exit 0
fi
stage=$(mktemp -d "${TMPDIR:-/tmp}/kubectl-novacron.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$OUT" "$stage/lib/novacron_operator"
deps=$("$PY" -c 'import re,tomllib; d=tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]; print(" ".join(x for x in d if re.match(r"(kubernetes|click|rich)\b", x)))')
# shellcheck disable=SC2086
"$PY" -m pip install -q --disable-pip-version-check --no-compile --target "$stage/lib" \
  --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
  --only-binary :all: -c constraints.txt $deps >&2
cp operator/novacron_operator/__init__.py "$stage/lib/novacron_operator/"
cp -r operator/novacron_operator/plugin "$stage/lib/novacron_operator/plugin"
find "$stage/lib" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$stage/lib/bin"
cat > "$stage/kubectl-novacron" <<'SH'
#!/bin/sh
# kubectl novacron: run the plugin from the lib/ beside this file with CPython 3.11
here=$(dirname "$(readlink -f "$0")")
for py in python3.11 python3; do
  if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    exec env PYTHONPATH="$here/lib" "$py" -c 'import sys; from novacron_operator.plugin.cli import main; sys.argv[0] = "kubectl-novacron"; main()' "$@"
  fi
done
echo "kubectl-novacron: needs CPython 3.11 on PATH (python3.11 or python3); found none" >&2
exit 127
SH
chmod 0755 "$stage/kubectl-novacron"
printf 'Apache-2.0 (see https://github.com/novacron/novacron)\n' > "$stage/LICENSE.txt"
# reproducible: fixed order, owner and mtime
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - \
  kubectl-novacron lib LICENSE.txt | gzip -n > "$archive"
sha=$(sha256sum "$archive" | cut -d' ' -f1)
sed -e "s/@SHA256@/$sha/" -e "s/^  version: .*/  version: $VERSION/" \
  -e "s#/download/v[^/]*/kubectl-novacron-v[^/]*-linux-amd64\.tar\.gz#/download/$VERSION/kubectl-novacron-$VERSION-linux-amd64.tar.gz#" \
  operator/krew/novacron.yaml > "$OUT/novacron.yaml"
rm -rf "$CACHE" && mkdir -p "$CACHE/$key" && cp "$archive" "$OUT/novacron.yaml" "$CACHE/$key/"
echo "$archive"
echo "$OUT/novacron.yaml"
