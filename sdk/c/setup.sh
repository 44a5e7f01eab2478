#!/bin/sh
# Installs the toolchain the MDSA C SDK needs: clang with the wasm32 target
# and wasm-ld (Debian packages clang and lld). Idempotent: does nothing when
# a working toolchain is already there. Needs root (or sudo) to install.
set -eu

have_toolchain() {
	command -v clang >/dev/null 2>&1 || return 1
	command -v wasm-ld >/dev/null 2>&1 || return 1
	clang --print-targets 2>/dev/null | grep -q wasm32 || return 1
}

if have_toolchain; then
	echo "sdk/c: toolchain present: $(clang --version | head -n1), $(command -v wasm-ld)"
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "sdk/c: clang/wasm-ld missing and not root (no sudo): run 'apt-get install -y clang lld' as root" >&2
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "sdk/c: no apt-get here: install clang (with the wasm32 target) and lld (wasm-ld) yourself" >&2
	exit 1
fi

echo "sdk/c: installing clang and lld with apt-get"
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q clang lld

if ! have_toolchain; then
	echo "sdk/c: clang/wasm-ld still not usable after apt-get install" >&2
	exit 1
fi
echo "sdk/c: toolchain ready: $(clang --version | head -n1)"
