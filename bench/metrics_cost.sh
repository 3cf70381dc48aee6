#!/usr/bin/env bash
# Metrics cost: the single-event load benchmark (bench/http_bench.sh: wrk, 64
# connections, POST /api/v1/ingest on `eventpipe run`) with METRICS_ENABLED=true
# and =false, interleaved (on, off, on, off, ...) so drift in the machine's load
# hits both alike; prints every run and the median events/s of each, and the
# difference.  Usage: bench/metrics_cost.sh [build/eventpipe] [runs per side]
set -euo pipefail
BIN=${1:-build/eventpipe}
RUNS=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
on=(); off=()
for i in $(seq "$RUNS"); do
    for m in true false; do
        r=$(METRICS_ENABLED=$m bash "$here/http_bench.sh" "$BIN" | awk '/^events\/s:/ {print $2}')
        echo "run $i metrics=$m events/s=$r"
        if [ "$m" = true ]; then on+=("$r"); else off+=("$r"); fi
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mon=$(median "${on[@]}"); moff=$(median "${off[@]}")
echo "median events/s: metrics on $mon, metrics off $moff"
awk -v a="$mon" -v b="$moff" 'BEGIN {printf "metrics on vs off: %+.1f%%\n", (a - b) / b * 100}'
