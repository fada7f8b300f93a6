#!/usr/bin/env bash
# Build the local cluster's binaries from the Go module proxy into
# .tools/cluster/bin, each skipped when its version stamp matches (the Go build
# cache keeps a rebuild to seconds on one machine):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#   kubelet, kube-proxy                                  v1.35.4
#   etcd v3.6.16 (Debian's 3.4 is too old for kwok's watches), kwok v0.8.0
#   CoreDNS v1.15.0 with only the plugins a cluster's DNS needs
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="$ROOT/.tools/cluster"
BIN="$OUT/bin"
K8S=v1.35.4
STAGING=v0.35.4
ETCD=v3.6.16
KWOK=v0.8.0
COREDNS=v1.15.0
GO="$(command -v go || echo /usr/local/go/bin/go)"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath"
mkdir -p "$BIN"

stamped() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" > "$BIN/.$1.version"; }

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
need=0
for cmd in "${K8S_CMDS[@]}"; do stamped "$cmd" "$K8S" || need=1; done
if [ "$need" = 1 ]; then
  echo "cluster: building Kubernetes $K8S (minutes the first time on a machine)"
  mod="$OUT/kbuild"
  mkdir -p "$mod"
  # k8s.io/kubernetes pins its staging modules to ./staging: every one is
  # replaced by its published version.
  {
    echo "module example.local/kbuild"
    echo
    echo "go 1.25.0"
    echo
    echo "require k8s.io/kubernetes $K8S"
    echo
    echo "replace ("
    for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider \
      cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api \
      cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms \
      kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics \
      mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller; do
      echo "	k8s.io/$m => k8s.io/$m $STAGING"
    done
    echo ")"
  } > "$mod/go.mod"
  ver="k8s.io/component-base/version"
  ldflags="-s -w -X $ver.gitVersion=$K8S -X $ver.gitMajor=1 -X $ver.gitMinor=35 -X $ver.gitTreeState=clean"
  ldflags="$ldflags -X $ver.buildDate=2026-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=$K8S"
  (
    cd "$mod"
    for cmd in "${K8S_CMDS[@]}"; do "$GO" get "k8s.io/kubernetes/cmd/$cmd@$K8S" >/dev/null 2>&1; done
    "$GO" build -ldflags "$ldflags" -o "$BIN/" $(printf 'k8s.io/kubernetes/cmd/%s ' "${K8S_CMDS[@]}")
  )
  for cmd in "${K8S_CMDS[@]}"; do stamp "$cmd" "$K8S"; done
fi

if ! stamped etcd "$ETCD"; then
  echo "cluster: building etcd $ETCD"
  mod="$OUT/etcdbuild"
  mkdir -p "$mod"
  printf 'module example.local/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD" > "$mod/go.mod"
  (cd "$mod" && "$GO" get "go.etcd.io/etcd/server/v3@$ETCD" >/dev/null 2>&1 && "$GO" build -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  stamp etcd "$ETCD"
fi

if ! stamped kwok "$KWOK"; then
  echo "cluster: building kwok $KWOK"
  GOBIN="$BIN" "$GO" install "sigs.k8s.io/kwok/cmd/kwok@$KWOK"
  stamp kwok "$KWOK"
fi
if ! stamped coredns "$COREDNS"; then
  echo "cluster: building CoreDNS $COREDNS"
  mod="$OUT/corednsbuild"
  mkdir -p "$mod"
  # The stock build links about a hundred cloud modules this cluster never uses:
  # this one links the plugins of the Corefile in mesh/local/cluster.py only.
  printf 'module example.local/corednsbuild\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns %s\n' "$COREDNS" > "$mod/go.mod"
  {
    echo "package main"
    echo
    echo "import ("
    echo '	"github.com/coredns/coredns/coremain"'
    for plugin in cache errors forward health kubernetes loadbalance log loop metrics ready reload; do
      echo "	_ \"github.com/coredns/coredns/plugin/$plugin\""
    done
    echo ")"
    echo
    echo "func main() { coremain.Run() }"
  } > "$mod/main.go"
  (cd "$mod" && "$GO" mod tidy >/dev/null 2>&1 && "$GO" build -ldflags "-s -w" -o "$BIN/coredns" .)
  stamp coredns "$COREDNS"
fi
echo "cluster: binaries ready in $BIN"
