#!/usr/bin/env bash
# Builds the two NovaCron images (images/core.Dockerfile, operator/Dockerfile).
#   - with a Docker engine: `docker build`, as the GitHub workflow does;
#   - without one (our dev machines, CI): buildah with chroot isolation and the host's
#     network, on a Debian bookworm + python3.11 base made by mmdebstrap from Debian's
#     packages (Docker Hub's python image is out of reach), cached under ~/.cache/novacron.
# Each image is also saved as a docker-archive under $CACHE/images (for `ctr images import`
# on the real node); the path of each archive is printed, one a line.
#   images/build.sh                 build both (a warm rebuild only redoes what changed)
#   IMAGES_ENGINE=buildah|docker    force an engine
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=$CACHE/images
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
REGISTRY=${IMAGES_REGISTRY:-ghcr.io/novacron}
BASE_SUITE=bookworm
BASE_PACKAGES=python3.11,python3-venv,python3-pip,python-is-python3,passwd,ca-certificates
BASE_IMAGE=localhost/novacron-python-base:3.11-$BASE_SUITE
# name -> Dockerfile (the GitHub workflow's matrix names them the same way)
declare -A DOCKERFILES=([novacron]=images/core.Dockerfile [novacron-operator]=operator/Dockerfile)
log() { printf '[images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
mkdir -p "$OUT"
# one build at a time per cache (CI's and a test's at once wrote the same archive.tmp)
exec 9>"$OUT/.lock"
flock 9

engine=${IMAGES_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=buildah; fi
fi

if [ "$engine" = docker ]; then
  for name in "${!DOCKERFILES[@]}"; do
    ref=$REGISTRY/$name:$VERSION
    log "docker build $ref"
    docker build -f "${DOCKERFILES[$name]}" -t "$ref" . >&2
    docker save -o "$OUT/$name-$VERSION.tar" "$ref"
    echo "$OUT/$name-$VERSION.tar"
  done
  exit 0
fi

for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "images: $tool not found (apt-get install buildah mmdebstrap, or run .ci/run)" >&2; exit 1; }
done
if command -v crun >/dev/null; then
  # crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported") and
  # buildah picks it over runc when both are there
  export BUILDAH_RUNTIME=${BUILDAH_RUNTIME:-$(command -v runc)}
fi
# our own store, not /var/lib/containers: nothing else on the machine sees or prunes it
bh=(buildah --root "$CACHE/buildah/root" --runroot "$CACHE/buildah/run" --storage-driver overlay)

base_tar=$OUT/python-base-$BASE_SUITE.tar
if [ ! -f "$base_tar" ] || [ ! -s "$base_tar" ]; then
  log "mmdebstrap $BASE_SUITE minbase + $BASE_PACKAGES (once; cached in $base_tar)"
  # mmdebstrap picks the output format from the name: keep .tar at the end
  rm -rf "${base_tar%.tar}.partial.tar"
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" \
    "$BASE_SUITE" "${base_tar%.tar}.partial.tar" http://deb.debian.org/debian >&2
  mv "${base_tar%.tar}.partial.tar" "$base_tar"
fi
base_stamp=$(stat -c %Y "$base_tar")
if [ "$("${bh[@]}" inspect --type image --format '{{index .ImageAnnotations "novacron.base-stamp"}}' "$BASE_IMAGE" 2>/dev/null)" != "$base_stamp" ]; then
  log "committing $BASE_IMAGE from $base_tar"
  ctr=$("${bh[@]}" from scratch)
  "${bh[@]}" add "$ctr" "$base_tar" / >/dev/null
  "${bh[@]}" config --env LANG=C.UTF-8 --cmd python3 --annotation "novacron.base-stamp=$base_stamp" "$ctr"
  "${bh[@]}" commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
fi

for name in "${!DOCKERFILES[@]}"; do
  file=${DOCKERFILES[$name]}
  ref=$REGISTRY/$name:$VERSION
  ignore=()
  [ -f "$file.dockerignore" ] && ignore=(--ignorefile "$file.dockerignore")
  log "buildah build $ref ($file)"
  start=$(date +%s)
  # the host's CA bundle, so pip inside RUN trusts the registry's certificate chain
  "${bh[@]}" build --quiet --isolation chroot --network host --layers \
    --build-arg PYTHON_IMAGE="$BASE_IMAGE" "${ignore[@]}" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -f "$file" -t "$ref" . >&2
  id=$("${bh[@]}" inspect --type image --format '{{.FromImageID}}' "$ref")
  archive=$OUT/$name-$VERSION.tar
  if [ "$(cat "$archive.id" 2>/dev/null)" != "$id" ] || [ ! -s "$archive" ]; then
    # (a .tmp left by an interrupted build would make the push refuse: "doesn't support
    # modifying existing images")
    rm -f "$archive" "$archive.tmp"
    "${bh[@]}" push --quiet "$ref" "docker-archive:$archive.tmp:$ref" >&2
    mv "$archive.tmp" "$archive"
    echo "$id" > "$archive.id"
  fi
  log "$ref ready in $(( $(date +%s) - start ))s"
  echo "$archive"
done
