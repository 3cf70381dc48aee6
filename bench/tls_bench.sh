#!/usr/bin/env bash
# The cost of TLS (issue 15): single events over HTTPS keep-alive connections
# against plain HTTP, `eventpipe bench -c 64` on the gateway of `eventpipe run`
# (memory queue, processing included), in pairs run back to back in alternating
# order so that a shared machine's drift hits both sides alike. The server is
# pinned to CPU 0 and bench to CPU 1 (common.sh). With a second binary (the
# previous build), plain HTTP of that binary is paired with plain HTTP of this
# one as well: the regression check of the plain path.
#
#   bash bench/tls_bench.sh [build/eventpipe] [old/eventpipe]
#   TLS_BENCH_PAIRS=5 TLS_BENCH_DURATION=5
# Prints a Markdown table per comparison, each pair's events/s and the ratio,
# and the median ratio.
set -euo pipefail
BIN=${1:-build/eventpipe}
OLD=${2:-}
PAIRS=${TLS_BENCH_PAIRS:-5}
DURATION=${TLS_BENCH_DURATION:-5}
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

dir=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# A CA and a server certificate for 127.0.0.1 (P-256, as most deployments now use).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/ca.key" \
    -out "$dir/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dir/srv.key" \
    -out "$dir/srv.csr" -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/ext"
openssl x509 -req -in "$dir/srv.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -out "$dir/srv.pem" -days 2 -extfile "$dir/ext" 2>/dev/null

# The server's CPU time so far (user + system, clock ticks).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One measurement: binary, scheme. Prints "events/s p50_ms p99_ms cpu_us_per_event": the
# server's CPU time per event is what a busy shared machine disturbs least.
run_one() {
    local bin=$1 scheme=$2 tls=() curl_tls=() json t0 t1
    pick_ports
    if [ "$scheme" = https ]; then
        tls=(TLS_CERT_FILE="$dir/srv.pem" TLS_KEY_FILE="$dir/srv.key" TLS_CA_FILE="$dir/ca.pem"
            INGEST_URL="https://127.0.0.1:$ING" PROCESSOR_URL="https://127.0.0.1:$PROC"
            ANALYTICS_URL="https://127.0.0.1:$ANA")
        curl_tls=(--cacert "$dir/ca.pem")
    fi
    env "${port_env[@]}" "${tls[@]}" LOG_LEVEL=warn QUEUE_SIZE=100000 "${srv_pin[@]}" "$bin" run \
        >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -sf "${curl_tls[@]}" "$scheme://127.0.0.1:$API/health" >/dev/null && break
        sleep 0.1
    done
    t0=$(cpu_ticks "$pid")
    json=$("${load_pin[@]}" "$BIN" bench --quiet --json -c 64 -d "$DURATION" "${curl_tls[@]}" \
        --url "$scheme://127.0.0.1:$API/api/v1/ingest")
    t1=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    python3 -c 'import json,os,sys; j=json.loads(sys.argv[1]); l=j["latency_us"]
assert j["non2xx"] == 0 and j["socket_errors"] == 0, j
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) * 1e6 / os.sysconf("SC_CLK_TCK")
print("%.0f %.2f %.2f %.2f" % (j["events_per_s"], l["p50"] / 1000, l["p99"] / 1000,
                               cpu_us / max(1, j["ok"])))' "$json" "$t0" "$t1"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Pairs of (binary, scheme) A and B, alternating which runs first.
compare() {
    local title=$1 a_bin=$2 a_scheme=$3 b_bin=$4 b_scheme=$5 a b ratios=() cratios=()
    echo
    echo "$title"
    echo
    echo "| pair | $6 events/s (p50 / p99 ms) | $7 events/s (p50 / p99 ms) | ratio | $6 server CPU µs/event | $7 server CPU µs/event | ratio |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for i in $(seq "$PAIRS"); do
        if [ $((i % 2)) = 1 ]; then
            a=$(run_one "$a_bin" "$a_scheme"); b=$(run_one "$b_bin" "$b_scheme")
        else
            b=$(run_one "$b_bin" "$b_scheme"); a=$(run_one "$a_bin" "$a_scheme")
        fi
        read -r ae ap50 ap99 acpu <<<"$a"
        read -r be bp50 bp99 bcpu <<<"$b"
        r=$(python3 -c "print('%.3f' % ($be / $ae))")
        c=$(python3 -c "print('%.3f' % ($bcpu / $acpu))")
        ratios+=("$r")
        cratios+=("$c")
        echo "| $i | $ae ($ap50 / $ap99) | $be ($bp50 / $bp99) | $r | $acpu | $bcpu | $c |"
    done
    echo
    echo "median ratio of events/s: $(median "${ratios[@]}"); of server CPU per event: $(median "${cratios[@]}")"
}

echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load average $(cut -d' ' -f1-3 /proc/loadavg); ${DURATION} s per run; server \`${srv_pin[*]:-unpinned}\`, bench \`${load_pin[*]:-unpinned}\`"
compare "HTTPS against plain HTTP, single events, 64 keep-alive connections ($BIN)" \
    "$BIN" http "$BIN" https "plain HTTP" "HTTPS"
if [ -n "$OLD" ]; then
    compare "Plain HTTP: this build against $OLD" "$OLD" http "$BIN" http "before" "after"
fi
