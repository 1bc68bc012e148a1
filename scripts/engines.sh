# The Docker engines the end-to-end tests run against, in one place
# (sourced by test-env.sh, docker-up.sh and test-engines.sh).
#
#   28.5   Debian unstable's docker.io 28.5.2, installed with apt (only
#          docker.io, containerd, docker-cli, tini-static and docker-compose
#          from unstable, see docs/testing.md); the default dockerd on
#          /var/run/docker.sock.
#   20.10  Debian 12's docker.io 20.10.24 and containerd 1.6, unpacked with
#          dpkg -x into /opt/gipam-docker-20.10 (not installed), run as a
#          second dockerd next to the first with its own data root, exec
#          root, pid file and socket, no default bridge and no iptables
#          rules (so it never touches what the first one owns).
#
# engine_env NAME sets, for that engine: ENGINE_HOST (a DOCKER_HOST value),
# ENGINE_PIDFILE, ENGINE_LOG (where docker-up.sh sends its output),
# ENGINE_VERSION (what the daemon's version must start with), ENGINE_DOCKERD
# (its binary), ENGINE_PATH (PATH for dockerd: the engine's own containerd
# first) and ENGINE_ARGS (further dockerd flags).

# Every engine, in the order `make test` runs them. GIPAM_ENGINES narrows it.
ALL_ENGINES="28.5 20.10"
ENGINE_2010_ROOT=/opt/gipam-docker-20.10
COMPOSE_V1_ROOT=/opt/gipam-compose-1.29
# The two compose binaries the tests run (GIPAM_COMPOSE_V1 / _V2).
COMPOSE_V1=/usr/local/bin/docker-compose-1.29
COMPOSE_V2=/usr/bin/docker-compose

engine_env() {
    case "$1" in
    28.5)
        ENGINE_HOST=unix:///var/run/docker.sock
        ENGINE_PIDFILE=/var/run/docker.pid
        ENGINE_LOG=/var/log/gipam-dockerd.log
        ENGINE_VERSION=28.5.
        ENGINE_DOCKERD=/usr/sbin/dockerd
        ENGINE_PATH=$PATH
        ENGINE_ARGS=()
        ;;
    20.10)
        ENGINE_HOST=unix:///run/gipam-docker-20.10/docker.sock
        ENGINE_PIDFILE=/run/gipam-docker-20.10/docker.pid
        ENGINE_LOG=/var/log/gipam-dockerd-20.10.log
        ENGINE_VERSION=20.10.
        ENGINE_DOCKERD=$ENGINE_2010_ROOT/usr/sbin/dockerd
        ENGINE_PATH=$ENGINE_2010_ROOT/usr/sbin:$ENGINE_2010_ROOT/usr/bin:$PATH
        ENGINE_ARGS=(--data-root /var/lib/gipam-docker-20.10
            --exec-root /run/gipam-docker-20.10/exec
            --pidfile "$ENGINE_PIDFILE" -H "$ENGINE_HOST"
            --bridge none --iptables=false)
        ;;
    *)
        echo "unknown engine $1 (known: $ALL_ENGINES)" >&2
        return 1
        ;;
    esac
}

# The engines to run: GIPAM_ENGINES (space or comma separated), else all.
selected_engines() {
    local list=${GIPAM_ENGINES:-$ALL_ENGINES}
    echo "${list//,/ }"
}
