#!/bin/sh
# Builds the "travel" example plugin (C, sdk/c/mdsa.h) into travel.wasm next
# to this script, or into the path given as the first argument. Extra
# compiler flags may be passed in CFLAGS (the SDK tests add
# -DMDSA_TRAVEL_HANDLE). Needs clang with the wasm32 target and wasm-ld:
# run sdk/c/setup.sh once (Debian packages clang and lld).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
CC="${CC:-clang}"

out="${1:-$here/travel.wasm}"
case "$out" in
/*) ;;
*) out="$(pwd)/$out" ;;
esac

if ! command -v "$CC" >/dev/null 2>&1; then
	echo "travel: $CC is not installed: run sdk/c/setup.sh (apt-get install -y clang lld)" >&2
	exit 1
fi
if ! command -v wasm-ld >/dev/null 2>&1; then
	echo "travel: wasm-ld is not installed: run sdk/c/setup.sh (apt-get install -y lld)" >&2
	exit 1
fi
if ! "$CC" --print-targets 2>/dev/null | grep -q wasm32; then
	echo "travel: $CC has no wasm32 target: install a clang built with WebAssembly support (Debian's clang has it)" >&2
	exit 1
fi

# shellcheck disable=SC2086 # CFLAGS is a list of flags
"$CC" --target=wasm32 -O2 -mbulk-memory -nostdlib -ffreestanding -std=c11 \
	-Wall -Wextra -Werror ${CFLAGS:-} \
	-Wl,--no-entry -Wl,--strip-all \
	-o "$out" "$here/travel.c"
echo "travel: built $out ($(wc -c <"$out" | tr -d ' ') bytes)"
