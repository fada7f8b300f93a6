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
  # gRPC load generator used by `make bench-stock`.
  [ghz]="github.com/bojand/ghz/cmd/ghz@v0.121.0"
  # Jaeger v2 binary (runs as all-in-one with in-memory storage when started
  # without --config). Module tag v1.76.0 is the Dec 2025 release that ships
  # both cmd/all-in-one (v1) and cmd/jaeger (v2). Its go.mod has a replace
  # directive, which `go install pkg@version` refuses, so it is built from the
  # module cache copy instead (see SRC below).
  [jaeger]="github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0"
)
# Tools built with `go build` inside the downloaded module (its go.mod, with its
# replace directives, becomes the main module): tool -> "module@version ./pkg".
declare -A SRC=(
  [jaeger]="github.com/jaegertracing/jaeger@v1.76.0 ./cmd/jaeger"
)
ORDER=(grpcurl helm k6 ghz jaeger)

# Extra linker flags per tool: these read their version from ldflags only
# (otherwise `--version` prints "dev build"/empty); k6 uses Go build info.
declare -A LDX=(
  [grpcurl]="-X main.version=v1.9.4"
  [ghz]="-X main.version=v0.121.0"
  [helm]="-X helm.sh/helm/v3/internal/version.version=v3.22.0"
  [jaeger]="-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v1.76.0"
)
# Note: jaeger's UI assets are not in the module (built from a JS submodule
# upstream), so the UI on :16686 is a placeholder page; the HTTP/gRPC query
# APIs and OTLP ingest work.

GO="$(command -v go || true)"
[ -n "$GO" ] || GO=/usr/local/go/bin/go
[ -x "$GO" ] || { echo "go-tools: go not found" >&2; exit 1; }

tools=("$@")
[ "${#tools[@]}" -gt 0 ] || tools=("${ORDER[@]}")

mkdir -p "$BIN"
# Static binaries, no C toolchain needed; never fetch a different Go toolchain.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$BIN"
# Keep the GOFLAGS already in effect (env or `go env -w`), add -trimpath for
# reproducible builds independent of where the module cache lives.
GOFLAGS="$("$GO" env GOFLAGS) -trimpath"
export GOFLAGS

# build_from_module TOOL MODULE@VERSION PKGDIR: download (or reuse from
# GOMODCACHE) the module source and build PKGDIR with the module as main module.
build_from_module() {
  local t="$1" modver="$2" pkgdir="$3" dir
  # Run outside any Go module/workspace so the download is a plain module fetch.
  dir="$(cd "$BIN" && GOWORK=off "$GO" mod download -json "$modver" \
         | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [ -n "$dir" ] && [ -d "$dir" ] || { echo "go-tools: cannot download $modver" >&2; return 1; }
  # Build to a temp name, then move, so an interrupted build leaves no half binary.
  GOWORK=off "$GO" build -C "$dir" -ldflags "-s -w ${LDX[$t]:-}" -o "$BIN/.$t.tmp" "$pkgdir" \
    && mv -f "$BIN/.$t.tmp" "$BIN/$t"
}

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
  if [ -n "${SRC[$t]:-}" ]; then
    if build_from_module "$t" ${SRC[$t]}; then ok=1; else ok=0; fi
  elif "$GO" install -ldflags "-s -w ${LDX[$t]:-}" "$pkg"; then
    # go install names the binary after the last path element; all pins above
    # already end in the tool name, this guards against future changes.
    built="$BIN/$(basename "${pkg%@*}")"
    [ "$built" = "$BIN/$t" ] || mv -f "$built" "$BIN/$t"
    ok=1
  else
    ok=0
  fi
  if [ "$ok" = 1 ]; then
    printf '%s\n' "$pkg" > "$stamp"
    echo "go-tools: $t built in $((SECONDS - start))s"
  else
    echo "go-tools: FAILED to build $t ($pkg)" >&2
    rc=1
  fi
done
exit $rc
