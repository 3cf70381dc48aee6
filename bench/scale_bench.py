#!/usr/bin/env python3
"""Events/s with 1, 2, 4 and 8 processors on NATS and on Kafka (issue 18, item 6).

For each queue and each processor count N, from scratch:

1. the broker: a real nats-server with JetStream (file store in a temporary directory),
   or build/ep_kafka_mock (librdkafka's mock cluster, one broker, KAFKA_TOPIC with
   --partitions partitions, 8 by default so that 8 processors each get one);
2. a local webhook receiver (Python's http.server, one thread per connection) that
   answers 200 after a fixed delay (--delay-ms, 20 by default) and counts the NDJSON
   lines it answered;
3. the queue pre-loaded: `eventpipe ingest` alone, `eventpipe bench -n` posting batches
   of 100 until enough events are stored (every 2xx means the broker stored them): at
   least --events, and enough for N processors at full speed through the warm-up and the
   window with a margin; then ingest stopped;
4. N `eventpipe processor` processes (separate processes, the same durable consumer on
   NATS, the same consumer group on Kafka), each with PROCESSOR_SINK pointing to the
   receiver, PROCESSOR_WORKERS=--workers workers and PROCESSOR_SINK_BATCH=--sink-batch;
5. after every processor is ready (on Kafka: every partition assigned) and a warm-up
   (--warmup seconds), the receiver's line count over --window seconds gives events/s.
   The load average, and the CPU used by the broker, the processors and the receiver
   during the window (utime + stime from /proc, in % of one CPU) are printed with it.

Why pre-load instead of feeding ingest during the run: on this 2-core machine a steady
feed (ingest + the load generator) takes CPU from the processors and from the broker,
so the figure would measure the feed as much as the processors. A backlog also keeps
every processor busy from its first fetch. The run checks the backlog was not drained
during the window (the row says "drained" otherwise: the figure is then a lower bound).

With one worker and batches of 50 per POST, one processor can finish at most
50 / 20 ms = 2,500 events/s while the receiver's delay dominates (its CPU cost per batch
is far below 20 ms); N processors, N times that, until the CPU runs out.

  python3 bench/scale_bench.py [--queues nats,kafka] [--procs 1,2,4,8] [--delay-ms 20]
        [--workers 1] [--sink-batch 50] [--events 50000] [--warmup 3] [--window 10]
        [--json] [--write-docs]

Prints a Markdown table; --write-docs replaces the generated block in docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
EP_BIN = os.environ.get("EP_BIN") or os.path.join(BUILD, "eventpipe")
MOCK_BIN = os.path.join(os.path.dirname(EP_BIN), "ep_kafka_mock")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def self_ticks():
    t = os.times()
    return (t.user + t.system) * TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


# The downstream: bench/sink_bench.py's receiver (answers every POST after delay_s and
# counts the lines it answered).
from sink_bench import Receiver  # noqa: E402


def get_json(port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return json.loads(r.read())


def wait_for(what, cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError("timed out waiting for %s" % what)


class Run:
    """One measurement: broker, receiver, pre-load, N processors. Cleans up everything."""

    def __init__(self, queue, nproc, a):
        self.queue, self.nproc, self.a = queue, nproc, a
        self.dir = tempfile.mkdtemp(prefix="ep-scale-")
        self.procs = []  # (Popen, port)
        self.broker = None
        self.recv = None
        self.queue_env = {}

    def log(self, name):
        return open(os.path.join(self.dir, name + ".log"), "wb")

    def start_broker(self):
        if self.queue == "nats":
            port = free_port()
            self.broker = subprocess.Popen(
                [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                 os.path.join(self.dir, "store")], stdout=self.log("nats-server"),
                stderr=subprocess.STDOUT)
            wait_for("nats-server", lambda: socket.create_connection(
                ("127.0.0.1", port), timeout=1).close() or True, 10)
            self.queue_env = {"QUEUE_TYPE": "nats", "NATS_URL": "nats://127.0.0.1:%d" % port}
        else:
            out = os.path.join(self.dir, "mock.out")
            with open(out, "wb") as f:
                self.broker = subprocess.Popen(
                    [MOCK_BIN, "--no-stdin", "--brokers", "1", "--topic",
                     "events:%d" % self.a.partitions, "--topic", "events.dlq:1"],
                    stdout=f, stderr=subprocess.STDOUT)
            wait_for("ep_kafka_mock", lambda: os.path.getsize(out) > 0, 10)
            with open(out) as f:
                bootstrap = f.readline().strip()
            self.queue_env = {"QUEUE_TYPE": "kafka", "KAFKA_BROKERS": bootstrap,
                              "KAFKA_TOPIC": "events", "KAFKA_DLQ_TOPIC": "events.dlq",
                              "KAFKA_COMPRESSION": "lz4",
                              "KAFKA_PARTITIONS": str(self.a.partitions)}

    def env(self, **kw):
        e = dict(os.environ, BIND_ADDR="127.0.0.1", LOG_LEVEL="warn",
                 GRPC_PRODUCER_PORT="0", GRPC_CONSUMER_PORT="0", GRPC_ANALYTICS_PORT="0")
        e.update(self.queue_env)
        e.update({k: str(v) for k, v in kw.items()})
        return e

    def preload(self):
        # Enough for the warm-up and the window at N times one processor's ceiling, and
        # the start-up (a Kafka group join takes seconds), with a margin.
        ceiling = self.a.workers * self.a.sink_batch * 1000.0 / max(self.a.delay_ms, 1)
        want = max(self.a.events, min(self.a.max_events, int(
            self.nproc * ceiling * (self.a.warmup + self.a.window + 10) * 1.3)))
        port = free_port()
        ing = subprocess.Popen([EP_BIN, "ingest"], env=self.env(INGEST_PORT=port),
                               stdout=self.log("ingest"), stderr=subprocess.STDOUT)
        try:
            wait_for("ingest /ready", lambda: get_json(port, "/ready") is not None, 30)
            left = want
            while left > 0:  # bench -n counts requests; a non-2xx is sent again
                reqs = (left + 99) // 100
                out = subprocess.run(
                    [EP_BIN, "bench", "--quiet", "--json", "-c", "8", "--batch", "100",
                     "-n", str(reqs), "-d", "120",
                     "--url", "http://127.0.0.1:%d/events/batch" % port],
                    check=True, stdout=subprocess.PIPE).stdout
                j = json.loads(out)
                left -= j["ok"] * 100
                if j["ok"] == 0:
                    raise RuntimeError("pre-load: no 2xx (%r)" % j)
        finally:
            ing.terminate()
            ing.wait(timeout=60)
        self.loaded = want - min(left, 0)

    def start_processors(self):
        sink = "http://127.0.0.1:%d/hook" % self.recv.port
        for i in range(self.nproc):
            port = free_port()
            p = subprocess.Popen(
                [EP_BIN, "processor"],
                env=self.env(PROCESSOR_PORT=port, PROCESSOR_SINK=sink,
                             PROCESSOR_WORKERS=self.a.workers, PROCESSOR_BATCH=self.a.sink_batch,
                             PROCESSOR_SINK_BATCH=self.a.sink_batch,
                             PROCESSOR_SINK_LINGER=self.a.linger),
                stdout=self.log("processor%d" % i), stderr=subprocess.STDOUT)
            self.procs.append((p, port))
        for p, port in self.procs:
            wait_for("processor /ready", lambda: get_json(port, "/ready") is not None, 60)
        if self.queue == "kafka":
            # The group settles: every partition assigned to one of the N processors.
            def assigned():
                return sum(get_json(port, "/stats")["queue"]["kafka"]["assigned_partitions"]
                           for _, port in self.procs) == self.a.partitions
            wait_for("all %d partitions assigned" % self.a.partitions, assigned, 120)

    def measure(self):
        a = self.a
        self.recv = Receiver(a.delay_ms / 1000.0)
        self.start_broker()
        self.preload()
        self.start_processors()
        time.sleep(a.warmup)
        pids = {"broker": [self.broker.pid], "processors": [p.pid for p, _ in self.procs]}
        c0 = {k: sum(cpu_ticks(p) for p in v) for k, v in pids.items()}
        r0, t0, l0, s0 = self.recv.count(), time.monotonic(), loadavg(), self_ticks()
        time.sleep(a.window)
        r1, t1, l1, s1 = self.recv.count(), time.monotonic(), loadavg(), self_ticks()
        c1 = {k: sum(cpu_ticks(p) for p in v) for k, v in pids.items()}
        dt = t1 - t0
        res = {
            "queue": self.queue, "processors": self.nproc,
            "events_per_s": round((r1[0] - r0[0]) / dt),
            "posts_per_s": round((r1[1] - r0[1]) / dt),
            "events_per_post": round((r1[0] - r0[0]) / max(1, r1[1] - r0[1]), 1),
            "drained": r1[0] >= self.loaded,
            "load_start": l0, "load_end": l1,
            "cpu_broker_pct": round(100.0 * (c1["broker"] - c0["broker"]) / TCK / dt),
            "cpu_processors_pct": round(100.0 * (c1["processors"] - c0["processors"]) / TCK / dt),
            "cpu_receiver_pct": round(100.0 * (s1 - s0) / TCK / dt),
            "preloaded": self.loaded,
        }
        # Errors the processors saw at the sink (none expected: the receiver answers 200).
        failed = 0
        for _, port in self.procs:
            try:
                sk = get_json(port, "/stats").get("sink", {})
                failed += int(sk.get("failed", 0) or 0) + int(sk.get("errors", 0) or 0)
            except (OSError, ValueError):
                pass
        res["sink_errors"] = failed
        return res

    def close(self):
        for p, _ in self.procs:
            if p.poll() is None:
                p.terminate()
        for p, _ in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait()
        if self.recv is not None:
            self.recv.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def table(results, a, started, machine):
    by = {}
    for r in results:
        by.setdefault(r["queue"], {})[r["processors"]] = r
    seed = {1: "2,000", 4: "7,000", 8: "12,000"}
    lines = [
        "Generated by `python3 bench/scale_bench.py` on %s (%s). Receiver delay %d ms per POST, "
        "PROCESSOR_WORKERS=%d, PROCESSOR_BATCH = PROCESSOR_SINK_BATCH = %d, "
        "PROCESSOR_SINK_LINGER=%s; queue pre-loaded with at least %d events (more for more "
        "processors); %g s warm-up, %g s window; "
        "ceiling while the delay dominates: %d events/s per processor."
        % (started, machine, a.delay_ms, a.workers, a.sink_batch, a.linger, a.events,
           a.warmup, a.window, int(a.workers * a.sink_batch * 1000 / max(a.delay_ms, 1))),
        "",
        "| processors | seed 001's claim | NATS events/s | x of 1 | Kafka events/s | x of 1 "
        "| load avg (NATS / Kafka) | CPU % broker / processors / receiver (NATS; Kafka) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(q, n):
        r = by.get(q, {}).get(n)
        if r is None:
            return "n/a", "", "", ""
        base = by[q].get(1)
        x = "%.2f" % (r["events_per_s"] / base["events_per_s"]) if base and base[
            "events_per_s"] else ""
        v = "{:,}".format(r["events_per_s"]) + (" (drained)" if r["drained"] else "")
        if r["sink_errors"]:
            v += " (%d sink errors)" % r["sink_errors"]
        cpu = "%d / %d / %d" % (r["cpu_broker_pct"], r["cpu_processors_pct"],
                                r["cpu_receiver_pct"])
        return v, x, "%s-%s" % (r["load_start"], r["load_end"]), cpu

    for n in a.procs:
        nv, nx, nl, nc = cell("nats", n)
        kv, kx, kl, kc = cell("kafka", n)
        lines.append("| %d | %s | %s | %s | %s | %s | %s / %s | %s; %s |" % (
            n, seed.get(n, "-"), nv, nx, kv, kx, nl, kl, nc, kc))
    return "\n".join(lines)


def write_docs(text):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    begin, end = "<!-- scale-bench:begin -->", "<!-- scale-bench:end -->"
    doc = open(path).read()
    block = "%s\n%s\n%s" % (begin, text, end)
    if begin in doc and end in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip() + "\n\n## Scaling with processors (issue 18)\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)
    print("updated %s" % path, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queues", default="nats,kafka")
    ap.add_argument("--procs", default="1,2,4,8")
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sink-batch", type=int, default=50)
    ap.add_argument("--linger", default="5ms")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--events", type=int, default=50000, help="at least this many pre-loaded")
    ap.add_argument("--max-events", type=int, default=1000000,
                    help="at most this many pre-loaded (a run that drains them says so)")
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--window", type=float, default=10)
    ap.add_argument("--json", action="store_true", help="also print one JSON line per run")
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    a.procs = [int(x) for x in a.procs.split(",")]
    queues = [q.strip() for q in a.queues.split(",") if q.strip()]
    for q in queues:
        if q not in ("nats", "kafka"):
            ap.error("--queues: nats and/or kafka, not %r" % q)
    if "nats" in queues and not os.path.exists(NATS_SERVER):
        sys.exit("nats-server is not installed (scripts/setup.sh installs it)")
    if "kafka" in queues and not os.access(MOCK_BIN, os.X_OK):
        sys.exit("%s is missing: cmake --build build --target ep_kafka_mock" % MOCK_BIN)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = "%d CPUs, load average %s at the start" % (os.cpu_count(), loadavg())
    results = []
    # Alternating queues per processor count, so a change in the machine's load hits both.
    for n in a.procs:
        for q in queues:
            run = Run(q, n, a)
            try:
                r = run.measure()
            finally:
                run.close()
            results.append(r)
            print(json.dumps(r) if a.json else "%s, %d processors: %d events/s (load %s)" % (
                q, n, r["events_per_s"], r["load_end"]), file=sys.stderr, flush=True)
    text = table(results, a, started, machine)
    print(text)
    if a.write_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
