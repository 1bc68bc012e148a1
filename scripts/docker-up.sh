#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs docker.io (Debian, as root)
# when there is none, and starts dockerd when none is running.
set -euo pipefail

log() { echo "docker-up: $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: /var/log/gipam-dockerd.log)"
    nohup dockerd >/var/log/gipam-dockerd.log 2>&1 &
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/gipam-dockerd.log"; exit 1; }
fi
