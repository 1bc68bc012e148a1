#!/usr/bin/env bash
# Makes sure this machine (Debian 12, as root) has what the test suite
# needs, installing what is missing, then starts the Docker engines the
# tests run against (scripts/engines.sh; GIPAM_ENGINES narrows them). Safe
# to run again: it only does what is missing.
#
# - Docker 28.5.2 from Debian unstable, exactly as docs/testing.md says: a
#   deb822 source for suite sid with the URI and keyring of the machine's
#   bookworm source, a Pin-Priority 100 pin so that nothing else ever comes
#   from unstable, and `apt-get install docker.io/sid containerd/sid
#   docker-cli/sid tini-static/sid docker-compose/sid` (never `-t sid`,
#   which would pull unstable's libc). That brings compose v2 (2.40) as
#   /usr/bin/docker-compose.
# - Docker 20.10.24 and containerd 1.6, Debian 12's, unpacked with
#   `apt-get download` + `dpkg -x` into /opt/gipam-docker-20.10.
# - docker-compose 1.29.2, Debian 12's, unpacked into /opt/gipam-compose-1.29
#   (its Python dependencies installed from Debian 12) and run as
#   /usr/local/bin/docker-compose-1.29.
# - busybox-static (the test image), docker-registry (the plugin upgrade
#   test), strace and e2fsprogs (tests/faults.rs) and the musl target (the
#   plugin's static binary), with musl-tools (musl-gcc: ring, under
#   etcd-client's TLS, compiles C for the musl target).
# - etcd 3.4 (etcd-server, etcd-client: tests/common/etcd.rs starts its own
#   members on free loopback ports), protobuf-compiler (etcd-client's build
#   needs protoc) and openssl (the TLS fixture's certificates). The
#   package's own etcd service (on 2379) is stopped and disabled where
#   systemd runs; no test uses it.
set -euo pipefail
here=$(dirname "$0")
. "$here/engines.sh"

log() { echo "test-env: $*" >&2; }
export DEBIAN_FRONTEND=noninteractive

# The URI and keyring of the machine's bookworm source (deb822 or one-line).
bookworm_source() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        awk -v RS= '/(^|\n)Suites:[^\n]*[[:space:]]bookworm([[:space:]]|$)/ {
            uri = ""; key = ""
            n = split($0, lines, "\n")
            for (i = 1; i <= n; i++) {
                if (lines[i] ~ /^URIs:/) { sub(/^URIs:[[:space:]]*/, "", lines[i]); split(lines[i], u, " "); uri = u[1] }
                if (lines[i] ~ /^Signed-By:/) { sub(/^Signed-By:[[:space:]]*/, "", lines[i]); key = lines[i] }
            }
            if (uri != "") { print uri, key; exit }
        }' "$f"
    done | head -n 1
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {
        i = 2; key = ""
        if ($2 ~ /^\[/) {
            opts = ""
            while ($i !~ /\]$/ && i < NF) { opts = opts " " $i; i++ }
            opts = opts " " $i; i++
            if (match(opts, /signed-by=[^] ]+/)) key = substr(opts, RSTART + 10, RLENGTH - 10)
        }
        if ($(i + 1) == "bookworm") { print $i, key; exit }
    }'
}

ensure_sid_source() {
    local want
    if [ ! -e /etc/apt/sources.list.d/sid.sources ]; then
        read -r uri key < <(bookworm_source | head -n 1) || true
        [ -n "${uri:-}" ] || { log "no bookworm source found in /etc/apt to copy for sid"; exit 1; }
        log "adding /etc/apt/sources.list.d/sid.sources ($uri)"
        {
            echo "Types: deb"
            echo "URIs: $uri"
            echo "Suites: sid"
            echo "Components: main"
            [ -z "${key:-}" ] || echo "Signed-By: $key"
        } >/etc/apt/sources.list.d/sid.sources
    fi
    want=$'Package: *\nPin: release a=unstable\nPin-Priority: 100'
    if [ "$(cat /etc/apt/preferences.d/sid-pin 2>/dev/null)" != "$want" ]; then
        log "pinning unstable to priority 100 (/etc/apt/preferences.d/sid-pin)"
        printf '%s\n' "$want" >/etc/apt/preferences.d/sid-pin
    fi
}

updated=0
apt_update() { [ $updated = 1 ] || { apt-get update -qq; updated=1; }; }

# Engine 28.5 and compose v2, from unstable.
if ! { command -v dockerd >/dev/null && dockerd --version | grep -q '^Docker version 28\.5\.' &&
    "$COMPOSE_V2" version 2>/dev/null | grep -q ' 2\.'; }; then
    ensure_sid_source
    apt_update
    log "installing docker.io 28.5 and docker-compose 2.40 from unstable"
    apt-get install -y -qq docker.io/sid containerd/sid docker-cli/sid tini-static/sid docker-compose/sid >/dev/null
fi
# The pin's promise: nothing else came from unstable (docker-cli's
# dependency docker-buildx exists only there). Unstable's libc would break
# the machine.
libc=$(dpkg-query -W -f '${Version}' libc6)
case "$libc" in
2.36-*) ;;
*) log "libc6 is $libc, not Debian 12's 2.36: something was installed from unstable with -t sid?"; exit 1 ;;
esac

# What else comes from Debian 12: busybox, the registry, compose 1.29's
# Python dependencies, and the fault tests' tools (strace delays writes,
# mkfs.ext4 makes the image shut down under gipam, prlimit and mount).
pkgs=(busybox-static docker-registry strace e2fsprogs util-linux mount curl
    etcd-server etcd-client protobuf-compiler openssl musl-tools
    python3 python3-distro python3-docker python3-dockerpty
    python3-docopt python3-dotenv python3-jsonschema python3-requests python3-texttable
    python3-websocket python3-yaml python3-distutils)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    log "installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Installing etcd-server enables and starts a system etcd on 2379: the
# tests start their own members, so stop it where systemd runs.
if [ -d /run/systemd/system ] && { systemctl is-enabled --quiet etcd 2>/dev/null || systemctl is-active --quiet etcd 2>/dev/null; }; then
    log "stopping and disabling the system etcd service (the tests run their own)"
    systemctl disable --now etcd >/dev/null 2>&1 || log "could not stop the etcd service; the tests do not use it"
fi

# unpack DIR PACKAGE/bookworm...: apt-get download + dpkg -x into DIR.
unpack() {
    local dir=$1 tmp
    shift
    apt_update
    tmp=$(mktemp -d)
    log "unpacking $* into $dir"
    (cd "$tmp" && apt-get download -qq "$@" 2>/dev/null)
    rm -rf "$dir.new"
    mkdir -p "$dir.new"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dir.new"; done
    rm -rf "$tmp" "$dir"
    mv "$dir.new" "$dir"
}

# Engine 20.10, unpacked (dockerd finds its containerd 1.6 first in PATH).
if ! "$ENGINE_2010_ROOT/usr/sbin/dockerd" --version 2>/dev/null | grep -q '^Docker version 20\.10\.' ||
    [ ! -x "$ENGINE_2010_ROOT/usr/bin/containerd" ]; then
    unpack "$ENGINE_2010_ROOT" docker.io/bookworm containerd/bookworm
fi

# Compose 1.29, unpacked, with a wrapper that runs it on Debian's python3.
if [ ! -e "$COMPOSE_V1_ROOT/usr/lib/python3/dist-packages/compose/__init__.py" ]; then
    unpack "$COMPOSE_V1_ROOT" docker-compose/bookworm
fi
wrapper="#!/bin/sh
# docker-compose 1.29.2 (Debian 12's), unpacked by gipam's scripts/test-env.sh
PYTHONPATH=$COMPOSE_V1_ROOT/usr/lib/python3/dist-packages exec /usr/bin/python3 $COMPOSE_V1_ROOT/usr/bin/docker-compose \"\$@\""
if [ "$(cat "$COMPOSE_V1" 2>/dev/null)" != "$wrapper" ]; then
    printf '%s\n' "$wrapper" >"$COMPOSE_V1"
    chmod 755 "$COMPOSE_V1"
fi
"$COMPOSE_V1" version --short | grep -q '^1\.29\.' || { log "$COMPOSE_V1 is not compose 1.29"; exit 1; }

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -q x86_64-unknown-linux-musl; then
    log "adding the x86_64-unknown-linux-musl target"
    rustup target add x86_64-unknown-linux-musl >/dev/null ||
        log "cannot add the musl target; make builds a static glibc binary instead"
fi

for e in $(selected_engines); do
    "$here/docker-up.sh" "$e"
    engine_env "$e"
    log "engine $e: $(DOCKER_HOST=$ENGINE_HOST docker version --format 'dockerd {{.Server.Version}}, API {{.Server.APIVersion}}') on $ENGINE_HOST"
done
log "compose: $("$COMPOSE_V1" version --short) ($COMPOSE_V1), $("$COMPOSE_V2" version --short) ($COMPOSE_V2)"
