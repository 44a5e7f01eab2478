#!/bin/sh
# Installs the MDSA AssemblyScript SDK's toolchain, at the exact versions of
# package-lock.json (assemblyscript 0.28.20, @extism/as-pdk 1.0.0), into
# sdk/assemblyscript/node_modules: never globally. Idempotent: does nothing
# when those versions are already installed. Needs Node.js >= 20 and npm.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "sdk/assemblyscript: Node.js and npm are required (Debian: apt-get install -y nodejs npm)" >&2
	exit 1
fi

installed() {
	node -e '
		const fs = require("fs");
		const want = {"assemblyscript": "0.28.20", "@extism/as-pdk": "1.0.0"};
		for (const [name, v] of Object.entries(want)) {
			let got = "";
			try { got = JSON.parse(fs.readFileSync("node_modules/" + name + "/package.json", "utf8")).version; } catch (e) {}
			if (got !== v) process.exit(1);
		}
	' 2>/dev/null && [ -x node_modules/.bin/asc ]
}

if installed; then
	echo "sdk/assemblyscript: toolchain present (assemblyscript 0.28.20, @extism/as-pdk 1.0.0)"
	exit 0
fi

echo "sdk/assemblyscript: installing the pinned toolchain with npm ci"
npm ci --no-audit --no-fund --loglevel=error

if ! installed; then
	echo "sdk/assemblyscript: npm ci finished but the pinned versions are not in node_modules" >&2
	exit 1
fi
echo "sdk/assemblyscript: toolchain ready in $here/node_modules"
