#!/usr/bin/env bash
# podman as this project runs it on this machine: storage under .tools/podman
# (kept between runs), the runc runtime (crun cannot run on a cgroups v1 hybrid
# host). Containers also need explicit ulimits (no CAP_SYS_RESOURCE here):
# pass `--ulimit nofile=20000:20000 --ulimit nproc=32768:32768` to `run`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STATE="$ROOT/.tools/podman"
mkdir -p "$STATE"
exec podman --root "$STATE/root" --runroot "$STATE/run" --storage-driver overlay --runtime runc "$@"
