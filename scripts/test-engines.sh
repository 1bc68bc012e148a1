#!/usr/bin/env bash
# Runs the test suite against each selected Docker engine (scripts/engines.sh;
# GIPAM_ENGINES narrows them, e.g. GIPAM_ENGINES=20.10): the first engine
# gets the whole suite (`cargo test --lib --bins --tests`), each further
# one the docker end-to-end binaries (tests/e2e_*.rs) again, with
# DOCKER_HOST and GIPAM_DOCKERD_PIDFILE naming that engine. Every run uses
# --no-fail-fast and every engine runs even when an earlier one failed, so
# one failure hides nothing; the exit status is non-zero when any failed.
# Arguments, when given, replace the target selection for every engine:
#   scripts/test-engines.sh --test e2e_networks -- n2
# runs that binary's n2 scenario on each engine.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/engines.sh

e2e=()
for f in tests/e2e_*.rs; do e2e+=(--test "$(basename "$f" .rs)"); done

first=1
status=0
summary=()
for e in $(selected_engines); do
    engine_env "$e" || exit 2
    if [ $# -gt 0 ]; then
        targets=("$@")
    elif [ $first = 1 ]; then
        targets=(--lib --bins --tests)
    else
        targets=("${e2e[@]}")
    fi
    first=0
    echo "=== engine $e ($ENGINE_HOST): cargo test ${targets[*]}" >&2
    start=$(date +%s)
    DOCKER_HOST=$ENGINE_HOST GIPAM_DOCKERD_PIDFILE=$ENGINE_PIDFILE \
        GIPAM_COMPOSE_V1=$COMPOSE_V1 GIPAM_COMPOSE_V2=$COMPOSE_V2 \
        cargo test --locked --no-fail-fast "${targets[@]}"
    rc=$?
    took=$(($(date +%s) - start))
    if [ $rc = 0 ]; then
        summary+=("engine $e: passed ($took s)")
    else
        summary+=("engine $e: FAILED, cargo test exit $rc ($took s)")
        status=1
    fi
done
echo "=== test-engines summary:" >&2
printf '  %s\n' "${summary[@]}" >&2
exit $status
