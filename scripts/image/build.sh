#!/usr/bin/env bash
# Build the one ordermesh image (every context: `python -m <context>`) with podman.
#
# Usage: scripts/image/build.sh [TAG]        (default localhost/ordermesh:dev)
#
# This machine has no image registry, so the base is made here: a Debian
# bookworm root filesystem from debootstrap (python3 3.11, as on the host),
# imported once into podman and kept. The Containerfile's BASE defaults to the
# slim Python image for users with a registry; here it is the local base.
#
# Dependencies are installed on the host from wheels only (no compiler is ever
# needed, none is in the image) into a layer of their own, which changes only
# with requirements.lock; the project is a second, small layer.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
TAG="${1:-localhost/ordermesh:dev}"
BASE="localhost/ordermesh-base:bookworm-1"   # bump the suffix when the base's packages change
BUILD="$ROOT/build/image"
PODMAN_STATE="$ROOT/.tools/podman"
PY="$ROOT/.venv/bin/python"

# Podman on this VM: its own storage under .tools, runc (crun cannot run on a
# cgroups v1 hybrid host), and no CAP_SYS_RESOURCE, hence the explicit ulimits
# wherever a container runs (see scripts/image/podman.sh).
podman_() { "$ROOT/scripts/image/podman.sh" "$@"; }

if ! podman_ image exists "$BASE"; then
  echo "image: making the base $BASE with debootstrap (once per machine)"
  MIRROR="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  MIRROR="${MIRROR:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)}"
  rootfs="$PODMAN_STATE/rootfs-bookworm"
  rm -rf "$rootfs"
  # The full python3 (python3-minimal has no asyncio); nothing else.
  debootstrap --variant=minbase --include=python3,ca-certificates bookworm "$rootfs" "$MIRROR" >/dev/null
  # Smaller and safer: no package manager caches, docs or man pages in the base.
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -c . | podman_ import --message "debootstrap bookworm + python3" - "$BASE" >/dev/null
  rm -rf "$rootfs"
fi

# The dependency layer: rebuilt only when the pins change.
stamp="$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$BUILD/deps.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "image: installing the dependencies from wheels"
  rm -rf "$BUILD/deps"
  mkdir -p "$BUILD"
  deps="$("$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"]["dependencies"]))')"
  # pip evaluates environment markers with the host's Python (3.11.7 here), not
  # the image's (Debian's 3.11.2): redis needs async-timeout below 3.11.3, so it
  # is named explicitly.
  # shellcheck disable=SC2086
  "$PY" -m pip install -q --target "$BUILD/deps" --only-binary=:all: --no-compile \
    --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform linux_x86_64 --implementation cp \
    -c requirements.lock $(echo "$deps" | tr '\n' ' ') "async-timeout>=4.0.3"
  echo "$stamp" > "$BUILD/deps.stamp"
fi

# The project layer: the runtime packages only (no tests, no launcher, no tools;
# loadgen drives load from a pod; the gateway brings its console's files).
rm -rf "$BUILD/app"
mkdir -p "$BUILD/app"
for package in mesh common catalog checkout order payment shipping analytics gateway auditor loadgen ordermesh; do
  cp -r "$package" "$BUILD/app/"
done
find "$BUILD/app" -name __pycache__ -prune -exec rm -rf {} +

podman_ build --network none --build-arg "BASE=$BASE" -t "$TAG" -f Containerfile . >/dev/null
echo "image: built $TAG ($(podman_ image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%d MB", $1/1e6}'))"
