"""A real nats-server for end-to-end tests, and a minimal NATS protocol
client (publish, subscribe, request, JetStream API calls) written on the
standard library, so the tests can inject raw messages and read subjects.

    with NatsServer() as ns:
        ns.url                         # nats://127.0.0.1:<port>
        ns.stop(); ns.start()          # same port and store directory
        c = NatsClient(ns.port)
        c.publish("diplom.messages", b"garbage")
        c.js_api("STREAM.INFO.DIPLOM_STREAM")

    with NatsCluster() as cl:          # 3 nodes, JetStream, one cluster
        cl.urls                        # "nats://127.0.0.1:a,nats://127.0.0.1:b,..." (NATS_URL)
        cl.kill(1); cl.start(1)        # kill -9 node 1, restart it on its ports and store
        cl.stream_leader()             # index of the node leading DIPLOM_STREAM
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

from eptest import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    """nats-server with JetStream on a free port and a temporary store directory."""

    def __init__(self, port=None, start=True):
        if not os.path.exists(NATS_SERVER):
            raise AssertionError("nats-server is not installed (scripts/setup.sh installs it)")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="ep-nats-")
        self.store = os.path.join(self.dir, "store")
        self.log_path = os.path.join(self.dir, "nats-server.log")
        self.proc = None
        if start:
            self.start()

    @property
    def url(self):
        return "nats://127.0.0.1:%d" % self.port

    def start(self, timeout=10):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nats-server exited: %s" % self.log_text()[-2000:])
            try:
                c = NatsClient(self.port, timeout=1)
                c.js_api("INFO")  # JetStream answers: the store is loaded
                c.close()
                return self
            except (OSError, AssertionError):
                time.sleep(0.05)
        raise AssertionError("nats-server did not start on %d" % self.port)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        self.stop(signal.SIGKILL)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


class NatsClient:
    """Blocking client for the NATS text protocol: enough for tests."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sid = 0
        self.inbox_n = 0
        line = self._line()
        if not line.startswith(b"INFO "):
            raise AssertionError("not a NATS server: %r" % line)
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                          b'"no_responders":true,"protocol":1}\r\nPING\r\n')
        self._expect_pong()

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise OSError("connection closed by the server")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _expect_pong(self):
        while True:
            line = self._line()
            if line == b"PONG":
                return
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise AssertionError(line.decode())

    def flush(self):
        self.sock.sendall(b"PING\r\n")
        self._expect_pong()

    def publish(self, subject, data, reply=None, headers=None):
        if isinstance(data, str):
            data = data.encode()
        r = (" " + reply) if reply else ""
        if headers:
            hdr = "NATS/1.0\r\n" + "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
            hdr = hdr.encode()
            self.sock.sendall(b"HPUB %s%s %d %d\r\n%s%s\r\n" % (
                subject.encode(), r.encode(), len(hdr), len(hdr) + len(data), hdr, data))
        else:
            self.sock.sendall(b"PUB %s%s %d\r\n%s\r\n" % (subject.encode(), r.encode(),
                                                          len(data), data))

    def subscribe(self, subject):
        self.sid += 1
        self.sock.sendall(b"SUB %s %d\r\n" % (subject.encode(), self.sid))
        self.flush()
        return self.sid

    def next_msg(self, timeout=5):
        """Returns (subject, headers dict, data) or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                line = self._line()
                if line == b"PING":
                    self.sock.sendall(b"PONG\r\n")
                    continue
                parts = line.split()
                if parts[0] == b"MSG":
                    data = self._bytes(int(parts[-1]))
                    return parts[1].decode(), {}, data
                if parts[0] == b"HMSG":
                    hlen, tlen = int(parts[-2]), int(parts[-1])
                    raw = self._bytes(tlen)
                    headers = {}
                    for h in raw[:hlen].decode(errors="replace").split("\r\n")[1:]:
                        if ":" in h:
                            k, v = h.split(":", 1)
                            headers[k.strip()] = v.strip()
                    return parts[1].decode(), headers, raw[hlen:]
        except socket.timeout:
            return None

    def request(self, subject, data=b"", timeout=5):
        self.inbox_n += 1
        inbox = "_INBOX.eptest.%d.%d" % (os.getpid(), self.inbox_n)
        sid = self.subscribe(inbox)
        self.publish(subject, data, reply=inbox)
        msg = self.next_msg(timeout)
        self.sock.sendall(b"UNSUB %d\r\n" % sid)
        if msg is None:
            raise AssertionError("no reply to %s" % subject)
        return msg

    def js_api(self, what, body=None):
        """A JetStream API call ($JS.API.<what>); returns the decoded JSON answer."""
        data = json.dumps(body).encode() if body is not None else b""
        _, headers, reply = self.request("$JS.API." + what, data)
        if not reply:
            raise AssertionError("JetStream API %s: no answer (%r)" % (what, headers))
        return json.loads(reply)

    def stream_info(self, stream="DIPLOM_STREAM"):
        return self.js_api("STREAM.INFO." + stream)

    def subject_count(self, subject, stream="DIPLOM_STREAM"):
        """Messages stored on one subject of the stream."""
        info = self.js_api("STREAM.INFO." + stream, {"subjects_filter": subject})
        return (info.get("state", {}).get("subjects") or {}).get(subject, 0)

    def add_consumer(self, durable, ack_wait_s=30, stream="DIPLOM_STREAM",
                     subject="diplom.messages"):
        """Creates the durable pull consumer with our settings (eventpipe then binds to it)."""
        cfg = {"durable_name": durable, "ack_policy": "explicit", "deliver_policy": "all",
               "filter_subject": subject, "ack_wait": int(ack_wait_s * 1e9),
               "max_deliver": -1}
        r = self.js_api("CONSUMER.DURABLE.CREATE.%s.%s" % (stream, durable),
                        {"stream_name": stream, "config": cfg})
        if "error" in r:
            raise AssertionError("consumer create: %r" % r)
        return r

    def add_stream(self, stream="DIPLOM_STREAM", subjects=("diplom.*",)):
        r = self.js_api("STREAM.CREATE." + stream,
                        {"name": stream, "subjects": list(subjects), "retention": "limits",
                         "storage": "file", "discard": "new"})
        if "error" in r:
            raise AssertionError("stream create: %r" % r)
        return r

    def read_stream(self, subject, stream="DIPLOM_STREAM", limit=1000):
        """Every stored message on subject, via an ephemeral pull consumer (no acks needed)."""
        r = self.js_api("CONSUMER.CREATE." + stream,
                        {"stream_name": stream,
                         "config": {"ack_policy": "none", "deliver_policy": "all",
                                    "filter_subject": subject, "inactive_threshold": int(5e9)}})
        if "error" in r:
            raise AssertionError("consumer create: %r" % r)
        name = r["name"]
        self.inbox_n += 1
        inbox = "_INBOX.eptest.%d.%d" % (os.getpid(), self.inbox_n)
        sid = self.subscribe(inbox)
        self.publish("$JS.API.CONSUMER.MSG.NEXT.%s.%s" % (stream, name),
                     json.dumps({"batch": limit, "no_wait": True}), reply=inbox)
        out = []
        while True:
            m = self.next_msg(timeout=3)
            if m is None:
                break
            subj, headers, data = m
            if subj == inbox:  # a status message: 404 no messages / 408
                break
            out.append((headers, data))
        self.sock.sendall(b"UNSUB %d\r\n" % sid)
        return out


class NatsCluster:
    """Three nats-server nodes with JetStream forming one cluster on 127.0.0.1.

    Each node has its own client, route and monitoring port (free ports picked
    once, kept across restarts), its own server_name (n0, n1, n2) and store
    directory; the configuration files live in one temporary directory that
    __exit__ removes together with every node it started. The cluster is up
    once every node answers, sees the same JetStream meta leader and reports
    all three peers (start() waits for that)."""

    NAME = "ep-cluster"

    def __init__(self, size=3, start=True, timeout=60):
        if not os.path.exists(NATS_SERVER):
            raise AssertionError("nats-server is not installed (scripts/setup.sh installs it)")
        self.size = size
        self.dir = tempfile.mkdtemp(prefix="ep-natscl-")
        self.ports = [free_port() for _ in range(size)]
        self.routes = [free_port() for _ in range(size)]
        self.monitors = [free_port() for _ in range(size)]
        self.procs = [None] * size
        for i in range(size):
            os.makedirs(self.store(i))
            with open(self.conf_path(i), "w") as f:
                f.write(self._conf(i))
        if start:
            try:
                for i in range(size):
                    self.start(i, wait=False)
                self.wait_healthy(timeout)
            except BaseException:
                self.close()
                raise

    def store(self, i):
        return os.path.join(self.dir, "n%d" % i, "store")

    def conf_path(self, i):
        return os.path.join(self.dir, "n%d.conf" % i)

    def log_path(self, i):
        return os.path.join(self.dir, "n%d.log" % i)

    def name(self, i):
        return "n%d" % i

    def _conf(self, i):
        routes = ",\n    ".join("nats-route://127.0.0.1:%d" % p for p in self.routes)
        return ("server_name: n%d\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\n"
                "jetstream {\n  store_dir: \"%s\"\n}\n"
                "cluster {\n  name: %s\n  listen: 127.0.0.1:%d\n  routes: [\n    %s\n  ]\n}\n"
                % (i, self.ports[i], self.monitors[i], self.store(i), self.NAME,
                   self.routes[i], routes))

    def url(self, i):
        return "nats://127.0.0.1:%d" % self.ports[i]

    @property
    def urls(self):
        """Every node as a comma-separated list, as NATS_URL takes it."""
        return ",".join(self.url(i) for i in range(self.size))

    def running(self, i):
        return self.procs[i] is not None and self.procs[i].poll() is None

    def start(self, i, wait=True, timeout=60):
        """Starts node i (again) on its ports and store; with wait, until the cluster is whole."""
        if self.running(i):
            return self
        log = open(self.log_path(i), "ab")
        self.procs[i] = subprocess.Popen([NATS_SERVER, "-c", self.conf_path(i)],
                                         stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            self.wait_healthy(timeout)
        return self

    def stop(self, i, sig=signal.SIGTERM):
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs[i] = None

    def kill(self, i):
        """kill -9 of node i."""
        self.stop(i, signal.SIGKILL)

    def jsz(self, i, timeout=2):
        """The node's /jsz monitoring answer (JetStream and meta group state)."""
        with urllib.request.urlopen("http://127.0.0.1:%d/jsz" % self.monitors[i],
                                    timeout=timeout) as r:
            return json.loads(r.read())

    def meta_state(self):
        """(leader name, why not whole or None) as the running nodes see the meta group."""
        leaders = set()
        for i in range(self.size):
            if not self.running(i):
                return None, "n%d is not running" % i
            try:
                mc = self.jsz(i).get("meta_cluster") or {}
            except OSError as e:
                return None, "n%d /jsz: %s" % (i, e)
            if not mc.get("leader"):
                return None, "n%d sees no meta leader" % i
            leaders.add(mc["leader"])
            peers = mc.get("replicas") or []
            # The leader lists the other peers; each must be current.
            if mc.get("leader") == self.name(i):
                if len(peers) != self.size - 1 or not all(p.get("current") for p in peers):
                    return None, "leader n%d: peers %r" % (i, peers)
        if len(leaders) != 1:
            return None, "nodes disagree on the meta leader: %r" % sorted(leaders)
        return leaders.pop(), None

    def wait_healthy(self, timeout=60):
        """Until every node runs, agrees on one meta leader with all peers current, and
        answers a JetStream API call."""
        deadline = time.time() + timeout
        why = None
        while time.time() < deadline:
            for i in range(self.size):
                if self.procs[i] is not None and self.procs[i].poll() is not None:
                    raise AssertionError("nats-server n%d exited: %s" %
                                         (i, self.log_text(i)[-2000:]))
            leader, why = self.meta_state()
            if leader is not None:
                try:
                    for i in range(self.size):
                        c = NatsClient(self.ports[i], timeout=2)
                        try:
                            info = c.js_api("INFO")
                        finally:
                            c.close()
                        if "error" in info:
                            raise AssertionError("n%d: %r" % (i, info["error"]))
                    return leader
                except (OSError, AssertionError) as e:
                    why = str(e)
            time.sleep(0.1)
        raise AssertionError("NATS cluster not whole after %ss: %s" % (timeout, why))

    def client(self, i=None, timeout=5):
        """A NatsClient on node i, or on the first running node."""
        for k in ([i] if i is not None else range(self.size)):
            if self.running(k):
                return NatsClient(self.ports[k], timeout=timeout)
        raise AssertionError("no NATS node is running")

    def js_api(self, what, body=None):
        """A JetStream API call through the first running node that answers it."""
        err = None
        for i in range(self.size):
            if not self.running(i):
                continue
            try:
                c = NatsClient(self.ports[i], timeout=3)
                try:
                    return c.js_api(what, body)
                finally:
                    c.close()
            except (OSError, AssertionError) as e:
                err = e
        raise AssertionError("JetStream API %s: no node answered (%s)" % (what, err))

    def stream_info(self, stream="DIPLOM_STREAM"):
        return self.js_api("STREAM.INFO." + stream)

    def index_of(self, name):
        return int(name[1:]) if name and name[0] == "n" and name[1:].isdigit() else None

    def stream_leader(self, stream="DIPLOM_STREAM"):
        """Index of the node leading the stream (from STREAM.INFO cluster.leader), or None."""
        info = self.stream_info(stream)
        return self.index_of((info.get("cluster") or {}).get("leader"))

    def log_text(self, i):
        try:
            with open(self.log_path(i), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        for i in range(self.size):
            self.stop(i)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            import sys
            for i in range(self.size):
                sys.stderr.write("---- nats-server n%d log (tail) ----\n%s\n" %
                                 (i, self.log_text(i)[-1500:]))
        self.close()
        return False
