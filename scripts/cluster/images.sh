#!/usr/bin/env bash
# The two images a real-kubelet node needs besides the mesh's own, built with
# podman (no image registry is reachable here), each once per machine:
#   localhost/pause:3.10         the pod sandbox: a static C pause, FROM scratch
#   localhost/coredns:v1.15.0    cluster DNS: the CoreDNS scripts/cluster/build.sh built
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/.tools/cluster/bin"
WORK="$ROOT/build/cluster-images"
podman_() { "$ROOT/scripts/image/podman.sh" "$@"; }

if ! podman_ image exists localhost/pause:3.10; then
  mkdir -p "$WORK/pause"
  gcc -static -Os -s -o "$WORK/pause/pause" "$ROOT/scripts/cluster/pause/pause.c"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$WORK/pause/Containerfile"
  podman_ build --network none -t localhost/pause:3.10 -f "$WORK/pause/Containerfile" "$WORK/pause" >/dev/null
  echo "cluster images: built localhost/pause:3.10"
fi

version="$(cat "$BIN/.coredns.version")"
if ! podman_ image exists "localhost/coredns:$version"; then
  mkdir -p "$WORK/coredns"
  cp "$BIN/coredns" "$WORK/coredns/coredns"
  printf 'FROM scratch\nCOPY coredns /coredns\nUSER 65532:65532\nENTRYPOINT ["/coredns"]\n' > "$WORK/coredns/Containerfile"
  podman_ build --network none -t "localhost/coredns:$version" -f "$WORK/coredns/Containerfile" "$WORK/coredns" >/dev/null
  echo "cluster images: built localhost/coredns:$version"
fi
