"""Seed 003's server settings (issue 15, item 7): SERVER_ADDRESS moves the
gateway's listener, SERVER_READ_TIMEOUT / SERVER_WRITE_TIMEOUT / SERVER_SHUTDOWN_TIMEOUT
as Go durations, METRICS_PORT serves /metrics on a port of its own, and
APP_NAME / APP_VERSION / APP_ENV reach every JSON log line and an app_info
metric. Every duration setting takes Go's syntax; bare integers keep their
historic unit; bad values exit 2 naming the variable. In each case the
events that got a 2xx, and only those, are received and processed."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from eptest import EP_BIN, Eventpipe, free_port, get_json, main, raw_exchange, request, wait_for
from test_gateway_truth import Downstream, big_answer_batch, silent


def run(args, env):
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([EP_BIN] + args, env=e, capture_output=True, timeout=60, text=True)


def post_events(port, n, prefix, host="127.0.0.1"):
    """n single events; returns the ids answered 2xx."""
    ok = []
    for i in range(n):
        eid = "%s-%d" % (prefix, i)
        body = json.dumps({"id": eid, "source": "seed003", "data": "x"}).encode()
        data = raw_exchange(port, b"POST /api/v1/ingest HTTP/1.1\r\nHost: t\r\n"
                            b"Connection: close\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body,
                            timeout=10, host=host)
        if re.match(rb"HTTP/1\.1 2\d\d ", data):
            ok.append(eid)
    return ok


def assert_exactly_processed(ep, n):
    """/stats: ingest received exactly n events and the processor processed exactly n."""
    wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] >= n, timeout=60,
             what="%d events processed" % n)
    st = get_json(ep.ingest, "/stats")
    assert st["TotalReceived"] == n, st
    assert st["TotalSent"] == n, st
    # A moment for a stray extra event to show up, then the exact count.
    time.sleep(0.3)
    assert get_json(ep.processor, "/stats")["pool"]["processed"] == n


def assert_exactly_processed_total(ep, n):
    wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] >= n, timeout=60,
             what="%d events processed" % n)
    time.sleep(0.3)
    assert get_json(ep.processor, "/stats")["pool"]["processed"] == n


def test_server_address_moves_the_gateway():
    port = free_port()
    ports = {"api": port, "ingest": free_port(), "processor": free_port()}
    # 127.0.0.2 is loopback too: the gateway listens there only, the other roles on BIND_ADDR.
    env = {"API_PORT": "", "SERVER_ADDRESS": "127.0.0.2:%d" % port}
    with Eventpipe("run", env=env, ports=ports, wait=False) as ep:
        for p in (ep.ingest, ep.processor):
            wait_for(lambda: request(p, "GET", "/health", timeout=1).status == 200, timeout=30,
                     what="/health on %d" % p)

        def gateway_up():
            with socket.create_connection(("127.0.0.2", port), timeout=1):
                return True

        wait_for(gateway_up, timeout=30, what="the gateway on 127.0.0.2:%d" % port)
        ok = post_events(port, 5, "sa", host="127.0.0.2")
        assert len(ok) == 5, ok
        # Not on 127.0.0.1 (BIND_ADDR): SERVER_ADDRESS gave the gateway its own address.
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            raise AssertionError("the gateway also answers on 127.0.0.1:%d" % port)
        except ConnectionRefusedError:
            pass
        # The "listening" line is written once every listener is up, after the gateway's.
        ep.wait_log("gateway :%d" % port)
        assert_exactly_processed(ep, 5)
        assert ep.stop() == 0


def test_server_address_with_api_port_exits_2():
    r = run(["run"], {"SERVER_ADDRESS": ":%d" % free_port(), "API_PORT": "8000"})
    assert r.returncode == 2 and "SERVER_ADDRESS" in r.stderr and "API_PORT" in r.stderr, r


def test_read_timeout_answers_408_to_a_slow_request():
    # Every other deadline is far away: only SERVER_READ_TIMEOUT can end the request.
    env = {"SERVER_READ_TIMEOUT": "2s", "HTTP_HEADER_TIMEOUT": "120", "HTTP_BODY_TIMEOUT": "2m",
           "HTTP_IDLE_TIMEOUT": "120s"}
    with Eventpipe("run", env=env) as ep:
        ok = post_events(ep.api, 2, "rt")  # quick requests are served
        assert len(ok) == 2, ok
        body = json.dumps({"id": "rt-slow", "source": "seed003", "data": "y" * 200}).encode()
        s = socket.create_connection(("127.0.0.1", ep.api), timeout=60)
        s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        t0 = time.time()
        data = b""
        s.settimeout(0.5)
        sent = 0
        # One body byte every 0.5 s: always progressing, never complete in time.
        while time.time() - t0 < 40 and sent < len(body) - 1:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                break
            except socket.timeout:
                pass
            try:
                s.sendall(body[sent:sent + 1])
                sent += 1
            except OSError:
                break
        s.settimeout(10)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        s.close()
        assert data.startswith(b"HTTP/1.1 408 "), data[:300]
        assert b"SERVER_READ_TIMEOUT" in data, data
        assert sent < len(body) - 1
        assert_exactly_processed(ep, 2)  # the slow event was not kept
        assert ep.stop() == 0


def test_write_timeout_cuts_a_client_that_does_not_read():
    env = {"SERVER_WRITE_TIMEOUT": "1s", "HTTP_SEND_TIMEOUT": "5m", "HTTP_IDLE_TIMEOUT": "5m"}
    with Eventpipe("run", env=env) as ep:
        # 30000 refused lines and one valid event: a small request, an answer over 16 MiB.
        body = big_answer_batch(30000)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # our side holds little
        s.settimeout(60)
        s.connect(("127.0.0.1", ep.ingest))
        s.sendall(b"POST /events/batch HTTP/1.1\r\nHost: t\r\n"
                  b"Content-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        # The answer waits for us: do not read it, and see the ingest server close it.
        closed = lambda: re.search(  # noqa: E731
            r'ep_http_connections_closed_total\{server="ingest",reason="send_timeout"\} [1-9]',
            request(ep.processor, "GET", "/metrics").body.decode())
        wait_for(closed, timeout=60, what="the ingest server closing the unread answer")
        data = b""
        try:
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass  # a reset: the server closed with unsent bytes
        s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 202 "), data[:200]
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        assert length > 16 << 20 and len(rest) < length, (len(rest), length)  # cut short
        # The 202 was given for the one valid event: it, and only it, is processed.
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] >= 1, timeout=60,
                 what="the valid event processed")
        time.sleep(0.3)
        assert get_json(ep.processor, "/stats")["pool"]["processed"] == 1
        assert get_json(ep.ingest, "/stats")["TotalSent"] == 1
        # Small answers are written well within the limit.
        assert len(post_events(ep.api, 2, "wt")) == 2
        assert_exactly_processed_total(ep, 3)
        assert ep.stop() == 0


def test_shutdown_timeout_bounds_the_drain():
    # A gateway whose ingest never answers: its request stays in flight at SIGTERM.
    ds = Downstream(silent)
    env = {"SERVER_SHUTDOWN_TIMEOUT": "1500ms", "INGEST_URL": ds.url,
           "UPSTREAM_TIMEOUT_MS": "10m"}
    with Eventpipe("gateway", env=env) as gw:
        got = []
        t = threading.Thread(target=lambda: got.append(
            post_events(gw.api, 1, "sst")), daemon=True)
        t.start()
        ds.wait_requests(1)
        t0 = time.time()
        gw.proc.send_signal(signal.SIGTERM)
        rc = gw.proc.wait(timeout=60)
        took = time.time() - t0
        log = gw.log_text()
        # The default limit (10 s) would show 10s here, and take 10 s.
        assert "SHUTDOWN_TIMEOUT 1.5s" in log, log[-2000:]
        assert "still in flight at the shutdown deadline" in log, log[-2000:]
        assert rc == 1, (rc, log[-2000:])
        assert 1.4 <= took < 9, took
        t.join(30)
        assert got == [[]], got  # no 2xx: nothing was acknowledged
    ds.close()


def test_metrics_port_serves_metrics():
    mport = free_port()
    with Eventpipe("run", env={"METRICS_PORT": str(mport)}) as ep:
        ok = post_events(ep.api, 4, "mp")
        assert len(ok) == 4, ok
        assert_exactly_processed(ep, 4)
        r = request(mport, "GET", "/metrics")
        assert r.status == 200, r
        text = r.body.decode()
        assert "app_info{" in text and "events_processed_total" in text, text[:500]
        assert re.search(r'messages_processed_total\{status="success"\} 4\b', text), text
        assert request(mport, "GET", "/health").status == 200
        assert request(mport, "POST", "/api/v1/ingest", {"data": "x"}).status == 404
        assert request(mport, "GET", "/stats").status == 404
        # /metrics stays on the role ports.
        assert request(ep.api, "GET", "/metrics").status == 200
        ep.wait_log("metrics :%d" % mport)
        assert get_json(ep.ingest, "/stats")["TotalReceived"] == 4
        assert ep.stop() == 0
    # Off by default: nothing listens on a port nobody named.
    with Eventpipe("run") as ep:
        ep.wait_log("listening:")
        assert " metrics :" not in ep.log_text()
        assert ep.stop() == 0


def test_json_logs_and_app_info_carry_the_app():
    env = {"LOG_FORMAT": "json", "APP_NAME": "shop-events", "APP_VERSION": "9.8.7",
           "APP_ENV": "staging"}
    with Eventpipe("run", env=env) as ep:
        ok = post_events(ep.api, 3, "app")
        assert len(ok) == 3, ok
        assert_exactly_processed(ep, 3)
        text = request(ep.api, "GET", "/metrics").body.decode()
        assert 'app_info{name="shop-events",version="9.8.7",env="staging"} 1' in text, text[:800]
        assert ep.stop() == 0
        lines = [l for l in ep.log_text().splitlines() if l.strip()]
        assert len(lines) >= 3, lines
        for l in lines:
            o = json.loads(l)
            assert (o["app"], o["version"], o["env"]) == ("shop-events", "9.8.7", "staging"), o
    # APP_VERSION defaults to the build's version.
    version = run(["--version"], {}).stdout.split()[1]
    with Eventpipe("run", env={"LOG_FORMAT": "json"}) as ep:
        text = request(ep.api, "GET", "/metrics").body.decode()
        assert ('app_info{name="eventpipe",version="%s",env="development"} 1' % version) in text
        assert ep.stop() == 0
        first = json.loads(ep.log_text().splitlines()[0])
        assert first["version"] == version and first["app"] == "eventpipe", first


def test_every_duration_setting_takes_go_durations():
    env = {"HTTP_IDLE_TIMEOUT": "1m30s", "HTTP_HEADER_TIMEOUT": "10s",
           "HTTP_BODY_TIMEOUT": "20000ms", "HTTP_SEND_TIMEOUT": "0.5m",
           "UPSTREAM_TIMEOUT_MS": "2.5s", "STATUS_TIMEOUT_MS": "1s", "RETRY_AFTER": "2s",
           "SERVER_SHUTDOWN_TIMEOUT": "15s", "SERVER_READ_TIMEOUT": "15s",
           "SERVER_WRITE_TIMEOUT": "15s", "DEDUP_WINDOW": "5m", "QUEUE_RETENTION_AGE": "24h",
           "STATS_INTERVAL": "1h", "ANALYTICS_PUSH_INTERVAL_MS": "500ms",
           "KAFKA_LINGER_MS": "5ms", "QUEUE_FSYNC": "50ms"}
    with Eventpipe("run", env=env) as ep:
        ok = post_events(ep.api, 3, "dur")
        assert len(ok) == 3, ok
        assert_exactly_processed(ep, 3)
        assert "SHUTDOWN_TIMEOUT 15s" in (ep.stop() == 0 and ep.log_text())
    # Bare integers keep their historic unit (seconds here): still served as before.
    with Eventpipe("run", env={"HTTP_IDLE_TIMEOUT": "30", "SHUTDOWN_TIMEOUT": "12",
                               "UPSTREAM_TIMEOUT_MS": "3000"}) as ep:
        assert len(post_events(ep.api, 2, "bare")) == 2
        assert_exactly_processed(ep, 2)
        assert "SHUTDOWN_TIMEOUT 12s" in (ep.stop() == 0 and ep.log_text())


def test_bad_values_exit_2_naming_the_variable():
    cases = [
        {"HTTP_IDLE_TIMEOUT": "soon"},
        {"HTTP_IDLE_TIMEOUT": "-1s"},
        {"SERVER_READ_TIMEOUT": "15"  "x"},
        {"SERVER_WRITE_TIMEOUT": "1m30"},
        {"SERVER_SHUTDOWN_TIMEOUT": "99999999999999h"},
        {"UPSTREAM_TIMEOUT_MS": "5d"},
        {"RETRY_AFTER": "1500ms"},
        {"DEDUP_WINDOW": "-5m"},
        {"QUEUE_FSYNC": "sometimes"},
        {"SERVER_ADDRESS": "nohost"},
        {"SERVER_ADDRESS": "localhost:99999"},
        {"METRICS_PORT": "70000"},
    ]
    for env in cases:
        name = list(env)[0]
        r = run(["run"], dict(env, API_PORT=""))
        assert r.returncode == 2, (env, r.returncode, r.stderr)
        assert r.stderr.count(name + ":") == 1, (env, r.stderr)
    r = run(["run"], {"SHUTDOWN_TIMEOUT": "10", "SERVER_SHUTDOWN_TIMEOUT": "30s"})
    assert r.returncode == 2 and "SERVER_SHUTDOWN_TIMEOUT" in r.stderr, r
    # METRICS_PORT on a port of the same process's roles.
    p = free_port()
    r = run(["ingest"], {"INGEST_PORT": str(p), "METRICS_PORT": str(p), "BIND_ADDR": "127.0.0.1"})
    assert r.returncode == 2 and "METRICS_PORT" in r.stderr, r


if __name__ == "__main__":
    main(globals())
