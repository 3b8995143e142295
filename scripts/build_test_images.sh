#!/usr/bin/env bash
# Builds the server images of the container test mode from Debian packages, since no image
# registry is reachable from this project's machines: a minimal root file system per Debian
# release (debootstrap --variant=minbase), `docker import`ed as a base image, then one image per
# server version installed from that release's packages (docker build --network host):
#
#   core-lib-cache-test/redis:7.0    redis-server 7.0.15   Debian 12 bookworm
#   core-lib-cache-test/valkey:8.0   valkey-server 8.0.1   Debian 12 bookworm-backports
#   core-lib-cache-test/redis:8.0    redis-server 8.0.2    Debian 13 trixie
#   core-lib-cache-test/valkey:8.1   valkey-server 8.1.1   Debian 13 trixie
#
# Usage: DOCKER_HOST=... bash scripts/build_test_images.sh [tag...]   (default: all four)
# An image that exists already is kept. Needs root (debootstrap) and a Docker engine
# (scripts/docker_engine.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/.tools/images"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$work"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

base_image() {
  local release=$1 tag="core-lib-cache-test/base:$1"
  if have_image "$tag"; then return 0; fi
  command -v debootstrap >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  local rootfs="$work/rootfs-$release"
  rm -rf "$rootfs"
  echo "build_test_images: debootstrap $release" >&2
  debootstrap --variant=minbase "$release" "$rootfs" "$mirror" >"$work/debootstrap-$release.log" 2>&1 || {
    tail -n 20 "$work/debootstrap-$release.log" >&2
    return 1
  }
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  tar -C "$rootfs" -c . | docker import - "$tag" >/dev/null
  rm -rf "$rootfs"
}

server_image() {
  local tag=$1 release=$2 package=$3 suite=${4:-}
  local image="core-lib-cache-test/$tag"
  if have_image "$image"; then return 0; fi
  base_image "$release"
  local ctx="$work/ctx-${tag/:/-}"
  mkdir -p "$ctx"
  local target=""
  local sources=""
  if [ -n "$suite" ]; then
    target="-t $suite"
    sources="RUN echo 'deb $mirror $suite main' > /etc/apt/sources.list.d/$suite.list"
  fi
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM core-lib-cache-test/base:$release
$sources
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $target $package >/dev/null && rm -rf /var/lib/apt/lists/*
DOCKERFILE
  echo "build_test_images: $image ($package from $release${suite:+ / $suite})" >&2
  docker build --network host -q -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
}

build() {
  case "$1" in
    redis:7.0) server_image redis:7.0 bookworm redis-server ;;
    valkey:8.0) server_image valkey:8.0 bookworm valkey-server bookworm-backports ;;
    redis:8.0) server_image redis:8.0 trixie redis-server ;;
    valkey:8.1) server_image valkey:8.1 trixie valkey-server ;;
    *) echo "build_test_images: unknown image $1 (redis:7.0 valkey:8.0 redis:8.0 valkey:8.1)" >&2; return 2 ;;
  esac
}

tags=("$@")
[ ${#tags[@]} -gt 0 ] || tags=(redis:7.0 valkey:8.0 redis:8.0 valkey:8.1)
for tag in "${tags[@]}"; do
  build "$tag"
  server=${tag%%:*}-server
  echo "core-lib-cache-test/$tag: $(docker run --rm "core-lib-cache-test/$tag" "$server" --version | head -n 1)"
done
