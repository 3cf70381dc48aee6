"""The webhook sink (issue 18 item 2): PROCESSOR_SINK=http://... POSTs processed
events as NDJSON batches to a receiver (Python's http.server in a thread here)
and acks them only after a 2xx.

- healthy receiver: every accepted event arrives exactly once, as many as
  processor:/stats says were processed, over kept-alive connections;
- 503 a few times, then 200: retried, nothing lost, retries counted;
- 400: not retried, the events go to the dead-letter store (disk queue:
  dlq.log) and are counted;
- a receiver answering after 50 ms: delivered, in batches;
- no receiver at start, one later: delivered once it is up; meanwhile (after
  5 s of failures) processor:/ready answers 503 naming PROCESSOR_SINK;
- SIGTERM delivers a batch a worker was still gathering (long linger);
- the same over a real nats-server (QUEUE_TYPE=nats) and librdkafka's mock
  cluster (QUEUE_TYPE=kafka): 503s retried, each event once; a 400 puts the
  events on the dead-letter subject / topic;
- https:// verified with TLS_CA_FILE (a wrong CA delivers nothing);
- bad settings exit 2 naming the setting."""

import json
import os
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from eptest import (EP_BIN, Eventpipe, free_port, get_json, main, request, wait_for)


class Receiver:
    """A webhook receiver: answers script[i] to the i-th POST, then `code`;
    sleeps `delay` s before answering; keeps the ids of the 2xx-answered lines."""

    def __init__(self, port=None, script=(), code=200, delay=0.0, tls=None):
        self.script, self.code, self.delay = list(script), code, delay
        self.lock = threading.Lock()
        self.ids = []            # ids of the lines answered 2xx, in arrival order
        self.requests = 0
        self.statuses = {}
        self.bad = []            # what was wrong with a request (content type, a line)
        self.peers = set()       # client (address, port): one per connection
        self.batch_sizes = []
        recv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with recv.lock:
                    i = recv.requests
                    recv.requests += 1
                    code = recv.script[i] if i < len(recv.script) else recv.code
                    recv.peers.add(self.client_address)
                if recv.delay:
                    time.sleep(recv.delay)
                lines = body.decode().splitlines()
                ids = []
                for line in lines:
                    try:
                        ids.append(json.loads(line)["id"])
                    except (ValueError, KeyError) as e:
                        with recv.lock:
                            recv.bad.append("line %r: %s" % (line[:80], e))
                with recv.lock:
                    if self.headers.get("Content-Type") != "application/x-ndjson":
                        recv.bad.append("content type %r" % self.headers.get("Content-Type"))
                    recv.statuses[code] = recv.statuses.get(code, 0) + 1
                    if 200 <= code < 300:
                        recv.ids.extend(ids)
                        recv.batch_sizes.append(len(ids))
                out = b'{"ok":true}\n' if code < 300 else b'{"error":"scripted"}\n'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.port = port or free_port()
        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.srv.daemon_threads = True
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme="http"):
        return "%s://127.0.0.1:%d/hook" % (scheme, self.port)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def send(ep, n, prefix):
    """POSTs n events with ids prefix-0.. in batches of 500 to ingest; returns the
    ids answered accepted."""
    ok = []
    for start in range(0, n, 500):
        evs = [{"id": "%s-%d" % (prefix, i), "source": "hook", "event_type": "click",
                "user_id": "u%d" % (i % 7)} for i in range(start, min(n, start + 500))]
        r = request(ep.ingest, "POST", "/events/batch", evs, timeout=60)
        assert r.status == 202, (r.status, r.body)
        for ev, res in zip(evs, r.json()["results"]):
            if "messageId" in res:
                ok.append(ev["id"])
    return ok


def stats(ep):
    return get_json(ep.processor, "/stats")


def metric(ep, line_start):
    """The value of the /metrics sample whose line starts with line_start, or None."""
    text = request(ep.processor, "GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return None


def check_exactly_once(recv, accepted, ep):
    """Every accepted id arrived once, nothing else did, and /stats processed agrees."""
    with recv.lock:
        got = list(recv.ids)
        assert not recv.bad, recv.bad[:5]
    dup = len(got) - len(set(got))
    assert dup == 0, "%d duplicates" % dup
    assert set(got) == set(accepted), (len(set(accepted) - set(got)), len(set(got) - set(accepted)))
    st = stats(ep)
    assert st["pool"]["processed"] == len(accepted), (st["pool"], len(accepted))
    assert st["sink"]["type"] == "http", st["sink"]
    assert st["sink"]["delivered"] == len(accepted), st["sink"]


def wait_processed(ep, n, timeout=120):
    wait_for(lambda: stats(ep)["pool"]["processed"] >= n, timeout=timeout,
             what="%d processed (%r)" % (n, stats(ep)["pool"]))


def test_healthy_every_event_exactly_once():
    with Receiver() as recv, Eventpipe("run", env={"PROCESSOR_SINK": recv.url()}) as ep:
        accepted = send(ep, 3000, "ok")
        assert len(accepted) == 3000
        wait_processed(ep, len(accepted))
        # Processed means acked after the 2xx: the receiver has them all by now.
        check_exactly_once(recv, accepted, ep)
        workers = 4
        assert len(recv.peers) <= workers, recv.peers  # keep-alive: a connection per worker
        assert metric(ep, 'ep_sink_events_total{result="delivered"}') == 3000
        assert metric(ep, 'ep_sink_requests_total{result="ok"}') == recv.requests
        assert metric(ep, "ep_sink_request_seconds_count") == recv.requests
        assert ep.stop() == 0


def test_503_then_200_retried_nothing_lost():
    env = {"PROCESSOR_SINK_BACKOFF": "10ms"}
    with Receiver(script=[503, 503, 503], code=200) as recv:
        env["PROCESSOR_SINK"] = recv.url()
        with Eventpipe("run", env=env) as ep:
            accepted = send(ep, 500, "r")
            wait_processed(ep, len(accepted))
            check_exactly_once(recv, accepted, ep)
            assert recv.statuses.get(503) == 3, recv.statuses
            st = stats(ep)["sink"]
            assert st["retries"] >= 3 and st["failed_requests"] == 3, st
            assert metric(ep, "ep_sink_retries_total") == st["retries"]
            assert metric(ep, 'ep_sink_requests_total{result="server_error"}') == 3
            assert stats(ep)["pool"]["dead_lettered"] == 0
            assert ep.stop() == 0


def test_400_dead_lettered_and_counted():
    qdir = tempfile.mkdtemp(prefix="ep-hook-dlq-")
    with Receiver(code=400) as recv:
        env = {"PROCESSOR_SINK": recv.url(), "QUEUE_TYPE": "disk", "QUEUE_DIR": qdir}
        with Eventpipe("run", env=env) as ep:
            accepted = send(ep, 120, "bad")
            assert len(accepted) == 120
            wait_for(lambda: stats(ep)["pool"]["dead_lettered"] >= 120, timeout=60,
                     what="120 dead-lettered")
            st = stats(ep)
            assert st["pool"]["dead_lettered"] == 120, st["pool"]
            assert st["pool"]["processed"] == 0, st["pool"]
            assert st["sink"]["rejected"] == 120 and st["sink"]["retries"] == 0, st["sink"]
            # Not retried: one POST per batch, and nothing was taken.
            assert recv.requests == st["sink"]["requests"], (recv.requests, st["sink"])
            assert recv.ids == []
            assert metric(ep, 'ep_sink_events_total{result="rejected"}') == 120
            assert metric(ep, "ep_dead_lettered_total") == 120
            assert ep.stop() == 0
    with open(os.path.join(qdir, "dlq.log"), "rb") as f:
        dlq = f.read()
    for eid in accepted:
        assert eid.encode() in dlq, eid
    assert b"a 4xx" in dlq


def test_slow_receiver_50ms():
    with Receiver(delay=0.05) as recv, Eventpipe("run", env={"PROCESSOR_SINK": recv.url()}) as ep:
        accepted = send(ep, 2000, "slow")
        wait_processed(ep, len(accepted))
        check_exactly_once(recv, accepted, ep)
        # Batched: far fewer POSTs than events.
        assert recv.requests < len(accepted) / 5, (recv.requests, recv.batch_sizes[:20])
        assert ep.stop() == 0


def test_receiver_down_at_start_then_up():
    # One quick retry, then the events go back to the queue and come again later:
    # every event fails at least once before the receiver is up.
    port = free_port()
    env = {"PROCESSOR_SINK": "http://127.0.0.1:%d/hook" % port, "PROCESSOR_MAX_ATTEMPTS": "1000",
           "PROCESSOR_SINK_RETRIES": "1", "PROCESSOR_SINK_BACKOFF": "10ms"}
    with Eventpipe("run", env=env) as ep:
        accepted = send(ep, 300, "late")
        wait_for(lambda: stats(ep)["sink"]["failed"] >= 300, timeout=60,
                 what="every event failed once while the receiver is down")
        st = stats(ep)
        assert st["pool"]["processed"] == 0 and st["sink"]["delivered"] == 0, st
        assert st["queue"]["nacked"] >= 300, st["queue"]
        # The receiver is a downstream: after 5 s of failures the processor is not ready.
        r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(
            request(ep.processor, "GET", "/ready")), timeout=60, what="processor /ready 503")
        assert b"PROCESSOR_SINK" in r.body, r.body
        with Receiver(port=port) as recv:
            wait_processed(ep, len(accepted))
            check_exactly_once(recv, accepted, ep)
            assert request(ep.processor, "GET", "/ready").status == 200
            assert stats(ep)["pool"]["dead_lettered"] == 0
            assert metric(ep, 'ep_sink_requests_total{result="transport"}') >= 2
            assert ep.stop() == 0


def test_sigterm_delivers_the_batch_being_gathered():
    # A linger far longer than the test: the worker holds the events when SIGTERM comes.
    with Receiver() as recv:
        env = {"PROCESSOR_SINK": recv.url(), "PROCESSOR_SINK_LINGER": "60s",
               "PROCESSOR_SINK_BATCH": "100000", "SHUTDOWN_TIMEOUT": "30s"}
        with Eventpipe("run", env=env) as ep:
            accepted = send(ep, 50, "term")
            time.sleep(0.5)
            assert recv.requests == 0  # still gathering
            assert ep.stop(signal.SIGTERM, timeout=60) == 0
        assert sorted(recv.ids) == sorted(accepted)


def test_nats_queue_retried_then_dead_lettered():
    from ep_nats import NatsClient, NatsServer

    with NatsServer() as ns, Receiver(script=[503, 503], code=200) as recv:
        env = {"QUEUE_TYPE": "nats", "NATS_URL": ns.url, "PROCESSOR_SINK": recv.url(),
               "PROCESSOR_SINK_BACKOFF": "10ms"}
        with Eventpipe("run", env=env) as ep:
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, timeout=30,
                     what="ingest ready")
            accepted = send(ep, 1000, "nats")
            wait_processed(ep, len(accepted))
            check_exactly_once(recv, accepted, ep)
            assert recv.statuses.get(503) == 2, recv.statuses
            # Now the receiver refuses: the events go to NATS_DLQ_SUBJECT, once each.
            with recv.lock:
                recv.code = 400
            bad = send(ep, 30, "refused")
            c = NatsClient(ns.port)
            wait_for(lambda: c.subject_count("diplom.dlq") >= 30, timeout=60,
                     what="30 events on diplom.dlq")
            assert c.subject_count("diplom.dlq") == 30
            dlq = b"".join(data for _, data in c.read_stream("diplom.dlq"))
            for eid in bad:
                assert eid.encode() in dlq, eid
            c.close()
            st = stats(ep)
            assert st["pool"]["dead_lettered"] == 30 and st["pool"]["processed"] == 1000, st
            assert ep.stop() == 0


def test_kafka_queue_retried_then_dead_lettered():
    from ep_kafka import MockKafka, mock_path

    if mock_path() is None:
        print("skip: ep_kafka_mock not built (EP_WITH_KAFKA off)")
        return
    mock = MockKafka(topics={"diplom-messages": 3, "diplom-messages-dlq": 1})
    try:
        with Receiver(script=[503, 503], code=200) as recv:
            env = {"QUEUE_TYPE": "kafka", "KAFKA_BROKERS": mock.bootstraps,
                   "PROCESSOR_SINK": recv.url(), "PROCESSOR_SINK_BACKOFF": "10ms"}
            with Eventpipe("run", env=env) as ep:
                wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, timeout=60,
                         what="ingest ready")
                accepted = send(ep, 1000, "kafka")
                wait_processed(ep, len(accepted))
                check_exactly_once(recv, accepted, ep)
                assert recv.statuses.get(503) == 2, recv.statuses
                with recv.lock:
                    recv.code = 400
                send(ep, 30, "refused")
                wait_for(lambda: stats(ep)["queue"]["kafka"]["dead_lettered"] >= 30, timeout=60,
                         what="30 events to the dead-letter topic")
                st = stats(ep)
                assert st["queue"]["kafka"]["dead_lettered"] == 30, st["queue"]["kafka"]
                assert st["pool"]["dead_lettered"] == 30 and st["pool"]["processed"] == 1000, st
                assert ep.stop() == 0
    finally:
        mock.stop()


def _certs():
    from test_tls import certs  # the certificates test_tls.py makes with openssl
    return certs()


def test_https_with_tls_ca_file():
    c = _certs()
    with Receiver(tls=c["srv1"]) as recv:
        env = {"PROCESSOR_SINK": recv.url("https"), "TLS_CA_FILE": c["ca1"]}
        with Eventpipe("run", env=env) as ep:
            accepted = send(ep, 200, "tls")
            wait_processed(ep, len(accepted))
            check_exactly_once(recv, accepted, ep)
            assert ep.stop() == 0
    # A receiver whose certificate TLS_CA_FILE does not vouch for gets nothing.
    with Receiver(tls=c["srv2"]) as recv:
        env = {"PROCESSOR_SINK": recv.url("https"), "TLS_CA_FILE": c["ca1"],
               "PROCESSOR_SINK_RETRIES": "0", "PROCESSOR_MAX_ATTEMPTS": "2"}
        with Eventpipe("run", env=env) as ep:
            send(ep, 10, "tlsbad")
            wait_for(lambda: stats(ep)["pool"]["dead_lettered"] >= 10, timeout=60,
                     what="dead-lettered after the failed TLS handshakes")
            assert stats(ep)["pool"]["processed"] == 0
            assert stats(ep)["sink"]["delivered"] == 0
            assert ep.stop() == 0
        assert recv.ids == []


def test_bad_settings_exit_2():
    cases = [({"PROCESSOR_SINK": "http://"}, "PROCESSOR_SINK"),
             ({"PROCESSOR_SINK": "http://exa mple/x"}, "PROCESSOR_SINK"),
             ({"PROCESSOR_SINK": "gopher://x/"}, "PROCESSOR_SINK"),
             ({"PROCESSOR_SINK_RETRIES": "-1"}, "PROCESSOR_SINK_RETRIES"),
             ({"PROCESSOR_SINK_BATCH": "0"}, "PROCESSOR_SINK_BATCH"),
             ({"PROCESSOR_SINK_TIMEOUT": "soon"}, "PROCESSOR_SINK_TIMEOUT"),
             ({"PROCESSOR_SINK_BATCH_BYTES": "10"}, "PROCESSOR_SINK_BATCH_BYTES")]
    for env, name in cases:
        e = dict(os.environ)
        e.update(env)
        e.update({"API_PORT": str(free_port()), "INGEST_PORT": str(free_port()),
                  "PROCESSOR_PORT": str(free_port()), "ANALYTICS_PORT": str(free_port()),
                  "BIND_ADDR": "127.0.0.1"})
        p = subprocess.run([EP_BIN, "run"], env=e, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        err = p.stderr.decode()
        assert p.returncode == 2, (env, p.returncode, err)
        assert name + ":" in err, (env, err)


if __name__ == "__main__":
    main(globals())
