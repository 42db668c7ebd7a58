#!/usr/bin/env bash
# Failover of a spread job on this machine: Nexmark q5, paced, over three
# `weir worker` processes plus a spare, checkpointing into a directory; a
# worker running a part is killed with SIGKILL $KILLS times (a fresh worker
# joins after each kill). Prints, per kill, the time from the kill until
# the controller noticed the failure and until every part of the restarted
# attempt ran; then the checkpoints' durations as the controller reported
# them. Starts its own etcd on loopback.
#
#   bash bench/cluster/failover.sh             # 5 kills, 1 s checkpoints, 2 s leases
#   KILLS=10 INTERVAL=500ms LEASE=3s bash bench/cluster/failover.sh
#
# Needs `bash .ci/setup` (etcd, the release `weir`, the Nexmark UDFs).
set -euo pipefail
cd "$(dirname "$0")/../.."
WEIR="${WEIR:-${CARGO_TARGET_DIR:-target}/release/weir}"
KILLS="${KILLS:-5}"
INTERVAL="${INTERVAL:-1s}"
LEASE="${LEASE:-2s}"
export WEIR_MODULE_PATH="$PWD/${CARGO_TARGET_DIR:-target}/udfs"

# shellcheck source=bench/cluster/etcd.sh
source bench/cluster/etcd.sh

declare -A worker_pid
next=1
add_worker() {
    local id="f$next"
    next=$((next + 1))
    "$WEIR" worker --etcd "$ETCD" --id "$id" --slots 1 --lease-ttl "$LEASE" >"$work/$id.log" 2>&1 &
    worker_pid[$id]=$!
    pids+=($!)
    for _ in $(seq 100); do grep -q "joined the cluster" "$work/$id.log" && return; sleep 0.1; done
    echo "worker $id did not join" >&2; exit 1
}
for _ in 1 2 3 4; do add_worker; done

# About 40 s of events at parallelism 3, more than the kills need.
"$WEIR" bench nexmark --query q5 --events 2000000 --parallelism 3 --print-job \
    | sed 's/^events = \(.*\)$/events = \1\nrate = 50000/' >"$work/q5.toml"
"$WEIR" run "$work/q5.toml" >/dev/null 2>&1 & # warms the module cache
warm=$!; sleep 2; kill "$warm" 2>/dev/null || true; wait "$warm" 2>/dev/null || true

ms() { date +%s%3N; }
"$WEIR" cluster run --etcd "$ETCD" "$work/q5.toml" --checkpoint-storage "$work/checkpoints" \
    --checkpoint-interval "$INTERVAL" --restarts $((KILLS + 2)) 2>&1 \
    | while IFS= read -r line; do printf '%s %s\n' "$(ms)" "$line"; done >"$work/controller.log" &
controller=$!
pids+=($controller)

last_checkpoint() {
    local n=0 d
    for d in "$work"/checkpoints/chk-*; do
        [ -e "$d/_metadata" ] || continue
        d=${d##*/chk-}
        [ "$d" -gt "$n" ] && n=$d
    done
    echo "$n"
}

kills=()
for k in $(seq "$KILLS"); do
    for _ in $(seq 600); do
        [ "$(grep -c 'placed on' "$work/controller.log")" -ge "$k" ] && break
        sleep 0.1
    done
    before=$(last_checkpoint)
    for _ in $(seq 600); do [ "$(last_checkpoint)" -gt "$before" ] && break; sleep 0.05; done
    placed=$(grep 'placed on' "$work/controller.log" | sed -n "${k}p")
    victim=$(echo "$placed" | grep -o 'f[0-9]* (' | head -1 | tr -d ' (')
    at=$(ms)
    kill -9 "${worker_pid[$victim]}"
    kills+=("$at $victim")
    add_worker
done
wait "$controller" || true

printf '| kill | worker | kill → failure noticed (ms) | kill → every part running again (ms) |\n|---:|---|---:|---:|\n'
k=0
for entry in "${kills[@]}"; do
    k=$((k + 1))
    read -r at victim <<<"$entry"
    noticed=$(awk -v t="$at" '$1 >= t && /failed:/ {print $1 - t; exit}' "$work/controller.log")
    again=$(awk -v t="$at" '$1 >= t && /runs again/ {print $1 - t; exit}' "$work/controller.log")
    printf '| %s | %s | %s | %s |\n' "$k" "$victim" "${noticed:-?}" "${again:-?}"
done
echo
echo "Checkpoints (each attempt's last, as the controller reported):"
grep -o 'completed [0-9]* checkpoint(s); the last, chk-[0-9]*, took [0-9]* ms and holds [0-9]* bytes' \
    "$work/controller.log" || true
grep -q 'finished on 3 worker(s)' "$work/controller.log" \
    || { echo "the job did not finish:" >&2; tail -20 "$work/controller.log" >&2; exit 1; }
