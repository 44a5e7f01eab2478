#!/bin/sh
# Builds the "legal" example plugin (AssemblyScript) into legal.wasm next to
# this script, or into the path given as the first argument. Needs Node.js
# and the SDK's pinned compiler: run sdk/assemblyscript/setup.sh once.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
sdk="$here/../../../sdk/assemblyscript"
asc="$sdk/node_modules/.bin/asc"

out="${1:-$here/legal.wasm}"
case "$out" in
/*) ;;
*) out="$(pwd)/$out" ;;
esac

if ! command -v node >/dev/null 2>&1; then
	echo "legal: Node.js is not installed; the AssemblyScript compiler needs it (then run sdk/assemblyscript/setup.sh)" >&2
	exit 1
fi
if [ ! -x "$asc" ]; then
	echo "legal: the AssemblyScript compiler is missing ($asc): run sdk/assemblyscript/setup.sh" >&2
	exit 1
fi

cd "$here"
# The abort handler is given by its path inside the program, relative to
# this directory (the entry file's).
"$asc" legal.ts --outFile "$out" -O3 --use abort=../../../sdk/assemblyscript/assembly/io/mdsaAbort
echo "legal: built $out ($(wc -c <"$out" | tr -d ' ') bytes)"
