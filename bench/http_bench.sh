#!/usr/bin/env bash
# `make bench`: POST /api/v1/ingest against `eventpipe run` (memory queue,
# processing included) with wrk; prints events/s and latency percentiles.
# The server is pinned to CPU 0 and wrk to CPU 1 when there are two CPUs.
set -euo pipefail
BIN=${1:-build/eventpipe}
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-64}
here=$(cd "$(dirname "$0")" && pwd)

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
pick_ports

log=$(mktemp)
env "${port_env[@]}" QUEUE_SIZE="${QUEUE_SIZE:-100000}" "${srv_pin[@]}" "$BIN" run >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
if ! wait_healthy "$API"; then
    echo "eventpipe run did not start:" >&2
    cat "$log" >&2
    exit 1
fi

echo "== POST /api/v1/ingest, eventpipe run, memory queue, $CONNS connections, $DURATION"
echo "   (server: ${srv_pin[*]:-unpinned}; wrk: ${load_pin[*]:-unpinned}; $(nproc) CPUs)"
"${load_pin[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$here/ingest.lua" \
    "http://127.0.0.1:$API/api/v1/ingest" | grep -E "^(events/s|latency|requests=)"
sleep 1
curl -s "http://127.0.0.1:$PROC/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("processed=%d errors=%d queue_size=%d" % (s["pool"]["processed"], s["pool"]["errors"], s["queue"]["size"]))'
rss=$(awk "/VmRSS/ {print \$2}" /proc/$pid/status)
echo "server RSS: $((rss / 1024)) MB"
