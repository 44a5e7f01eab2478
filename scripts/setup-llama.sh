#!/usr/bin/env bash
# Installs the prebuilt llama.cpp shared libraries that yzma loads at run time
# into a project-local folder. Idempotent, needs no root: it only uses npm to
# fetch the @node-llama-cpp/linux-x64 package tarball (no install scripts run).
set -euo pipefail

version="${LLAMA_NPM_VERSION:-3.22.1}"
dest="${1:-.deps/llama}"
stamp="$dest/.installed-$version"

if [ -f "$stamp" ]; then
	echo "llama.cpp libraries $version already in $dest"
	exit 0
fi

case "$(uname -s)-$(uname -m)" in
Linux-x86_64) pkg="@node-llama-cpp/linux-x64" sub="linux-x64" ;;
Linux-aarch64) pkg="@node-llama-cpp/linux-arm64" sub="linux-arm64" ;;
*) echo "setup-llama: no prebuilt llama.cpp package for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

command -v npm >/dev/null || { echo "setup-llama: npm is needed to fetch $pkg" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp"
src="$tmp/package/bins/$sub"
[ -d "$src" ] || { echo "setup-llama: $pkg@$version has no bins/$sub" >&2; exit 1; }

mkdir -p "$dest"
rm -f "$dest"/*.so "$dest"/.installed-*
cp "$src"/*.so "$dest"/
# yzma looks for libllama.so and libggml.so; the package names them by ABI version.
(cd "$dest" && for f in libllama.v*.so libggml.v*.so; do
	[ -e "$f" ] || continue
	ln -sf "$f" "${f%%.v*}.so"
done)
touch "$stamp"
echo "llama.cpp libraries $version installed in $dest"
