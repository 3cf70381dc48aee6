"""A real nats-server for end-to-end tests, and a minimal NATS protocol
client (publish, subscribe, request, JetStream API calls) written on the
standard library, so the tests can inject raw messages and read subjects.

    with NatsServer() as ns:
        ns.url                         # nats://127.0.0.1:<port>
        ns.stop(); ns.start()          # same port and store directory
        c = NatsClient(ns.port)
        c.publish("diplom.messages", b"garbage")
        c.js_api("STREAM.INFO.DIPLOM_STREAM")
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

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
