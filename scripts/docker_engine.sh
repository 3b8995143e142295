#!/usr/bin/env bash
# A Docker engine for the container test mode, on machines without systemd: prints the
# DOCKER_HOST to use. When `docker info` already answers (a developer's Docker Desktop, a
# running dockerd) it uses that one and starts nothing. Otherwise it installs Debian's docker.io
# when missing and starts dockerd itself with its own data root, exec root, socket and pidfile
# under .tools/docker/ (no iptables, no bridge: the test containers use host networking).
#
#   bash scripts/docker_engine.sh start   # prints e.g. unix:///repo/.tools/docker/docker.sock
#   bash scripts/docker_engine.sh stop    # stops the dockerd this script started, by its pid
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.tools/docker"
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"

have() { command -v "$1" >/dev/null 2>&1; }
sudo_cmd=""
if [ "$(id -u)" != "0" ] && have sudo; then sudo_cmd="sudo"; fi

start() {
  if [ -z "${DOCKER_HOST:-}" ] && have docker && docker info >/dev/null 2>&1; then
    echo "${DOCKER_HOST:-unix:///var/run/docker.sock}"
    return 0
  fi
  if [ -S "$sock" ] && DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1; then
    echo "unix://$sock"
    return 0
  fi
  if ! have dockerd; then
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
      docker.io >/dev/null
  fi
  mkdir -p "$dir/data" "$dir/exec"
  $sudo_cmd dockerd --iptables=false --ip-masq=false --bridge=none \
    --data-root "$dir/data" --exec-root "$dir/exec" \
    --host "unix://$sock" --pidfile "$pidfile" >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 100); do
    if DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1; then
      echo "unix://$sock"
      return 0
    fi
    sleep 0.2
  done
  echo "docker_engine: dockerd did not answer within 20 s; see $dir/dockerd.log" >&2
  tail -n 20 "$dir/dockerd.log" >&2 || true
  return 1
}

stop() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  $sudo_cmd kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  $sudo_cmd kill -9 "$pid" 2>/dev/null || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
