#!/bin/sh
# Fetches the charting library of the operator console (uPlot, MIT, from
# npm; pinned and checked by sha256) into internal/console/assets/vendor/
# where `go build` embeds it into the binary. Idempotent; needs npm. The
# console works without it (figures in tables, no charts) and says so.
set -eu

VERSION=1.6.32
SHA256=4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d
DEST=internal/console/assets/vendor/uplot

if [ -f "$DEST/VERSION" ] && [ "$(cat "$DEST/VERSION")" = "$VERSION" ]; then
	echo "setup-console: uPlot $VERSION already in $DEST"
	exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
	echo "setup-console: npm is missing: the console will show tables without charts (install npm, then make setup)" >&2
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$VERSION" >/dev/null)
tgz="$tmp/uplot-$VERSION.tgz"
got=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$got" != "$SHA256" ]; then
	echo "setup-console: uplot-$VERSION.tgz has sha256 $got, want $SHA256: refusing it" >&2
	exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE
mkdir -p "$DEST"
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$DEST/"
cp "$tmp/package/LICENSE" "$DEST/LICENSE"
echo "$VERSION" > "$DEST/VERSION"
echo "setup-console: uPlot $VERSION installed in $DEST"
