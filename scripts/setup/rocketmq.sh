#!/usr/bin/env bash
# Fetch the Apache RocketMQ server jars (name server, proxy + in-process broker,
# admin tool) into $REPO/.tools/rocketmq/lib via Maven (the only way to get them
# here: the binary zip is not on a reachable registry).
# Usage: scripts/setup/rocketmq.sh
# The version lives in rocketmq-pom.xml only. A stamp file records version and
# pom checksum, so a warm run does not even start Maven. Maven itself runs
# offline first (~/.m2 already holding everything is the common case) and only
# goes online when something is missing.
# How to launch the servers: see ROCKETMQ-NOTES.md next to this file.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
POM="$HERE/rocketmq-pom.xml"
DEST="$REPO/.tools/rocketmq"
LIB="$DEST/lib"
STAMP="$DEST/.version"

VERSION="$(sed -n 's:.*<rocketmq.version>\(.*\)</rocketmq.version>.*:\1:p' "$POM" | head -n1)"
[ -n "$VERSION" ] || { echo "rocketmq: no <rocketmq.version> in $POM" >&2; exit 1; }
WANT="$VERSION $(sha256sum "$POM" | cut -c1-16)"

if [ -f "$LIB/rocketmq-proxy-$VERSION.jar" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  echo "rocketmq: $VERSION up to date in $LIB"
  exit 0
fi

command -v mvn >/dev/null || { echo "rocketmq: mvn not found (apt-get install maven)" >&2; exit 1; }

# Copy into a fresh temp dir and swap it in, so jars of an older version never
# linger on the classpath and an interrupted run leaves the old lib intact.
mkdir -p "$DEST"
TMP="$(mktemp -d "$DEST/lib.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
MVN=(mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies
     -DincludeScope=runtime -DoutputDirectory="$TMP")

echo "rocketmq: fetching $VERSION jars"
if ! "${MVN[@]}" -o >/dev/null 2>&1; then
  echo "rocketmq: not all in ~/.m2, resolving online"
  rm -rf "${TMP:?}"/*
  "${MVN[@]}"
fi
[ -f "$TMP/rocketmq-proxy-$VERSION.jar" ] || { echo "rocketmq: proxy jar missing after fetch" >&2; exit 1; }

rm -rf "$LIB.old"
[ ! -d "$LIB" ] || mv "$LIB" "$LIB.old"
mv "$TMP" "$LIB"
rm -rf "$LIB.old"
printf '%s\n' "$WANT" > "$STAMP"
echo "rocketmq: $VERSION ready: $(ls "$LIB" | wc -l) jars in $LIB"
