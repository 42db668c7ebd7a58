#!/usr/bin/env bash
# Nexmark in one process against the same job spread over 2 and 3 `weir
# worker` processes on this machine: events per CPU-second (all processes'
# user + system time) and wall time. Starts its own etcd on loopback.
#
#   bash bench/cluster/nexmark.sh            # q0, q5, q8; 2,000,000 events; parallelism 3
#   QUERIES="q5" EVENTS=5000000 ROUNDS=3 bash bench/cluster/nexmark.sh
#
# Needs `bash .ci/setup` (etcd, the release `weir`, the Nexmark UDFs).
set -euo pipefail
cd "$(dirname "$0")/../.."
WEIR="${WEIR:-${CARGO_TARGET_DIR:-target}/release/weir}"
QUERIES="${QUERIES:-q0 q5 q8}"
EVENTS="${EVENTS:-2000000}"
PARALLELISM="${PARALLELISM:-3}"
ROUNDS="${ROUNDS:-2}"
export WEIR_MODULE_PATH="$PWD/${CARGO_TARGET_DIR:-target}/udfs"

# shellcheck source=bench/cluster/etcd.sh
source bench/cluster/etcd.sh

# CPU seconds (user + system) of processes, from /proc.
cpu_of() {
    local total=0 p t
    for p in "$@"; do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}
hz=$(getconf CLK_TCK)

start_workers() {
    local n=$1 slots=$2 i
    workers=()
    for i in $(seq "$n"); do
        "$WEIR" worker --etcd "$ETCD" --id "bench-$n-$i" --slots "$slots" --lease-ttl 3s \
            >"$work/worker-$n-$i.log" 2>&1 &
        workers+=($!)
        pids+=($!)
    done
    for _ in $(seq 100); do
        [ "$("$WEIR" cluster workers --etcd "$ETCD" --json | wc -l)" -ge "$n" ] && return
        sleep 0.1
    done
    echo "workers did not join" >&2; exit 1
}

stop_workers() {
    kill "${workers[@]}" 2>/dev/null || true
    wait "${workers[@]}" 2>/dev/null || true
}

printf '| query | run | events / CPU-second | wall s | CPU s |\n|---|---|---:|---:|---:|\n'
for q in $QUERIES; do
    "$WEIR" bench nexmark --query "$q" --events "$EVENTS" --parallelism "$PARALLELISM" --print-job >"$work/$q.toml"
    # Warm the module cache (compiling is not what is measured).
    "$WEIR" run "$work/$q.toml" >/dev/null 2>&1
    for round in $(seq "$ROUNDS"); do
        # One process.
        start=$(date +%s.%N)
        /usr/bin/time -f '%U %S' -o "$work/time" "$WEIR" run "$work/$q.toml" >/dev/null 2>&1
        wall=$(echo "$(date +%s.%N) - $start" | bc)
        cpu=$(awk '{print $1 + $2}' "$work/time")
        printf '| %s | one process (round %s) | %.0f | %.2f | %.2f |\n' "$q" "$round" \
            "$(echo "$EVENTS / $cpu" | bc -l)" "$wall" "$cpu"
        for n in 2 3; do
            slots=$(( (PARALLELISM + n - 1) / n ))
            start_workers "$n" "$slots"
            before=$(cpu_of "${workers[@]}")
            start=$(date +%s.%N)
            /usr/bin/time -f '%U %S' -o "$work/time" \
                "$WEIR" cluster run --etcd "$ETCD" "$work/$q.toml" >"$work/run.log" 2>&1 \
                || { cat "$work/run.log" >&2; exit 1; }
            wall=$(echo "$(date +%s.%N) - $start" | bc)
            after=$(cpu_of "${workers[@]}")
            # The workers' CPU during the run, and the submitting process's.
            cpu=$(echo "($after - $before) / $hz + $(awk '{print $1 + $2}' "$work/time")" | bc -l)
            printf '| %s | %s workers (round %s) | %.0f | %.2f | %.2f |\n' "$q" "$n" "$round" \
                "$(echo "$EVENTS / $cpu" | bc -l)" "$wall" "$cpu"
            stop_workers
        done
    done
done
