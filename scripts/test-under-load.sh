#!/usr/bin/env bash
# Runs the whole CI (`bash .ci/run`: make test, all three phases) ROUNDS times
# in a row, each from a fresh clone of HEAD, while `stress-ng --cpu N` keeps
# every core busy, as on a shared machine. Prints each round's time and exit
# code; exits non-zero if any round failed. Traffic stays on 127.0.0.1.
#
#   scripts/test-under-load.sh [ROUNDS]     (default 3; CPU_HOGS=N, default nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
hogs=${CPU_HOGS:-$(nproc)}
bash scripts/setup.sh
command -v stress-ng >/dev/null || { echo "stress-ng missing" >&2; exit 1; }

work=$(mktemp -d /tmp/ep-under-load.XXXXXX)
stress-ng --cpu "$hogs" --timeout 0 >/dev/null 2>&1 &
hog=$!
trap 'kill "$hog" 2>/dev/null || true; wait "$hog" 2>/dev/null || true' EXIT

failed=0
for i in $(seq "$rounds"); do
    d="$work/round-$i"
    git clone -q . "$d"
    t0=$(date +%s)
    if (cd "$d" && CI=true bash .ci/run) >"$work/round-$i.log" 2>&1; then rc=0; else rc=$?; fi
    t1=$(date +%s)
    passed=$(grep -c "100% tests passed" "$work/round-$i.log" || true)
    echo "round $i: exit $rc in $((t1 - t0)) s; phases with 100% passed: $passed (log: $work/round-$i.log)"
    [ "$rc" -eq 0 ] || failed=1
done
echo "load: stress-ng --cpu $hogs during every round"
exit "$failed"
