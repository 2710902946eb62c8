#!/usr/bin/env bash
# Builds the upstream Kubernetes control plane (plus etcd, kwok, helm) and what a real node
# needs (kubelet, kube-proxy, CoreDNS, kube-router's NetworkPolicy controller, the
# local-path provisioner, a pause binary) from the Go module proxy into a cache outside the
# repo, keyed by version, so later runs reuse it. containerd, runc and the CNI plugins come
# from Debian (.ci/run installs them).
# Why a throwaway consumer module: `go install pkg@version` refuses modules with replace
# directives (k8s.io/kubernetes replaces its staging modules with ./staging/...), so we
# require the module and replace each staging module with its published version instead.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
STAGING_VERSION=v0.${K8S_VERSION#v1.}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
ETCD_BENCH_VERSION=${ETCD_BENCH_VERSION:-v3.6.8}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
# real-node add-ons: named with their version inside the same directory, so bumping one
# rebuilds only that one
COREDNS_VERSION=${COREDNS_VERSION:-v1.15.0}
KUBE_ROUTER_VERSION=${KUBE_ROUTER_VERSION:-v2.1.0}  # the only v2 release the proxy serves
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.30}
CACHE=${NOVACRON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/novacron}
OUT=${K8S_BIN_DIR:-$CACHE/k8s-bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION}

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
mkdir -p "$OUT"
log() { printf '[k8s-bin %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

need=()
ADDONS=("coredns-$COREDNS_VERSION" "kube-router-$KUBE_ROUTER_VERSION" "local-path-provisioner-$LOCAL_PATH_VERSION" pause)
for b in etcd etcd-benchmark kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm \
         kubelet kube-proxy "${ADDONS[@]}"; do
  [ -x "$OUT/$b" ] || need+=("$b")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "$OUT"
  exit 0
fi
log "building ${need[*]} into $OUT (first build takes a while; later runs reuse it)"
start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/novacron-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# consumer <dir> <module> <version> [replace-source-module]
# Creates a module requiring <module>@<version>; if the upstream go.mod has local
# replace directives (./staging/..., ../api), each is replaced with the published module
# at the version its own require line names (or $STAGING_VERSION for k8s staging).
consumer() {
  local dir=$1 mod=$2 ver=$3
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod init "novacron.local/build-$(basename "$dir")" >/dev/null 2>&1
    gomod=$(go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    go mod edit -require="$mod@$ver"
    python3 - "$gomod" "$STAGING_VERSION" <<'PY' | while read -r m v; do go mod edit -replace="$m=$m@$v"; done
import re, sys
text = open(sys.argv[1]).read()
requires = dict(re.findall(r'^\s*(\S+)\s+(v\S+)', text, re.M))
for m in re.findall(r'^\s*(\S+)(?:\s+v\S+)?\s+=>\s+\.\.?/', text, re.M):
    v = sys.argv[2] if m.startswith('k8s.io/') else requires.get(m)
    if v and not v.startswith('v0.0.0'):
        print(m, v)
    elif m.startswith('k8s.io/'):
        print(m, sys.argv[2])
PY
  )
}

build() { # build <dir> <out-name> <package> [ldflags]
  local dir=$1 name=$2 pkg=$3 ldflags=${4:-}
  [ -x "$OUT/$name" ] && return 0
  log "go build $pkg"
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true
   cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags "-s -w $ldflags" -o "$OUT/$name.tmp" "$pkg")
  mv "$OUT/$name.tmp" "$OUT/$name"
}

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
kver=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kver+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  kver+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

if [[ " ${need[*]} " == *" kube"* ]]; then
  consumer "$work/k8s" k8s.io/kubernetes "$K8S_VERSION"
  cat > "$work/k8s/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
)
GO
  # the control plane first: kubelet and kube-proxy reuse most of its compiled packages
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    build "$work/k8s" "$b" "k8s.io/kubernetes/cmd/$b" "$kver"
  done
fi
if [[ " ${need[*]} " == *" etcd "* ]]; then
  # etcd 3.6's main package lives in the root module (go.etcd.io/etcd/v3), whose go.mod
  # replaces every sibling module; a three-line main over server/etcdmain avoids that.
  consumer "$work/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > "$work/etcd/main.go"
  build "$work/etcd" etcd . "-X go.etcd.io/etcd/api/v3/version.GitSHA=novacron"
fi
if [[ " ${need[*]} " == *" etcd-benchmark "* ]]; then
  # etcd's own load tool, for `python -m benchmarks raft` to print its put figure as a
  # reference. It lives in etcd's root module, whose newest version on the proxy is older
  # than the server's (3.6.8): a client-side tool, so the version gap does not matter.
  consumer "$work/etcd-tools" go.etcd.io/etcd/v3 "$ETCD_BENCH_VERSION"
  build "$work/etcd-tools" etcd-benchmark go.etcd.io/etcd/v3/tools/benchmark
fi
if [[ " ${need[*]} " == *" kwok "* ]]; then
  consumer "$work/kwok" sigs.k8s.io/kwok "$KWOK_VERSION"
  build "$work/kwok" kwok sigs.k8s.io/kwok/cmd/kwok
  # kwok needs its stage definitions at run time; keep them beside the binary.
  src=$(cd "$work/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  mkdir -p "$OUT/kwok-stages" && cp -r "$src/kustomize/stage/." "$OUT/kwok-stages/" && chmod -R u+w "$OUT/kwok-stages"
fi
if [[ " ${need[*]} " == *" helm "* ]]; then
  consumer "$work/helm" helm.sh/helm/v3 "$HELM_VERSION"
  build "$work/helm" helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
fi
if [[ " ${need[*]} " == *" coredns-"* ]]; then
  # CoreDNS with only the plugins cluster DNS uses (its own main registers every plugin,
  # pulling in three clouds' SDKs); the directive order is upstream's, filtered.
  consumer "$work/coredns" github.com/coredns/coredns "$COREDNS_VERSION"
  cat > "$work/coredns/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	dnsserver.Directives = []string{
		"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes",
	}
}

func main() { coremain.Run() }
GO
  build "$work/coredns" "coredns-$COREDNS_VERSION" .
fi
if [[ " ${need[*]} " == *" kube-router-"* ]]; then
  # only its NetworkPolicy controller runs (--run-firewall); routing and proxying stay off
  consumer "$work/kube-router" github.com/cloudnativelabs/kube-router/v2 "$KUBE_ROUTER_VERSION"
  build "$work/kube-router" "kube-router-$KUBE_ROUTER_VERSION" \
    github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
fi
if [[ " ${need[*]} " == *" local-path-provisioner-"* ]]; then
  # what kind uses for PersistentVolumeClaims: a directory per volume on the node
  consumer "$work/local-path" github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION"
  build "$work/local-path" "local-path-provisioner-$LOCAL_PATH_VERSION" \
    github.com/rancher/local-path-provisioner
fi
if [[ " ${need[*]} " == *" pause "* ]]; then
  # the pod sandbox's process (Docker Hub, home of registry.k8s.io/pause's mirror, is out of
  # reach): sleeps, reaps orphans, exits on SIGINT/SIGTERM like upstream's pause.c
  mkdir -p "$work/pause" && (cd "$work/pause" && go mod init novacron.local/pause >/dev/null 2>&1)
  cat > "$work/pause/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
GO
  build "$work/pause" pause .
fi
log "done in $(( $(date +%s) - start ))s"
echo "$OUT"
