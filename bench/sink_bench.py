#!/usr/bin/env python3
"""Events/s through `eventpipe run` with the webhook sink (PROCESSOR_SINK=http://...).

Starts a local receiver (Python's http.server, one thread per connection, which
counts the NDJSON lines it answers 200 to, after an optional fixed delay), then
`eventpipe run` posting to it, then `eventpipe bench` sending NDJSON batches to
ingest's /events/batch. The figure is processed events/s from processor:/stats
(events acked after the receiver's 2xx), measured over the run after a warm-up,
and checked against the lines the receiver counted.

  bench/sink_bench.py [--delay-ms 0,20] [--duration 10] [--batch 100] [--connections 8]
                      [--workers 4] [--env NAME=VALUE ...]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EP_BIN = os.environ.get("EP_BIN") or os.path.join(ROOT, "build", "eventpipe")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """The downstream: answers every POST after delay_s, counts the lines it answered."""

    def __init__(self, delay_s):
        self.lines = self.posts = 0
        self.lock = threading.Lock()
        recv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if delay_s:
                    time.sleep(delay_s)
                with recv.lock:
                    recv.lines += body.count(b"\n")
                    recv.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # the listen backlog: up to 8 processors connect at once

        self.srv = Server(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return self.lines, self.posts

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def stats(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % port, timeout=10) as r:
        return json.loads(r.read())


def run_one(delay_ms, a):
    recv = Receiver(delay_ms / 1000.0)
    ports = {k: free_port() for k in ("API_PORT", "INGEST_PORT", "PROCESSOR_PORT",
                                      "ANALYTICS_PORT")}
    env = dict(os.environ, BIND_ADDR="127.0.0.1", LOG_LEVEL="warn", QUEUE_SIZE="100000",
               PROCESSOR_WORKERS=str(a.workers),
               PROCESSOR_SINK="http://127.0.0.1:%d/hook" % recv.port,
               **{k: str(v) for k, v in ports.items()})
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    log = tempfile.NamedTemporaryFile(prefix="ep-sink-bench-", suffix=".log", delete=False)
    ep = subprocess.Popen([EP_BIN, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    proc = ports["PROCESSOR_PORT"]
    try:
        for _ in range(200):
            try:
                stats(proc)
                break
            except OSError:
                time.sleep(0.05)
        bench = subprocess.Popen(
            [EP_BIN, "bench", "--url", "http://127.0.0.1:%d/events/batch" % ports["INGEST_PORT"],
             "-c", str(a.connections), "-d", "%ds" % a.duration, "--batch", str(a.batch),
             "--quiet", "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        warm = min(2.0, a.duration / 4)
        time.sleep(warm)
        s0, t0 = stats(proc), time.monotonic()
        p0 = recv.posts
        time.sleep(a.duration - 2 * warm)
        s1, t1 = stats(proc), time.monotonic()
        p1 = recv.posts
        out = json.loads(bench.communicate()[0] or b"{}")
        # Let the queue drain, then check the receiver saw what was processed.
        last = -1
        while True:
            cur = stats(proc)["pool"]["processed"]
            if cur == last and stats(proc)["queue"]["size"] == 0:
                break
            last = cur
            time.sleep(0.5)
        final = stats(proc)
        done = (s1["pool"]["processed"] - s0["pool"]["processed"]) / (t1 - t0)
        res = {"delay_ms": delay_ms, "events_per_s": round(done),
               "posts_per_s": round((p1 - p0) / (t1 - t0)),
               "events_per_post": round((s1["pool"]["processed"] - s0["pool"]["processed"]) /
                                        max(1, p1 - p0), 1),
               "processed": final["pool"]["processed"], "receiver_lines": recv.lines,
               "sink": final["sink"], "bench": {k: out.get(k) for k in
                                                ("requests", "rps", "status", "events")}}
        return res
    finally:
        ep.terminate()
        ep.wait(timeout=60)
        recv.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", default="0,20")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()
    for d in a.delay_ms.split(","):
        r = run_one(int(d), a)
        print(json.dumps(r), flush=True)
        if r["processed"] != r["receiver_lines"]:
            print("MISMATCH: processed %d, receiver counted %d" %
                  (r["processed"], r["receiver_lines"]), file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
