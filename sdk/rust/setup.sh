#!/bin/sh
# setup.sh installs the toolchain the Rust plugin SDK needs: Debian's rustc
# with the wasm32-unknown-unknown standard library. It is idempotent: when
# /usr/bin/rustc can already build for wasm32 it does nothing.
#
# Debian 12 ships rustc 1.63. The SDK calls /usr/bin/rustc by path because a
# rustup installation (~/.cargo/bin/rustc) usually comes first in PATH and
# has no wasm32 standard library. No crates are fetched (crates.io is not
# used at all).
set -eu

RUSTC=${RUSTC:-/usr/bin/rustc}

has_wasm_std() {
	[ -x "$RUSTC" ] || return 1
	sysroot=$("$RUSTC" --print sysroot 2>/dev/null) || return 1
	[ -d "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib" ]
}

if has_wasm_std; then
	echo "setup.sh: $("$RUSTC" --version) with the wasm32-unknown-unknown std is already installed"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "setup.sh: apt-get not found; install rustc and the wasm32-unknown-unknown standard library yourself" >&2
	echo "          (Debian/Ubuntu: apt-get install rustc cargo libstd-rust-dev-wasm32) and set RUSTC" >&2
	exit 1
fi

SUDO=
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "setup.sh: must run as root (or with sudo available) to apt-get install rustc" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends rustc cargo libstd-rust-dev-wasm32; then
	# The package lists may be missing or stale (fresh containers).
	$SUDO apt-get update
	$SUDO apt-get install -y --no-install-recommends rustc cargo libstd-rust-dev-wasm32
fi

if ! has_wasm_std; then
	echo "setup.sh: installed, but $RUSTC still has no wasm32-unknown-unknown standard library" >&2
	exit 1
fi
echo "setup.sh: $("$RUSTC" --version) with the wasm32-unknown-unknown std is installed"
