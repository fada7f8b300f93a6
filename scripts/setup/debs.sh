#!/usr/bin/env bash
# Install Debian packages needed by ordermesh's local stack, only when missing.
# Usage: scripts/setup/debs.sh [pkg...]   (default: redis-server mariadb-server prometheus)
# Services are NOT started or enabled: there is no systemd here; launchers start
# the daemons themselves.
set -euo pipefail

pkgs=("$@")
if [ "${#pkgs[@]}" -eq 0 ]; then
  pkgs=(redis-server mariadb-server prometheus)
fi

# Check each package with dpkg-query first so the warm path never touches apt
# (apt-get update alone costs seconds and network).
missing=()
for p in "${pkgs[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [ "$status" != "install ok installed" ]; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "debs: all present: ${pkgs[*]}"
  exit 0
fi

echo "debs: installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# Another apt/dpkg run may hold the lock (e.g. a parallel setup); wait for it
# instead of failing.
APT=(apt-get -o DPkg::Lock::Timeout=600 -y)
$SUDO "${APT[@]}" update -qq
# policy-rc.d 101 keeps maintainer scripts from trying to start services
# (no init system here; a start attempt only produces noise or failures).
prc=/usr/sbin/policy-rc.d
created_prc=0
if [ ! -e "$prc" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$prc" >/dev/null
  $SUDO chmod +x "$prc"
  created_prc=1
fi
cleanup() { if [ "$created_prc" = 1 ]; then $SUDO rm -f "$prc"; fi; }
trap cleanup EXIT
$SUDO "${APT[@]}" install -qq --no-install-recommends "${missing[@]}"
echo "debs: done"
