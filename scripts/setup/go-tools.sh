#!/usr/bin/env bash
# Build pinned Go CLI tools into $REPO/.tools/bin with `go install`.
# Usage: scripts/setup/go-tools.sh [tool...]   (no args = all tools)
# A tool is skipped when its binary exists and its stamp file
# .tools/bin/.<tool>.version matches the pinned package@version, so a warm run
# is instant. Go's module cache (GOMODCACHE) and build cache (GOCACHE) are the
# normal user-wide ones, so a rebuild after `rm -rf .tools` re-downloads nothing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$REPO/.tools/bin"

# Pinned versions (all verified to build with Go 1.26, CGO_ENABLED=0).
declare -A PKG=(
  [grpcurl]="github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"
  [helm]="helm.sh/helm/v3/cmd/helm@v3.22.0"
  [k6]="go.k6.io/k6@v1.8.1"
  # Jaeger v2 binary (all-in-one by default when started without --config).
  [jaeger]="github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0"
)
ORDER=(grpcurl helm k6 jaeger)

# Extra linker flags per tool: helm reads its version from ldflags only
# (otherwise `helm version` prints v3.x-unreleased-ish defaults).
declare -A LDX=(
  [helm]="-X helm.sh/helm/v3/internal/version.version=v3.22.0"
)

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || { echo "go-tools: go not found" >&2; exit 1; }

tools=("$@")
[ "${#tools[@]}" -gt 0 ] || tools=("${ORDER[@]}")

mkdir -p "$BIN"
# Static binaries, no C toolchain needed; never fetch a different Go toolchain.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$BIN"
# Keep any GOFLAGS the user has, add -trimpath for reproducible, cache-stable builds.
export GOFLAGS="${GOFLAGS:-} -trimpath"

rc=0
for t in "${tools[@]}"; do
  pkg="${PKG[$t]:-}"
  if [ -z "$pkg" ]; then
    echo "go-tools: unknown tool '$t' (known: ${ORDER[*]})" >&2
    rc=1; continue
  fi
  stamp="$BIN/.$t.version"
  if [ -x "$BIN/$t" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then
    echo "go-tools: $t up to date ($pkg)"
    continue
  fi
  echo "go-tools: installing $t ($pkg)"
  start=$SECONDS
  if "$GO" install -ldflags "-s -w ${LDX[$t]:-}" "$pkg"; then
    # go install names the binary after the last path element; all pins above
    # already end in the tool name, this guards against future changes.
    built="$BIN/$(basename "${pkg%@*}")"
    [ "$built" = "$BIN/$t" ] || mv -f "$built" "$BIN/$t"
    printf '%s\n' "$pkg" > "$stamp"
    echo "go-tools: $t built in $((SECONDS - start))s"
  else
    echo "go-tools: FAILED to build $t ($pkg)" >&2
    rc=1
  fi
done
exit $rc
