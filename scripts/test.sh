#!/usr/bin/env bash
# The whole test suite, on a machine with only Node and npm: installs Deno (from npm) and
# redis-server / valkey-server (Debian packages) when missing, runs the Deno tests against real
# servers the harness starts on free loopback ports, then the Node tests of the npm build, and
# closes with one line "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

deno_bin=$(bash scripts/ensure_deno.sh) || { echo "cannot install Deno from npm"; exit 1; }
export PATH="$(dirname "$deno_bin"):$PATH"
bash scripts/install_servers.sh || { echo "cannot install redis-server / valkey-server"; exit 1; }

logs=$(mktemp -d)
passed=0
failed=0
status=0

# shellcheck source=scripts/test_counts.sh
source "$root/scripts/test_counts.sh"

echo "== Deno: deno task test"
deno task test 2>&1 | tee "$logs/deno.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
count_deno "$logs/deno.log"

if grep -q '"test:node"' deno.json; then
  echo "== Node: deno task test:node (npm build, node --test)"
  deno task test:node 2>&1 | tee "$logs/node.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  count_node "$logs/node.log"
fi

if grep -q '"smoke:npm"' deno.json; then
  echo "== npm pack + install smoke test"
  if deno task smoke:npm 2>&1 | tee "$logs/smoke.log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    status=1
  fi
fi

rm -rf "$logs"
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed"
exit "$status"
