#!/usr/bin/env bash
# make lint: cppcheck and clang-tidy (Debian's 2.10 and 14) over src/, clean or exit 1.
#   clang-tidy: the checks in .clang-tidy (the reasons for what is left out are there),
#               on the compile commands of a configured build (LINT_BUILD, build-lint).
#   cppcheck:   warning, portability and performance findings (style is clang-format's
#               and the reviewers' job); inline suppressions name their reason.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${LINT_BUILD:-build-lint}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

for tool in clang-tidy cppcheck run-clang-tidy; do
    command -v "$tool" >/dev/null || { echo "lint: $tool missing (make deps)" >&2; exit 1; }
done

cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
# the generated protobuf-c header the sources include ("proto/eventpipe.pb-c.h")
cmake --build "$B" --target gen/proto/eventpipe.pb-c.o >/dev/null

rc=0
echo "lint: cppcheck" >&2
if ! cppcheck --quiet --std=c11 --enable=warning,portability,performance --inline-suppr \
    --error-exitcode=1 --suppress=missingIncludeSystem -I src -I "$B/gen" -j "$JOBS" src; then
    rc=1
fi

echo "lint: clang-tidy ($(ls src/*.c src/*/*.c src/*/*/*.c 2>/dev/null | wc -l) files)" >&2
out=$(mktemp)
run-clang-tidy -p "$B" -j "$JOBS" -quiet "$PWD/src/" >"$out" 2>&1 || true
# run-clang-tidy's exit status is not reliable across versions: read the findings.
if grep -E '(warning|error): ' "$out" | sed 's/\x1b\[[0-9;]*m//g' | sort -u | grep .; then
    rc=1
fi
rm -f "$out"
[ $rc -eq 0 ] && echo "lint: clean" >&2
exit $rc
