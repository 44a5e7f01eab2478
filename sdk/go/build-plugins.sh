#!/usr/bin/env bash
# Builds MDSA Go plugins to WebAssembly: every plugins/<name>/ with Go files
# becomes plugins/<name>/<name>.wasm (Extism ABI, reactor module).
#
# Usage: sdk/go/build-plugins.sh [-o OUTDIR] [name ...]
#   name     build only these plugins (default: all under plugins/)
#   -o DIR   write DIR/<name>.wasm instead of plugins/<name>/<name>.wasm
# Environment: GO (default: go).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
go=${GO:-go}
outdir=""
if [[ ${1:-} == "-o" ]]; then
	[[ $# -ge 2 ]] || { echo "build-plugins: -o needs a directory" >&2; exit 2; }
	outdir=$2
	shift 2
	mkdir -p "$outdir"
	outdir=$(cd "$outdir" && pwd)
fi

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
	for dir in plugins/*/; do
		ls "$dir"*.go >/dev/null 2>&1 && names+=("$(basename "$dir")")
	done
fi
[[ ${#names[@]} -gt 0 ]] || { echo "build-plugins: no plugins found under $root/plugins" >&2; exit 1; }

for name in "${names[@]}"; do
	[[ -d plugins/$name ]] || { echo "build-plugins: no such plugin: plugins/$name" >&2; exit 1; }
	out=${outdir:-plugins/$name}/$name.wasm
	start=$EPOCHREALTIME
	GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -trimpath -ldflags=-s -o "$out" "./plugins/$name"
	printf 'built %-40s %8d bytes  %ss\n' "$out" "$(wc -c <"$out")" "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
done
