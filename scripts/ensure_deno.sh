#!/usr/bin/env bash
# Prints the path of a Deno 2 binary: the one on PATH, or one installed from the npm registry
# into .tools/ (the JSR registry and Deno's own download site are not needed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if command -v deno >/dev/null 2>&1 && deno --version 2>/dev/null | grep -q '^deno 2\.'; then
  command -v deno
  exit 0
fi
local_deno="$root/.tools/node_modules/.bin/deno"
if [ ! -x "$local_deno" ]; then
  npm install --silent --no-audit --no-fund --prefix "$root/.tools" deno@2 >&2
fi
echo "$local_deno"
