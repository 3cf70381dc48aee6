#!/usr/bin/env bash
# Disk queue benchmark: POST /api/v1/ingest against `eventpipe run` with
# QUEUE_TYPE=disk (QUEUE_FSYNC=always unless set) and wrk with 64 keep-alive
# connections; every 202 means the event is on disk (fdatasync done). Prints
# events/s, latency percentiles, and from /stats the fsyncs and the events per
# fsync achieved by group commit. The server is pinned to CPU 0 and wrk to
# CPU 1 when there are two CPUs.
#   bench/disk_bench.sh [path/to/eventpipe]
#   QUEUE_FSYNC=never|<ms>  BENCH_DURATION=10s  BENCH_CONNECTIONS=64  QUEUE_DIR=...
set -euo pipefail
BIN=${1:-build/eventpipe}
DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-64}
FSYNC=${QUEUE_FSYNC:-always}
here=$(cd "$(dirname "$0")" && pwd)

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
pick_ports

work=$(mktemp -d)
QDIR=${QUEUE_DIR:-$work/queue}
log=$work/server.log
env "${port_env[@]}" QUEUE_TYPE=disk QUEUE_DIR="$QDIR" QUEUE_FSYNC="$FSYNC" \
    "${srv_pin[@]}" "$BIN" run >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
if ! wait_healthy "$API"; then
    echo "eventpipe run did not start:" >&2
    cat "$log" >&2
    exit 1
fi

fs=$(df -PT "$QDIR" 2>/dev/null | awk 'NR==2 {print $2 " on " $1}')
echo "== POST /api/v1/ingest, eventpipe run, disk queue (QUEUE_FSYNC=$FSYNC, $QDIR: ${fs:-?}), $CONNS connections, $DURATION"
echo "   (server: ${srv_pin[*]:-unpinned}; wrk: ${load_pin[*]:-unpinned}; $(nproc) CPUs)"
"${load_pin[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$here/ingest.lua" \
    "http://127.0.0.1:$API/api/v1/ingest" | grep -E "^(events/s|latency|requests=)"
sleep 1
curl -s "http://127.0.0.1:$PROC/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
q, d = s["queue"], s["queue"]["disk"]
print("processed=%d errors=%d queue_size=%d enqueued=%d" % (s["pool"]["processed"], s["pool"]["errors"], q["size"], q["enqueued"]))
print("fsyncs=%d events_per_fsync=%.1f fsync_p50=%dus fsync_p99=%dus segments=%d bytes=%d" % (
    d["fsyncs"], d["events_per_fsync"], d["fsync_p50_us"], d["fsync_p99_us"], d["segments"], d["bytes"]))'
rss=$(awk "/VmRSS/ {print \$2}" /proc/$pid/status)
echo "server RSS: $((rss / 1024)) MB"
