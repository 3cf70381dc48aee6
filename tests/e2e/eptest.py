"""Helpers for end-to-end tests: start the real eventpipe binary on free
ports, talk HTTP to it, and run test_* functions with a closing summary line.
Only the Python standard library is used."""

import atexit
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

EP_BIN = os.environ.get("EP_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "eventpipe")


def _port_range():
    """Ports below the kernel's ephemeral range: bind(0) hands out ports from
    that range, and so does every outgoing connect(), so a port picked there can
    be taken by any client (or another test) before the server binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        eph_lo = 32768
    if eph_lo > 12000:
        return 10000, eph_lo - 1
    return 1024, 9999


_given = set()
# Ports handed out by any test process now running: one file per port, holding the pid of
# the process it was given to (tests run in parallel, each picking ports at random).
_PORT_DIR = os.path.join(tempfile.gettempdir(), "eptest-ports-%d" % os.getuid())


def _claim(port):
    """1 when port is now this process's among concurrent test processes: its file is
    created exclusively, or taken over from a process that is gone."""
    os.makedirs(_PORT_DIR, exist_ok=True)
    path = os.path.join(_PORT_DIR, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read() or "0")
            except (OSError, ValueError):
                return False
            if pid == os.getpid() or (pid and os.path.exists("/proc/%d" % pid)):
                return False
            try:
                os.unlink(path)  # its process ended without releasing it
            except OSError:
                return False
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True
    return False


@atexit.register
def _release_ports():
    for port in _given:
        try:
            os.unlink(os.path.join(_PORT_DIR, str(port)))
        except OSError:
            pass


def free_port():
    """A port nobody listens on now, picked at random outside the ephemeral
    range and never handed out twice while this process runs, by it or by any
    other test process (_claim), so concurrent tests and their clients rarely
    collide; Eventpipe retries a start that still does."""
    lo, hi = _port_range()
    for _ in range(1000):
        port = random.randint(lo, hi)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _claim(port):
            continue  # another test process has it, maybe not yet bound
        _given.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:200])


def request(port, method, path, body=None, headers=None, timeout=10, conn=None):
    """One HTTP request; body may be bytes, str or a JSON-able object."""
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.getheaders(), data)
    finally:
        if own:
            conn.close()


def read_all(s, until=None):
    """Every byte the peer sends on socket s until it closes the connection (or,
    with until, until until(data) holds)."""
    data = b""
    while until is None or not until(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def raw_exchange(port, data, timeout=20, host="127.0.0.1", until=None):
    """Sends the bytes data (b"": nothing) on a new connection and returns what the
    server sends back until it closes the connection (see read_all)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        if data:
            s.sendall(data)
        return read_all(s, until)


def parse_raw(out):
    """A raw HTTP/1.1 answer (bytes) as a Response."""
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return Response(int(lines[0].split()[1]), [tuple(x.split(": ", 1)) for x in lines[1:]], body)


def get_json(port, path, timeout=10):
    r = request(port, "GET", path, timeout=timeout)
    assert r.status == 200, (path, r)
    return r.json()


def debian_module(name):
    """Imports a module of a Debian python3-* package (grpc: python3-grpcio). The python3 on
    PATH may not see Debian's packages: then the calling test starts again under
    /usr/bin/python3, which does (os.execv: nothing after this line runs here)."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.path.exists("/usr/bin/python3") and \
                os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        raise


def ready(port):
    """True when GET /ready on port answers 200 (False on any other answer or no answer)."""
    try:
        return request(port, "GET", "/ready", timeout=5).status == 200
    except OSError:
        return False


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - the server may not be up yet
            last = e
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


class _PortTaken(Exception):
    """The server could not listen: a port picked for it was taken meanwhile."""


class Eventpipe:
    """A running `eventpipe <cmd>` on free ports, with its log in a temp dir."""

    START_TRIES = 3

    def __init__(self, cmd="run", env=None, args=None, ports=None, wait=True):
        # A port picked here may still be taken by someone else before the
        # server binds it: start again on other ports (the test chose none).
        for attempt in range(self.START_TRIES):
            try:
                self._start(cmd, env, args, ports, wait)
                return
            except _PortTaken:
                if ports is not None or attempt == self.START_TRIES - 1:
                    raise AssertionError("%s: a port was taken:\n%s" %
                                         (cmd, self.log_text()[-2000:]))

    def _start(self, cmd, env, args, ports, wait):
        self.dir = tempfile.mkdtemp(prefix="ep-e2e-")
        self.ports = dict(ports) if ports else {"api": free_port(), "ingest": free_port(),
                                                 "processor": free_port()}
        # Every process gets an analytics port of its own unless the test shares one.
        self.ports.setdefault("analytics", free_port())
        self.env = dict(os.environ)
        self.env.update({
            "API_PORT": str(self.ports["api"]),
            "INGEST_PORT": str(self.ports["ingest"]),
            "PROCESSOR_PORT": str(self.ports["processor"]),
            "BIND_ADDR": "127.0.0.1",
            "INGEST_URL": "http://127.0.0.1:%d" % self.ports["ingest"],
            "PROCESSOR_URL": "http://127.0.0.1:%d" % self.ports["processor"],
            "ANALYTICS_PORT": str(self.ports["analytics"]),
            "ANALYTICS_URL": "http://127.0.0.1:%d" % self.ports["analytics"],
            "LOG_LEVEL": "info",
            # gRPC listeners (issue 16) only where a test asks for them (its env).
            "GRPC_PRODUCER_PORT": "0",
            "GRPC_CONSUMER_PORT": "0",
            "GRPC_ANALYTICS_PORT": "0",
        })
        self.env.update(env or {})
        self.cmd = cmd
        self.log_path = os.path.join(self.dir, "%s.log" % cmd)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([EP_BIN, cmd] + list(args or []), env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            try:
                self.wait_healthy()
            except BaseException:
                # Never leave a half-started process behind.
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                self.log.close()
                if "Address already in use" in self.log_text():
                    raise _PortTaken()
                sys.stderr.write("---- %s log ----\n%s\n" % (cmd, self.log_text()[-4000:]))
                raise

    def own_ports(self):
        if self.cmd == "run":
            return [self.ports["api"], self.ports["ingest"], self.ports["processor"],
                    self.ports["analytics"]]
        key = {"gateway": "api"}.get(self.cmd, self.cmd)
        return [self.ports[key]]

    def wait_healthy(self, timeout=15):
        def healthy(p):
            if self.proc.poll() is not None:
                return "exited"  # ends the wait: it will not come up
            return request(p, "GET", "/health", timeout=1).status == 200

        for p in self.own_ports():
            got = wait_for(lambda: healthy(p), timeout=timeout,
                           what="%s /health on %d" % (self.cmd, p))
            if got == "exited":
                raise AssertionError("%s exited with %s before /health on %d answered" %
                                     (self.cmd, self.proc.returncode, p))

    @property
    def api(self):
        return self.ports["api"]

    @property
    def ingest(self):
        return self.ports["ingest"]

    @property
    def processor(self):
        return self.ports["processor"]

    @property
    def analytics(self):
        return self.ports["analytics"]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("%s did not exit within %ss of signal %s" %
                                 (self.cmd, timeout, sig))
        finally:
            self.log.close()
        return rc

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, text, timeout=30):
        """Waits until the log holds text. The start-up lines (access rules, "listening")
        are written after the listeners answer /health, so a test reads them this way."""
        wait_for(lambda: text in self.log_text(), timeout=timeout, what="%r in the log" % text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.log.closed:
            self.log.close()
        if exc[0] is not None:
            sys.stderr.write("---- %s log ----\n%s\n" % (self.cmd, self.log_text()[-4000:]))
        return False


def read_sink(path):
    """Lines of an NDJSON sink file, parsed."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines() if line.strip()]


def seed_event(i=0, source="sensor-01"):
    return {"source": source, "data": "temperature:%d" % i,
            "metadata": {"location": "warehouse-A", "seq": str(i)}}


def main(module_globals):
    """Runs every test_* function of the calling module (or those named in argv)."""
    names = [n for n in sorted(module_globals) if n.startswith("test_")
             and callable(module_globals[n])]
    if len(sys.argv) > 1:
        names = [n for n in names if n in sys.argv[1:]]
    passed = failed = 0
    for n in names:
        t0 = time.time()
        try:
            module_globals[n]()
            passed += 1
            print("ok   %s (%.1fs)" % (n, time.time() - t0), flush=True)
        except Exception:  # noqa: BLE001 - report and continue
            failed += 1
            print("FAIL %s (%.1fs)" % (n, time.time() - t0), flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    sys.exit(1 if failed or not passed else 0)


class Load:
    """Background senders: `threads` keep-alive connections posting events
    until stopped; records the ids of every 2xx answer and the other statuses."""

    def __init__(self, port, path="/api/v1/ingest", threads=4, prefix="load", batch=0):
        """batch > 0: each request is a JSON array of that many events (a batch path);
        the ids the answer gives a messageId count as acknowledged."""
        self.port, self.path, self.prefix, self.batch = port, path, prefix, batch
        self.ok_ids = []
        self.statuses = {}
        self.errors = 0
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, k):
        conn = None
        i = 0
        while not self.stop_flag.is_set():
            ids = ["%s-%d-%d" % (self.prefix, k, i + j) for j in range(max(self.batch, 1))]
            i += len(ids)
            evs = [{"id": eid, "source": "load", "data": "x"} for eid in ids]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                r = request(self.port, "POST", self.path, evs if self.batch else evs[0],
                            conn=conn)
                ok = []
                if 200 <= r.status < 300:
                    ok = ids if not self.batch else [
                        ids[x["index"]] for x in r.json()["results"] if "messageId" in x]
                with self.lock:
                    self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                    self.ok_ids += ok
                if r.headers.get("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception:  # noqa: BLE001 - the server may be going away
                with self.lock:
                    self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=10)
