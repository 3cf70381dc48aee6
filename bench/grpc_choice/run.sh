#!/bin/bash
# The measurement behind the gRPC library choice (docs/architecture.md, "gRPC API"):
# the same unary call answered by a gRPC C core server (libgrpc-dev) and by an
# nghttp2 + epoll server, both driven by h2load (nghttp2-client) with the same
# 116-byte SendEvent-like message; server CPU per call and RSS from /proc.
# Needs: libgrpc-dev libnghttp2-dev nghttp2-client. Loopback only, bounded runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'kill $p1 $p2 2>/dev/null || true; rm -rf "$tmp"' EXIT
cd "$tmp"
gcc -O2 -o core_srv "$here/core_srv.c" $(pkg-config --cflags --libs grpc)
gcc -O2 -o h2_srv "$here/h2_srv.c" -lnghttp2
python3 - <<'PY'
import struct
def f(n, s):
    b = s.encode(); return bytes([(n << 3) | 2, len(b)]) + b
msg = (f(1, "0190f1a2-7b3c-7def-8abc-123456789abc") + f(2, "user_456") + f(3, "page_view")
       + f(6, "web-app") + f(7, '{"page":"/dashboard","ref":"newsletter","n":3}'))
open("body.bin", "wb").write(b"\0" + struct.pack(">I", len(msg)) + msg)
PY
./h2_srv 50062 >/dev/null & p1=$!
./core_srv 127.0.0.1:50061 >/dev/null & p2=$!
sleep 1
for i in 1 2; do
    echo "== nghttp2 + epoll"; "$here/measure.sh" $p1 50062 ${N:-200000}
    echo "== gRPC C core";     "$here/measure.sh" $p2 50061 ${N:-200000}
done
