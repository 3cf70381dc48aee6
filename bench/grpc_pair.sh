#!/usr/bin/env bash
# Paired benchmark of the gRPC API against the REST API on one binary (issue 16's
# "Done when"): `eventpipe run` pinned to one core, `eventpipe bench` on the other, the
# load test's scenarios (REST single events on the gateway with 64 connections against
# unary SendEvent on 64; REST NDJSON batches of 100 on ingest with 16 connections against
# SendBatchEvents of 100 on 16), PAIRS pairs of DURATION s each, alternating which API
# runs first. Each run gets a fresh server (QUEUE_SIZE=1000000, memory queue). One TSV row
# a run:
#   scenario  rest|grpc  events/s  p50 us  p99 us  server CPU us/event  client CPU us/event
#   processed%  non-2xx  socket-errors  load-average-1min
# "processed%" is what the workers finished one second after the load ended, against the
# events accepted: processing keeping pace reads 100.
# usage: bench/grpc_pair.sh [BIN] [PAIRS] [DURATION] > results.tsv
BIN=${1:-build/eventpipe}; PAIRS=${2:-5}; D=${3:-5}
source "$(dirname "$0")/common.sh"
TCK=$(getconf CLK_TCK)
one() { # api scenario
    local api=$1 sc=$2 pid out t0 t1 tf proc log url args
    pick_ports
    log="${TMPDIR:-/tmp}/grpc_pair.srv.$$.log"
    tf=$(mktemp)
    env "${port_env[@]}" LOG_LEVEL=warn QUEUE_SIZE=1000000 "${srv_pin[@]}" "$BIN" run >"$log" 2>&1 &
    pid=$!
    if ! wait_healthy "$API"; then
        kill $pid 2>/dev/null
        wait $pid
        echo "$api $sc: no start (exit status $?); its log ends:" >&2
        tail -5 "$log" >&2
        return
    fi
    case "$api/$sc" in
    rest/single) args=(-c 64 --url "http://127.0.0.1:$API/api/v1/ingest") ;;
    rest/batch) args=(-c 16 --batch 100 --url "http://127.0.0.1:$ING/events/batch") ;;
    grpc/single) args=(--grpc -c 64 --url "127.0.0.1:$GRPC") ;;
    grpc/batch) args=(--grpc -c 16 --batch 100 --url "127.0.0.1:$GRPC") ;;
    esac
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    # The client's CPU: user + system seconds of the bench process, from GNU time.
    out=$(/usr/bin/time -f '%U %S' -o "$tf" "${load_pin[@]}" "$BIN" bench --quiet --json -d "$D" "${args[@]}")
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    sleep 1
    proc=$(curl -s "http://127.0.0.1:$PROC/stats" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["pool"]["processed"])')
    kill $pid; wait $pid 2>/dev/null
    python3 - "$api" "$sc" "$out" "$((t1 - t0))" "$TCK" "$(cat "$tf")" "$proc" \
        "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
api, sc, out, ticks, tck, ct, proc, la = sys.argv[1:9]
j = json.loads(out)
ev = j["ok"] * j["batch"]
cu, cs = (float(x) for x in ct.split()[-2:])
print("\t".join(str(x) for x in (sc, api, round(j["events_per_s"]), j["latency_us"]["p50"],
      j["latency_us"]["p99"], round(int(ticks) / int(tck) * 1e6 / ev, 3) if ev else "?",
      round((cu + cs) * 1e6 / ev, 3) if ev else "?",
      round(100.0 * int(proc) / ev, 1) if ev else "?", j["non2xx"], j["socket_errors"], la)),
      flush=True)
PY
    rm -f "$tf" "$log"
}
for sc in ${SCENARIOS:-batch single}; do
    for p in $(seq "$PAIRS"); do
        if [ $((p % 2)) = 1 ]; then one rest $sc; one grpc $sc; else one grpc $sc; one rest $sc; fi
    done
done
