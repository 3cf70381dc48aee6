#!/usr/bin/env bash
# `make soak`: RSS over a long run at a fixed single-event rate. Starts
# `eventpipe run` (memory queue, processing included) pinned to CPU 0, drives
# POST /api/v1/ingest from CPU 1 with `eventpipe bench --rate`, samples the
# server's RSS every SOAK_SAMPLE seconds, and prints the samples, the first and
# last minute's averages, and the bench report.
#
#   bash bench/soak.sh [build/eventpipe]
#   SOAK_DURATION=600 SOAK_RATE=0 (closed loop) SOAK_CONNECTIONS=64 SOAK_SAMPLE=30
set -euo pipefail
BIN=${1:-build/eventpipe}
DURATION=${SOAK_DURATION:-600}
RATE=${SOAK_RATE:-0} # events/s; 0 = as fast as the server answers (closed loop)
CONNS=${SOAK_CONNECTIONS:-64}
SAMPLE=${SOAK_SAMPLE:-30}

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
pick_ports
env "${port_env[@]}" LOG_LEVEL=warn "${srv_pin[@]}" "$BIN" run >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
wait_healthy "$API" || { echo "eventpipe run did not start" >&2; exit 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }

rate_args=()
[ "$RATE" != 0 ] && rate_args=(--rate "$RATE")
echo "== soak: ${rate_args[*]:-closed loop} for $DURATION s, $CONNS connections, RSS every $SAMPLE s"
echo "   (server: ${srv_pin[*]:-unpinned}; load: ${load_pin[*]:-unpinned}; $(nproc) CPUs)"
echo "   RSS before load: $(($(rss_kb) / 1024)) MB"
report=$(mktemp)
"${load_pin[@]}" "$BIN" bench --quiet -c "$CONNS" "${rate_args[@]}" -d "$DURATION" \
    --url "http://127.0.0.1:$API/api/v1/ingest" >"$report" 2>&1 &
bpid=$!
samples=()
t=0
while kill -0 "$bpid" 2>/dev/null && [ $((t + SAMPLE)) -lt "$DURATION" ]; do
    sleep "$SAMPLE"
    t=$((t + SAMPLE))
    kill -0 "$bpid" 2>/dev/null || break
    samples+=("$(rss_kb)")
    awk -v t="$t" -v kb="${samples[-1]}" 'BEGIN { printf "   t=%4ds  RSS %6.1f MB\n", t, kb / 1024 }'
done
wait "$bpid" || true
cat "$report"
rm -f "$report"
python3 - "${samples[@]}" <<'PY'
import sys
s = [int(x) / 1024 for x in sys.argv[1:]]
if len(s) >= 4:
    k = max(1, len(s) // 5)
    print("   RSS min %.1f MB, max %.1f MB; first %d samples avg %.1f MB, last %d avg %.1f MB" % (
        min(s), max(s), k, sum(s[:k]) / k, k, sum(s[-k:]) / k))
PY
