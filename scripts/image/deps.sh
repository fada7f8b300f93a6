#!/usr/bin/env bash
# Build the dev dependencies image (Redis and MariaDB) that the chart runs with
# devDependencies.enabled=true, with podman.
#
# Usage: scripts/image/deps.sh [TAG]        (default localhost/ordermesh-deps:bookworm-1)
#
# No image registry is reachable here, so, like the base of the ordermesh image
# (scripts/image/build.sh), it is a Debian bookworm root filesystem from
# debootstrap, imported once per machine and kept: a second run finds it and
# does nothing. Bump the tag's suffix when the package list below changes.
#
# Only the servers and one client: redis-server (with redis-cli), mariadb-server-core
# (mariadbd, mariadb-install-db) and mariadb-client-core (mariadb, my_print_defaults,
# which mariadb-install-db calls). No init scripts are used: the chart starts the
# servers itself (helm/ordermesh/templates/dev-dependencies.yaml), as uid 10001 on
# a read-only root filesystem, writing only to its volumes (/data, /tmp).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
TAG="${1:-localhost/ordermesh-deps:bookworm-1}"   # bump the suffix when the packages change
PACKAGES="redis-server,mariadb-server-core,mariadb-client-core"
PODMAN_STATE="$ROOT/.tools/podman"

podman_() { "$ROOT/scripts/image/podman.sh" "$@"; }

if podman_ image exists "$TAG"; then
  echo "image: $TAG is there"
  exit 0
fi

echo "image: making $TAG with debootstrap (once per machine)"
MIRROR="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
MIRROR="${MIRROR:-$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list)}"
rootfs="$PODMAN_STATE/rootfs-deps-bookworm"
rm -rf "$rootfs"
started=$SECONDS
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >/dev/null
echo "image: debootstrap took $((SECONDS - started)) s"

# Smaller: no package manager caches, docs, man pages or translations; MariaDB's
# server messages in English only (the default lc_messages).
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*
find "$rootfs/usr/share/mysql" -mindepth 1 -maxdepth 1 -type d ! -name english ! -name charsets -exec rm -rf {} +

# uid 10001, the pods' user, gets a name: MariaDB's unix_socket authentication
# maps the client process's user to the account of the same name, so the probes
# connect as `mysql` over the socket without a password. (No Debian package here
# creates a `mysql` user: that is mariadb-server's postinst, not installed.)
sed -i '/^mysql:/d' "$rootfs/etc/passwd" "$rootfs/etc/group"
echo "mysql:x:10001:10001:MariaDB and Redis (ordermesh dev):/tmp:/usr/sbin/nologin" >> "$rootfs/etc/passwd"
echo "mysql:x:10001:" >> "$rootfs/etc/group"

tar -C "$rootfs" -c . | podman_ import --message "debootstrap bookworm + $PACKAGES" \
  --change "USER=10001:10001" --change "WORKDIR=/tmp" --change "ENV=HOME=/tmp" \
  --change "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" - "$TAG" >/dev/null
rm -rf "$rootfs"
echo "image: built $TAG ($(podman_ image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%d MB", $1/1e6}'))"
