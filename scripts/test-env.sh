#!/usr/bin/env bash
# Makes sure this machine has what the test suite needs, installing it when
# missing (Debian, as root): a Docker engine, a static busybox for the test
# image, a registry (for the plugin upgrade test), docker-compose, and the
# musl target for the plugin's static binary; then starts dockerd if none
# answers. Safe to run again: it only does what is missing.
set -euo pipefail

log() { echo "test-env: $*" >&2; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)   # plugin upgrade test
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)     # compose test
if ! { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }; then
    missing+=(busybox-static)
fi
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -q x86_64-unknown-linux-musl; then
    log "adding the x86_64-unknown-linux-musl target"
    rustup target add x86_64-unknown-linux-musl >/dev/null ||
        log "cannot add the musl target; make builds a static glibc binary instead"
fi

"$(dirname "$0")/docker-up.sh"
log "ready: $(docker version --format 'docker {{.Server.Version}}')"
