#!/usr/bin/env bash
# Kafka → job → Kafka throughput on loopback, the figures in
# docs/benchmarks.md: N records (default 1M) read from a 2-partition topic by
# 2 source subtasks and written to a 2-partition topic by 2 sink subtasks,
# with at-least-once and with exactly-once at 1 s and 10 s checkpoints.
# The broker is the test broker (tansu, in memory), started here.
#
#   bash udfs/jobs/kafka-bench.sh [records]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
WEIR=${WEIR:-target/release/weir}
TANSU=$(bash .ci/tansu/build)
PORT=19792
work=$(mktemp -d)
"$TANSU" broker --listener-url tcp://127.0.0.1:$PORT --advertised-listener-url tcp://127.0.0.1:$PORT \
    --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
broker=$!
trap 'kill $broker; rm -rf "$work"' EXIT
export WEIR_KAFKA=127.0.0.1:$PORT
sleep 1
python3 - "$N" >"$work/in.jsonl" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    print(f'{{"k":"key-{i % 1000}","ts":{1700000000000 + i},"bid":{i % 997},"note":"a bid of moderate length"}}')
PY
"$WEIR" kafka create-topic bench-in --partitions 2
"$WEIR" kafka produce --topic bench-in "$work/in.jsonl" --key-field k --timestamp-field ts
run=0
for mode in "at-least-once|" "exactly-once|1s" "exactly-once|10s"; do
    guarantee=${mode%|*}
    interval=${mode#*|}
    run=$((run + 1))
    "$WEIR" kafka create-topic "bench-out-$run" --partitions 2
    cat >"$work/job-$run.toml" <<TOML
[job]
name = "kafka-bench"

[source.in]
kind = "kafka"
topic = "bench-in"
stop_at_end = true
parallelism = 2

[sink.out]
input = "in"
kind = "kafka"
topic = "bench-out-$run"
guarantee = "$guarantee"
parallelism = 2
TOML
    args=(run -q "$work/job-$run.toml")
    if [ -n "$interval" ]; then
        args+=(--state-dir "$work/state-$run" --checkpoint-interval "$interval")
    fi
    echo "== $guarantee ${interval:+(checkpoints every $interval)}"
    /usr/bin/time -f "%e s wall, %M KB max RSS" "$WEIR" "${args[@]}" 2>&1 | grep -E "finished|checkpoints:|wall"
done
