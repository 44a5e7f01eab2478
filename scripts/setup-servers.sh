#!/bin/sh
# Installs the real servers the integration tests start on loopback (Debian
# packages): redis-server for limits shared by replicas, docker-registry (the
# CNCF distribution server) for plugins pulled from an OCI registry,
# chromium (headless) for the operator console's browser tests, postgresql
# for conversations shared by replicas (tests run its initdb and postgres
# from /usr/lib/postgresql/*/bin as the postgres user), mesa-vulkan-drivers
# and libvulkan1 (a software Vulkan device for the GPU offload test). Idempotent: does
# nothing when they are there. Needs root (or sudo) to install. Without
# them the tests that need them skip (under CI they fail instead).
set -eu

missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
# The server's programs are not on PATH: look for initdb where Debian puts it.
have_initdb() {
	for f in /usr/lib/postgresql/*/bin/initdb; do
		[ -x "$f" ] && return 0
	done
	return 1
}
have_initdb || missing="$missing postgresql"
# Mesa's software Vulkan driver (lavapipe) and the loader: a Vulkan device on
# a machine without a GPU, for the engine's GPU offload test (make
# setup-vulkan adds the Vulkan build of llama.cpp).
have_lavapipe() {
	for f in /usr/share/vulkan/icd.d/lvp_icd*.json; do
		[ -f "$f" ] && return 0
	done
	return 1
}
have_lavapipe || missing="$missing mesa-vulkan-drivers libvulkan1"

if [ -z "$missing" ]; then
	echo "setup-servers: present: $(redis-server --version | cut -d' ' -f1-3), $(ls -d /usr/lib/postgresql/*/bin/initdb | head -n1)"
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "setup-servers:$missing missing and not root (no sudo): run 'apt-get install -y$missing' as root" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "setup-servers: no apt-get here: install$missing yourself" >&2
	exit 1
fi
echo "setup-servers: installing$missing"
$SUDO apt-get update -qq
# The package's own service is not wanted: tests start their own servers.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
if command -v systemctl >/dev/null 2>&1; then
	$SUDO systemctl disable --now redis-server docker-registry >/dev/null 2>&1 || true
	$SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
echo "setup-servers: installed: $(redis-server --version | cut -d' ' -f1-3)"
