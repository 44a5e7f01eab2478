#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on an NVIDIA GPU machine that has
# neither Go nor the npm registry (a lent or air-gapped one): bin/mdsa, the
# engine package's test binary, the CPU and CUDA llama.cpp package tarballs
# and libffi.so.8 (which the llama.cpp bindings load), as one gzipped tar cut
# into parts of at most PART bytes (GPU_PACK_PART, default 45M), for
# transports that limit a transfer's size.
#
# Usage: scripts/gpu-pack.sh [DIR]     (default .gpu; emptied first)
#
# On the GPU machine, in a checkout of the same commit, with the parts in DIR:
#   cat DIR/part-* | tar -xzf - -C DIR && mkdir -p bin && cp DIR/mdsa bin/mdsa &&
#   { ldconfig -p | grep -q libffi.so.8 || export LD_LIBRARY_PATH=DIR/lib; } &&
#   LLAMA_PACKAGES_DIR=DIR/pk GPU_CHECK_TESTS=DIR/llamacpp.test scripts/gpu-check.sh OUT
set -euo pipefail

dest="${1:-.gpu}"
part="${GPU_PACK_PART:-45M}"
cd "$(dirname "$0")/.."
rm -rf "$dest"
mkdir -p "$dest/pk" "$dest/lib" bin
ffi="$(ldconfig -p | awk '/libffi\.so\.8 .*x86-64/ {print $NF; exit}')"
if [ -z "$ffi" ]; then
	echo "gpu-pack: libffi.so.8 not found here (Debian: libffi8)" >&2
	exit 1
fi
cp -L "$ffi" "$dest/lib/libffi.so.8"
go build -trimpath -ldflags='-s -w' -o "$dest/mdsa" ./cmd/mdsa
go test -c -trimpath -ldflags='-s -w' -o "$dest/llamacpp.test" ./host/engine/llamacpp
LLAMA_BACKEND=cpu scripts/setup-llama.sh --download "$dest/pk" >/dev/null
LLAMA_BACKEND=cuda scripts/setup-llama.sh --download "$dest/pk" >/dev/null
tar -czf - -C "$dest" mdsa llamacpp.test pk lib | split -b "$part" -d - "$dest/part-"
rm -rf "${dest:?}/mdsa" "$dest/llamacpp.test" "$dest/pk" "$dest/lib"
echo "gpu-pack: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), parts in $dest:"
ls -l "$dest"
