#!/usr/bin/env bash
# Installs redis-server (Debian bookworm) and valkey-server (bookworm-backports) when missing, and
# openssl (the TLS tests make their certificates with it).
# Idempotent: does nothing when the binaries are already on PATH.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have redis-server && have valkey-server && have redis-cli && have openssl; then
  exit 0
fi

sudo_cmd=""
if [ "$(id -u)" != "0" ]; then
  if have sudo; then sudo_cmd="sudo"; else
    echo "install_servers: need root or sudo to apt-get install redis-server and valkey-server" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
backports=/etc/apt/sources.list.d/bookworm-backports.sources
if ! have valkey-server && [ ! -f "$backports" ]; then
  $sudo_cmd tee "$backports" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

$sudo_cmd apt-get update -qq
have redis-server || $sudo_cmd apt-get install -y -qq --no-install-recommends redis-server >/dev/null
have valkey-server || $sudo_cmd apt-get install -y -qq --no-install-recommends -t bookworm-backports valkey-server >/dev/null
have openssl || $sudo_cmd apt-get install -y -qq --no-install-recommends openssl >/dev/null

# The packages start system services on 6379; the tests never use them, and we leave the
# machine's services as the package set them up.
redis-server --version
valkey-server --version
