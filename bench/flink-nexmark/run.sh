#!/usr/bin/env bash
# Nexmark in weir and in Apache Flink 2.3, side by side: the same queries on
# the same events at the same parallelism, on this machine, one after the
# other. Writes the table into docs/benchmarks.md (between the
# `nexmark:begin` and `nexmark:end` markers) and prints it.
#
#   bash bench/flink-nexmark/run.sh
#
# Settings (environment): EVENTS (default 10,000,000), PARALLELISM (1),
# QUERIES ("q0 q1 q2 q3 q4 q5 q7 q8 q11"), CHECKPOINT_MS (10000; 0 = off),
# DOC (docs/benchmarks.md; empty: print the table only), LATENCY_RATE
# (100000) and LATENCY_EVENTS (3,000,000; 0 = skip): weir's latency, in a
# second, paced run of each query at that rate (`weir bench nexmark --rate`).
#
# weir generates its events in process (`weir bench nexmark`); Flink reads
# the same events, written once by `weir bench nexmark-events`, from a JSON
# lines file (filesystem connector, json format). Flink runs in a local
# MiniCluster (the jars of the PyPI package apache-flink-libraries, Java 17),
# with the JVM's default heap. Both count only the job's execution: weir
# compiles its modules before the clock starts, Flink plans its SQL before.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

EVENTS=${EVENTS:-10000000}
PARALLELISM=${PARALLELISM:-1}
QUERIES=${QUERIES:-"q0 q1 q2 q3 q4 q5 q7 q8 q11"}
CHECKPOINT_MS=${CHECKPOINT_MS:-10000}
# The document the table goes into; empty: only print it.
DOC=${DOC-docs/benchmarks.md}
LATENCY_RATE=${LATENCY_RATE:-100000}
LATENCY_EVENTS=${LATENCY_EVENTS:-3000000}
FLINK_VERSION=2.3.0
FLINK=${WEIR_FLINK_DIR:-$HOME/.cache/weir/flink}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# weir's toolchains (system packages, the wasm32-wasip2 target) and every
# UDF, as the test command sets them up.
bash .ci/setup

# Java 17 and Flink's jars.
if ! command -v javac >/dev/null; then
    say "installing Java 17"
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
fi
if [ ! -f "$FLINK/pyflink/lib/flink-dist-$FLINK_VERSION.jar" ]; then
    say "downloading Flink $FLINK_VERSION (apache-flink-libraries from PyPI)"
    mkdir -p "$FLINK"
    pip download --quiet --no-deps "apache-flink-libraries==$FLINK_VERSION" -d "$FLINK"
    (cd "$FLINK" && unzip -q -o "apache_flink_libraries-$FLINK_VERSION-py2.py3-none-any.whl" 'pyflink/lib/*')
fi
say "compiling the Flink job"
javac -d "$WORK/classes" -cp "$FLINK/pyflink/lib/*" bench/flink-nexmark/NexmarkSql.java

# weir and its UDFs.
say "building weir and the Nexmark UDFs"
cargo build --release --quiet -p weir-cli
WEIR="$TARGET/release/weir"
"$WEIR" udf build udfs/rust/bench/nexmark-select udfs/rust/bench/nexmark-agg udfs/rust/bench/nexmark-join udfs/rust/examples/bid-count >&2

say "writing $EVENTS events for Flink"
"$WEIR" bench nexmark-events --events "$EVENTS" --out "$WORK/events.jsonl"

: > "$WORK/weir.jsonl"
: > "$WORK/flink.jsonl"
: > "$WORK/latency.jsonl"
ckpt_args=()
if [ "$CHECKPOINT_MS" != 0 ]; then ckpt_args=(--checkpoint-interval "${CHECKPOINT_MS}ms"); fi
for q in $QUERIES; do
    say "$q: weir"
    "$WEIR" bench nexmark --json --query "$q" --events "$EVENTS" --parallelism "$PARALLELISM" \
        "${ckpt_args[@]}" | tail -1 >> "$WORK/weir.jsonl"
    say "$q: Flink"
    java -cp "$FLINK/pyflink/lib/*:$WORK/classes" NexmarkSql "$WORK/events.jsonl" "$q" "$PARALLELISM" "$CHECKPOINT_MS" \
        2> "$WORK/flink-$q.log" | tail -1 >> "$WORK/flink.jsonl" || {
        echo "Flink failed on $q:" >&2
        tail -30 "$WORK/flink-$q.log" >&2
        echo "{\"query\":\"$q\",\"failed\":true}" >> "$WORK/flink.jsonl"
    }
    if [ "$LATENCY_EVENTS" != 0 ]; then
        say "$q: weir, paced at $LATENCY_RATE events/s for latency"
        "$WEIR" bench nexmark --json --query "$q" --events "$LATENCY_EVENTS" --parallelism "$PARALLELISM" \
            --rate "$LATENCY_RATE" "${ckpt_args[@]}" | tail -1 >> "$WORK/latency.jsonl"
    fi
done

doc_args=()
if [ -n "$DOC" ]; then doc_args=(--doc "$DOC"); fi
python3 bench/flink-nexmark/table.py "$WORK/weir.jsonl" "$WORK/flink.jsonl" \
    --events "$EVENTS" --parallelism "$PARALLELISM" --checkpoint-ms "$CHECKPOINT_MS" \
    --latency "$WORK/latency.jsonl" --latency-rate "$LATENCY_RATE" --latency-events "$LATENCY_EVENTS" \
    "${doc_args[@]}"
