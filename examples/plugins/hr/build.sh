#!/bin/sh
# build.sh builds the hr plugin: examples/plugins/hr/hr.wasm (or the path
# given as the first argument) from main.rs and the Rust SDK
# (sdk/rust/mdsa.rs), with Debian's rustc for wasm32-unknown-unknown. No
# crates are fetched.
#
# Usage: examples/plugins/hr/build.sh [OUT.wasm]
# Environment: RUSTC (default /usr/bin/rustc; rustup's rustc usually has no
# wasm32 standard library). Install the toolchain with sdk/rust/setup.sh.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/hr.wasm}
rustc=${RUSTC:-/usr/bin/rustc}

if [ ! -x "$rustc" ]; then
	echo "build.sh: $rustc not found: the hr plugin needs rustc with the wasm32-unknown-unknown std;" >&2
	echo "          run sdk/rust/setup.sh (apt-get install rustc cargo libstd-rust-dev-wasm32) or set RUSTC" >&2
	exit 1
fi
sysroot=$("$rustc" --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib" ]; then
	echo "build.sh: $rustc ($("$rustc" --version)) has no wasm32-unknown-unknown standard library;" >&2
	echo "          run sdk/rust/setup.sh (apt-get install libstd-rust-dev-wasm32) or set RUSTC" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# opt-level=s, fat LTO, one codegen unit, stripped symbols: a small module
# (panics abort on this target). Bulk memory (allowed by ABI v1) makes
# copies single instructions instead of loops, each iteration of which costs
# a termination check in the sandbox. A 256 KiB stack (default 1 MiB; the
# SDK's JSON nesting limit needs far less) keeps each instance's memory at
# 5 pages; the stack sits below the data, so an overflow traps.
"$rustc" --edition 2021 --crate-name hr --crate-type cdylib --target wasm32-unknown-unknown \
	-C opt-level=s -C lto -C codegen-units=1 -C strip=symbols -C debuginfo=0 -C target-feature=+bulk-memory -C link-arg=-zstack-size=262144 \
	--out-dir "$tmp" "$here/main.rs"
mkdir -p "$(dirname "$out")"
cp "$tmp/hr.wasm" "$out"
echo "built $out ($(wc -c <"$out") bytes)"
