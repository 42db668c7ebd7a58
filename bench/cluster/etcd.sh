# Sourced by the cluster benchmarks: a scratch directory `$work`, the
# processes to kill on exit (`pids`), and a one-member etcd on loopback at
# `$ETCD`.
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port); pport=$(free_port)
ETCD="http://127.0.0.1:$cport"
etcd --name bench --data-dir "$work/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "bench=http://127.0.0.1:$pport" --log-level error >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "$ETCD/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$ETCD/health" >/dev/null 2>&1 || { echo "etcd did not start at $ETCD" >&2; exit 1; }
