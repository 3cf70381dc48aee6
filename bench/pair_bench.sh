#!/usr/bin/env bash
# Paired benchmark of two eventpipe binaries (e.g. main before and after a change), as
# docs/benchmarks.md asks for on these noisy machines: `eventpipe run` (one core) under
# `eventpipe bench -c 16` (the other core), single events and batches of 100, PAIRS pairs
# of DURATION s each, alternating which binary runs first. One TSV row a run:
#   scenario  old|new  events/s  p50 us  p99 us  server CPU us per event  non-2xx  socket errors
# The load generator is OLD's for both, so only the server differs.
# usage: bench/pair_bench.sh OLD NEW [PAIRS] [DURATION] > results.tsv
OLD=$1; NEW=$2; PAIRS=${3:-5}; D=${4:-5}
BENCH=$OLD   # the same load generator for both
source "$(dirname "$0")/common.sh"
TCK=$(getconf CLK_TCK)
one() { # label bin scenario
    local label=$1 bin=$2 sc=$3 pid out t0 t1 cpu
    pick_ports
    local log="${TMPDIR:-/tmp}/pair_bench.srv.log"
    env "${port_env[@]}" LOG_LEVEL=warn QUEUE_SIZE=100000 "${srv_pin[@]}" "$bin" run >"$log" 2>&1 &
    pid=$!
    if ! wait_healthy "$API"; then
        kill $pid 2>/dev/null
        wait $pid
        echo "$label $sc: no start (exit status $?); its log ends:" >&2
        tail -5 "$log" >&2
        return
    fi
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    if [ "$sc" = single ]; then
        out=$("${load_pin[@]}" "$BENCH" bench --quiet --json -d "$D" -c 16 --url "http://127.0.0.1:$ING/events")
    else
        out=$("${load_pin[@]}" "$BENCH" bench --quiet --json -d "$D" -c 16 --batch 100 --url "http://127.0.0.1:$ING/events/batch")
    fi
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill $pid; wait $pid 2>/dev/null
    python3 - "$label" "$sc" "$out" "$((t1-t0))" "$TCK" <<'PY'
import json, sys
label, sc, out, ticks, tck = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
j = json.loads(out)
eps = j["events_per_s"]
ev = j["ok"] * j["batch"]
print("\t".join(str(x) for x in (sc, label, round(eps), j["latency_us"]["p50"], j["latency_us"]["p99"],
      round(ticks / tck * 1e6 / ev, 3) if ev else "?", j["non2xx"], j["socket_errors"])), flush=True)
PY
}
for sc in single batch; do
  for p in $(seq "$PAIRS"); do
    if [ $((p % 2)) = 1 ]; then one old "$OLD" $sc; one new "$NEW" $sc; else one new "$NEW" $sc; one old "$OLD" $sc; fi
  done
done
