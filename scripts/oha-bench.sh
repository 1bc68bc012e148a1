#!/usr/bin/env bash
# make bench-oha: durable RequestAddress through gipam against a no-op warp
# server on the same kind of socket, both driven by oha (an independent load
# generator: cargo install oha) at the same concurrency, in one run,
# alternating rounds. Prints req/s, p50/p99 and the ratio gipam / no-op.
# Traffic goes only to unix sockets in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-64}
# Another gipam binary to measure (e.g. an older build), else this tree's.
GIPAM_BIN=${GIPAM_BIN:-./target/release/gipam}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-3}

command -v oha >/dev/null 2>&1 || PATH="$HOME/.cargo/bin:$PATH"
command -v oha >/dev/null 2>&1 || { echo "bench-oha: installing oha (cargo install oha)" >&2; cargo install --locked oha >/dev/null; }
cargo build --release --locked --bin gipam --example noop >/dev/null 2>&1 ||
    cargo build --release --locked --bin gipam --example noop

dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

"$GIPAM_BIN" --socket "$dir/gipam.sock" --state-dir "$dir/state" \
    --v6 fd00:6a:7e::/48 --log warn &
pids+=($!)
./target/release/examples/noop "$dir/noop.sock" &
pids+=($!)
for _ in $(seq 1 100); do
    [ -S "$dir/gipam.sock" ] && [ -S "$dir/noop.sock" ] && break
    sleep 0.1
done

# A /64 never runs out within a run.
pool=$(curl -s --unix-socket "$dir/gipam.sock" -X POST \
    -d '{"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":true}' \
    http://x/IpamDriver.RequestPool | sed -n 's/.*"PoolID":"\([^"]*\)".*/\1/p')
[ -n "$pool" ] || { echo "bench-oha: gipam gave no pool" >&2; exit 1; }
body="{\"PoolID\":\"$pool\",\"Address\":\"\",\"Options\":null}"

run() { # socket -> "req/s p50_ms p99_ms non200"
    local out
    out=$(oha --no-tui -z "${SECONDS_PER_RUN}s" -c "$CLIENTS" -m POST -d "$body" \
        --unix-socket "$1" http://x/IpamDriver.RequestAddress)
    local rps p50 p99 codes
    rps=$(awk '/Requests\/sec:/ {print $2}' <<<"$out")
    # oha prints "50.00% in 0.0856 ms" (older versions: "… secs").
    p50=$(awk '/ 50(\.00)?% in / {v = $3; if ($4 ~ /^sec/) v *= 1000; print v}' <<<"$out")
    p99=$(awk '/ 99(\.00)?% in / {v = $3; if ($4 ~ /^sec/) v *= 1000; print v}' <<<"$out")
    codes=$(awk '/\[[0-9]+\] [0-9]+ responses/ {gsub(/[\[\]]/,"",$1); if ($1 != "200") n += $2} END {print n+0}' <<<"$out")
    echo "$rps ${p50:-?} ${p99:-?} $codes"
}

ratios=()
echo "| round | clients | gipam req/s | p50 ms | p99 ms | no-op req/s | p50 ms | p99 ms | gipam / no-op |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
    read -r g g50 g99 gbad < <(run "$dir/gipam.sock")
    read -r n n50 n99 _ < <(run "$dir/noop.sock")
    [ "$gbad" = 0 ] || { echo "bench-oha: gipam answered $gbad requests with a non-200 status" >&2; exit 1; }
    ratio=$(awk -v a="$g" -v b="$n" 'BEGIN {printf "%.2f", a / b}')
    printf '| %s | %s | %.0f | %s | %s | %.0f | %s | %s | %s |\n' "$r" "$CLIENTS" "$g" "$g50" "$g99" "$n" "$n50" "$n99" "$ratio"
    ratios+=("$ratio")
done
# One round swings by +-0.05 on a shared machine: the median is the figure.
median=$(printf '%s\n' "${ratios[@]}" | sort -n |
    awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}')
echo
echo "median gipam / no-op over $ROUNDS rounds at $CLIENTS clients: $median (the issue's bar: >= 0.5)"
