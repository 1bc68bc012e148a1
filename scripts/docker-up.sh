#!/usr/bin/env bash
# Makes sure a Docker engine answers, starting dockerd when none runs.
#
#   docker-up.sh          any engine on the default socket: installs
#                         Debian's docker.io (as root) when there is no
#                         dockerd at all (what `make install` wants)
#   docker-up.sh ENGINE   that engine of scripts/engines.sh (28.5, 20.10) on
#                         its own socket; test-env.sh has installed it. A
#                         daemon of another version on that socket is
#                         stopped first (SIGTERM to the pid in its pid file).
set -euo pipefail
here=$(dirname "$0")
. "$here/engines.sh"

log() { echo "docker-up: $*" >&2; }

# answers HOST: prints the server version of the daemon on HOST, if any.
answers() { DOCKER_HOST=$1 docker version --format '{{.Server.Version}}' 2>/dev/null; }

# detach LOG CMD...: starts CMD in its own session, stdin /dev/null, output
# appended to LOG, holding no other descriptor of ours (a lock file or pipe
# this script inherited must not stay held by a dockerd that outlives it);
# prints its pid.
detach() {
    local log=$1
    shift
    (
        for fd in /proc/$BASHPID/fd/*; do
            n=${fd##*/}
            case $n in 0 | 1 | 2 | 255) ;; *) eval "exec $n>&-" 2>/dev/null || true ;; esac
        done
        setsid "$@" </dev/null >>"$log" 2>&1 &
        echo $!
    )
}

wait_for() { # HOST PID LOG
    for _ in $(seq 1 240); do
        answers "$1" >/dev/null && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.5
    done
    log "dockerd did not come up on $1; see $3"
    tail -n 20 "$3" >&2 || true
    return 1
}

if [ $# -eq 0 ]; then
    if ! command -v dockerd >/dev/null 2>&1; then
        log "installing docker.io"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq docker.io >/dev/null
    fi
    if ! docker info >/dev/null 2>&1; then
        log "starting dockerd (log: /var/log/gipam-dockerd.log)"
        pid=$(detach /var/log/gipam-dockerd.log dockerd)
        wait_for unix:///var/run/docker.sock "$pid" /var/log/gipam-dockerd.log
    fi
    exit 0
fi

engine_env "$1"
[ -x "$ENGINE_DOCKERD" ] || { log "$ENGINE_DOCKERD is missing: run scripts/test-env.sh"; exit 1; }
have=$("$ENGINE_DOCKERD" --version)
case "$have" in
"Docker version $ENGINE_VERSION"*) ;;
*) log "$ENGINE_DOCKERD is not engine $1: $have; run scripts/test-env.sh"; exit 1 ;;
esac

running=$(answers "$ENGINE_HOST" || true)
case "$running" in
"$ENGINE_VERSION"*) exit 0 ;;
"") ;;
*)
    pid=$(cat "$ENGINE_PIDFILE" 2>/dev/null || true)
    [ -n "$pid" ] || { log "dockerd $running answers on $ENGINE_HOST, not $1, and $ENGINE_PIDFILE names no pid"; exit 1; }
    log "dockerd $running (pid $pid) answers on $ENGINE_HOST: stopping it for engine $1"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd $pid did not stop"; exit 1; fi
    ;;
esac

log "starting engine $1 on $ENGINE_HOST (log: $ENGINE_LOG)"
mkdir -p "$(dirname "$ENGINE_PIDFILE")"
pid=$(PATH=$ENGINE_PATH detach "$ENGINE_LOG" "$ENGINE_DOCKERD" ${ENGINE_ARGS[@]+"${ENGINE_ARGS[@]}"})
wait_for "$ENGINE_HOST" "$pid" "$ENGINE_LOG"
running=$(answers "$ENGINE_HOST")
case "$running" in
"$ENGINE_VERSION"*) log "engine $1 ready: dockerd $running" ;;
*) log "engine $1 started but $ENGINE_HOST answers $running"; exit 1 ;;
esac
