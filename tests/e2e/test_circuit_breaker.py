"""Circuit breakers on the hops (issue 15, item 6), with split roles.

- ingest -> processor: the processor is stopped (SIGSTOP: every hand-off times
  out), the breaker opens after CIRCUIT_BREAKER_FAILURES of them, and from then
  on ingest answers 503 at once with Retry-After and the target named; /stats
  and /metrics show it open, the log has one line for the transition, and the
  gateway's own breaker stays closed (ingest answered). The stopped processor is
  killed and a new one started on the same port: after the cool-down one probe
  goes through, closes the breaker, and events flow again. Each processor
  processed exactly the events answered 2xx while it ran.
- the same hop to a Python processor that never answers /enqueue: nothing
  reaches it while the breaker is open, and the failed probe reopens it.
- gateway -> ingest: ingest killed and restarted.
- a broker publish: nats-server stopped and started again (QUEUE_TYPE=nats).
- CIRCUIT_BREAKER_FAILURES=0: no breaker; bad values exit 2 naming the variable.

The failures are timeouts of UPSTREAM_TIMEOUT_MS or refused connections and every
wait is on a condition; the one assumption is that the checks made while a breaker
is open (a few dozen local requests) finish within its 8 s cool-down."""

import json
import os
import re
import signal
import subprocess

from eptest import Eventpipe, Response, free_port, get_json, main, request, seed_event, wait_for
from test_gateway_truth import Downstream, ready_only

FAILURES = 3
# The cool-down: long enough for the checks made while a breaker is open (a few dozen
# local requests) on a loaded machine under a sanitizer, so no probe leaves meanwhile.
OPEN_MS = 8000


def curl_post(port, path, obj):
    """POST with curl, as a user would; returns eptest's Response."""
    out = subprocess.run(["curl", "-sS", "-i", "-X", "POST", "-H", "Content-Type: application/json",
                          "--data-binary", json.dumps(obj),
                          "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, timeout=60, check=True).stdout
    head, body = out.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:]]
    return Response(int(lines[0].split()[1]), headers, body)


def wait_stopped(pid):
    """Waits until every thread of pid is stopped: kill() only queues SIGSTOP."""
    def stopped():
        task = "/proc/%d/task" % pid
        for tid in os.listdir(task):
            with open("%s/%s/stat" % (task, tid)) as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                    return False
        return True

    wait_for(stopped, timeout=30, what="process %d stopped" % pid)


def metric(port, name, target):
    text = request(port, "GET", "/metrics").body.decode()
    m = re.search(r'^%s\{target="%s"\} (\S+)$' % (name, target), text, re.M)
    return float(m.group(1)) if m else None


def breaker(port, target):
    return get_json(port, "/stats")["circuit_breakers"][target]


def assert_refused_by_breaker(r, target):
    """An immediate refusal: 503, the target named, Retry-After within the cool-down."""
    assert r.status == 503, r
    body = r.json()
    assert "circuit breaker open for %s" % target in body["error"], body
    assert body["maybe_kept"] is False, body
    ra = int(r.headers["retry-after"])
    assert 1 <= ra <= (OPEN_MS + 999) // 1000, ra
    return ra


def until_accepted(port, path, n, target, timeout=60):
    """Posts events until one is accepted, going by the Retry-After of each refusal;
    returns (the 202 answer, how many were refused by the breaker on the way)."""
    refused = [0]

    def attempt():
        r = request(port, "POST", path, seed_event(n), timeout=30)
        if r.status == 202:
            return r
        if "circuit breaker open for %s" % target in r.json().get("error", ""):
            refused[0] += 1
        return None

    r = wait_for(attempt, timeout=timeout, interval=0.2, what="a 202 after %s came back" % target)
    return r, refused[0]


def test_ingest_to_processor_breaker_opens_while_the_processor_is_down_and_closes():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    brk = {"CIRCUIT_BREAKER_FAILURES": str(FAILURES), "CIRCUIT_BREAKER_OPEN_MS": str(OPEN_MS)}
    ing_env = dict(brk, UPSTREAM_TIMEOUT_MS="1000")
    # The gateway waits longer than ingest's hop, so it always gets ingest's answer.
    gw_env = dict(brk, UPSTREAM_TIMEOUT_MS="20000")
    proc = Eventpipe("processor", ports=p)
    with Eventpipe("ingest", ports=p, env=ing_env) as ing, \
            Eventpipe("gateway", ports=p, env=gw_env) as gw:
        try:
            wait_for(lambda: request(p["api"], "GET", "/ready").status == 200, timeout=15,
                     what="gateway /ready 200")
            for i in range(5):
                assert request(p["api"], "POST", "/api/v1/ingest", seed_event(i)).status == 202
            wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == 5,
                     timeout=30, what="5 processed")
            b = breaker(p["ingest"], "processor")
            assert b["state"] == "closed" and b["times_opened"] == 0, b
            assert metric(p["ingest"], "circuit_breaker_state", "processor") == 0

            # The processor stops answering: every hand-off times out until the breaker opens.
            proc.proc.send_signal(signal.SIGSTOP)
            wait_stopped(proc.proc.pid)
            timeouts = 0
            while True:
                r = request(p["api"], "POST", "/api/v1/ingest", seed_event(100 + timeouts),
                            timeout=60)
                assert r.status == 503, r
                if "circuit breaker" in r.json()["error"]:
                    break
                assert r.json()["maybe_kept"] is True, r  # it left, no answer came
                timeouts += 1
                assert timeouts <= FAILURES, (timeouts, r)
            assert timeouts == FAILURES, timeouts
            assert_refused_by_breaker(r, "processor")

            # Open: more events are refused at once (test_nothing_is_sent_while_open counts
            # that nothing reaches the processor).
            for i in range(5):
                assert_refused_by_breaker(curl_post(p["ingest"], "/ingest", seed_event(200 + i)),
                                          "processor")
                assert_refused_by_breaker(
                    request(p["api"], "POST", "/api/v1/ingest", seed_event(300 + i)),
                    "processor")
            r = request(p["ingest"], "POST", "/events/batch",
                        "\n".join('{"source":"b","data":"%d"}' % i for i in range(3)))
            assert_refused_by_breaker(r, "processor")
            assert r.json()["failed"] == 3 and r.json()["accepted"] == 0, r
            b = breaker(p["ingest"], "processor")
            assert b["state"] == "open" and b["times_opened"] == 1, b
            assert b["consecutive_failures"] == FAILURES, b
            assert b["rejected"] >= 12, b
            assert metric(p["ingest"], "circuit_breaker_state", "processor") == 1
            assert metric(p["ingest"], "circuit_breaker_rejected_total", "processor") >= 12
            # Ingest answered, so the gateway's own breaker stayed closed.
            g = breaker(p["api"], "ingest")
            assert g["state"] == "closed" and g["times_opened"] == 0, g
            assert metric(p["api"], "circuit_breaker_state", "ingest") == 0

            # A new processor on the same port (the stopped one dies with what it held).
            proc.proc.send_signal(signal.SIGKILL)
            proc.stop()
            proc = Eventpipe("processor", ports=p)
            r, _ = until_accepted(p["api"], "/api/v1/ingest", 400, "processor")
            accepted_after = 1
            b = breaker(p["ingest"], "processor")
            assert b["state"] == "closed" and b["consecutive_failures"] == 0, b
            assert b["times_opened"] >= 1, b
            assert metric(p["ingest"], "circuit_breaker_state", "processor") == 0
            for i in range(5):
                assert request(p["api"], "POST", "/api/v1/ingest", seed_event(500 + i)).status \
                    == 202
                accepted_after += 1
            # Exactly the events answered 2xx since the restart were processed there.
            wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"]
                     == accepted_after, timeout=30, what="%d processed" % accepted_after)
            assert get_json(p["ingest"], "/stats")["TotalSent"] == 5 + accepted_after

            log = ing.log_text()
            assert log.count("circuit breaker processor: closed -> open") == 1, log[-3000:]
            assert "circuit breaker processor: open -> half_open" in log, log[-3000:]
            assert "circuit breaker processor: half_open -> closed: the probe succeeded" in log
            assert "circuit breaker processor: closed -> open: %d consecutive failures" \
                % FAILURES in log, log[-3000:]
            assert proc.stop() == 0
            assert gw.stop() == 0
            assert ing.stop() == 0
        finally:
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGCONT)
                proc.proc.kill()
                proc.proc.wait()


def test_nothing_is_sent_while_open_and_a_failed_probe_reopens():
    """A processor that is ready but never answers /enqueue (a Python server that
    records what reaches it): FAILURES hand-offs time out, then nothing more
    reaches it until the cool-down ends; the one probe times out too and the
    breaker opens again for another cool-down."""
    ds = Downstream(ready_only)
    env = {"PROCESSOR_URL": ds.url, "UPSTREAM_TIMEOUT_MS": "500",
           "CIRCUIT_BREAKER_FAILURES": str(FAILURES), "CIRCUIT_BREAKER_OPEN_MS": str(OPEN_MS)}
    with Eventpipe("ingest", env=env) as ing:
        wait_for(lambda: request(ing.ingest, "GET", "/ready").status == 200, timeout=15,
                 what="ingest ready")
        for i in range(FAILURES):
            r = request(ing.ingest, "POST", "/ingest", seed_event(i), timeout=30)
            assert r.status == 503 and r.json()["maybe_kept"] is True, r
        ds.wait_requests(FAILURES, "/enqueue")
        for i in range(10):
            assert_refused_by_breaker(request(ing.ingest, "POST", "/ingest", seed_event(i)),
                                      "processor")
        b = breaker(ing.ingest, "processor")
        assert b["state"] == "open" and b["rejected"] == 10, b
        with ds.cv:
            assert len([q for q in ds.requests if "/enqueue" in q[0]]) == FAILURES

        # The probe: let through after the cool-down, it times out, the breaker reopens.
        until_probe = wait_for(lambda: (lambda r: r if "circuit breaker" not in
                                        r.json()["error"] else None)(
            request(ing.ingest, "POST", "/ingest", seed_event(50), timeout=30)),
            timeout=30, interval=0.2, what="the probe let through")
        assert until_probe.status == 503 and until_probe.json()["maybe_kept"] is True
        ds.wait_requests(FAILURES + 1, "/enqueue")
        b = breaker(ing.ingest, "processor")
        assert b["state"] == "open" and b["times_opened"] == 2, b
        assert_refused_by_breaker(request(ing.ingest, "POST", "/ingest", seed_event(60)),
                                  "processor")
        with ds.cv:
            assert len([q for q in ds.requests if "/enqueue" in q[0]]) == FAILURES + 1
        assert "circuit breaker processor: half_open -> open: the probe failed" \
            in ing.log_text()
        assert get_json(ing.ingest, "/stats")["TotalSent"] == 0
        assert ing.stop() == 0
    ds.close()


def test_gateway_to_ingest_breaker_opens_while_ingest_is_down_and_closes():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    brk = {"CIRCUIT_BREAKER_FAILURES": str(FAILURES), "CIRCUIT_BREAKER_OPEN_MS": str(OPEN_MS)}
    accepted = 0
    with Eventpipe("processor", ports=p) as proc, Eventpipe("gateway", ports=p, env=brk) as gw:
        ing = Eventpipe("ingest", ports=p)
        try:
            wait_for(lambda: request(p["api"], "GET", "/ready").status == 200, timeout=15,
                     what="gateway /ready 200")
            for i in range(3):
                assert request(p["api"], "POST", "/api/v1/ingest", seed_event(i)).status == 202
                accepted += 1
            assert breaker(p["api"], "ingest")["state"] == "closed"

            ing.stop(signal.SIGKILL)
            # Refused connections: nothing left, so nothing was kept.
            for i in range(FAILURES):
                r = request(p["api"], "POST", "/api/v1/ingest", seed_event(10 + i), timeout=30)
                assert r.status == 503 and "circuit breaker" not in r.json()["error"], r
            for path in ("/api/v1/ingest", "/api/v1/events", "/api/v1/events/batch"):
                r = curl_post(p["api"], path, seed_event(20))
                assert_refused_by_breaker(r, "ingest")
            g = breaker(p["api"], "ingest")
            assert g["state"] == "open" and g["times_opened"] == 1 and g["rejected"] == 3, g
            assert g["consecutive_failures"] == FAILURES, g
            assert metric(p["api"], "circuit_breaker_state", "ingest") == 1
            assert metric(p["api"], "circuit_breaker_rejected_total", "ingest") == 3
            assert "circuit breaker ingest: closed -> open: %d consecutive failures" % FAILURES \
                in gw.log_text()

            ing = Eventpipe("ingest", ports=p)
            wait_for(lambda: request(p["ingest"], "GET", "/ready").status == 200, timeout=15,
                     what="the new ingest ready")
            until_accepted(p["api"], "/api/v1/ingest", 30, "ingest")
            accepted += 1
            g = breaker(p["api"], "ingest")
            assert g["state"] == "closed" and g["consecutive_failures"] == 0, g
            assert metric(p["api"], "circuit_breaker_state", "ingest") == 0
            for i in range(3):
                assert request(p["api"], "POST", "/api/v1/ingest", seed_event(40 + i)).status \
                    == 202
                accepted += 1
            # The processor ran throughout: exactly the 2xx events were processed.
            wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == accepted,
                     timeout=30, what="%d processed" % accepted)
            log = gw.log_text()
            assert "circuit breaker ingest: half_open -> closed: the probe succeeded" in log, log
            assert ing.stop() == 0
            assert gw.stop() == 0
            assert proc.stop() == 0
        finally:
            if ing.proc.poll() is None:
                ing.proc.kill()
                ing.proc.wait()


def test_nats_publish_breaker_opens_while_nats_is_down_and_closes():
    from ep_nats import NatsServer
    from eptest import read_sink

    with NatsServer() as ns:
        sink = os.path.join(ns.dir, "sink.ndjson")
        env = {"QUEUE_TYPE": "nats", "NATS_URL": ns.url, "PROCESSOR_SINK": "file:" + sink,
               "CIRCUIT_BREAKER_FAILURES": str(FAILURES), "CIRCUIT_BREAKER_OPEN_MS": str(OPEN_MS)}
        with Eventpipe("run", env=env) as ep:
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            ok = []
            for i in range(5):
                r = request(ep.ingest, "POST", "/ingest", {"id": "a-%d" % i, "source": "s",
                                                           "data": "x"})
                assert r.status == 202, r
                ok.append("a-%d" % i)
            assert breaker(ep.ingest, "nats")["state"] == "closed"
            # Processed and acknowledged before the server goes: nothing to redeliver later.
            wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 5, 30,
                     what="5 processed")
            wait_for(lambda: (lambda l: l["pending"] == 0 and l["ack_pending"] == 0)(
                get_json(ep.processor, "/lag")), 30, what="5 acknowledged")
            ns.stop()
            # Once the client saw the server go, publishes fail before anything is sent.
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 503, 30,
                     what="ingest not ready without NATS")
            for i in range(FAILURES):
                r = request(ep.ingest, "POST", "/ingest", {"id": "b-%d" % i, "source": "s",
                                                           "data": "x"})
                assert r.status == 503 and "circuit breaker" not in r.json()["error"], r
            r = curl_post(ep.ingest, "/ingest", {"id": "c-0", "source": "s", "data": "x"})
            assert_refused_by_breaker(r, "nats")
            b = breaker(ep.ingest, "nats")
            assert b["state"] == "open" and b["times_opened"] == 1, b
            assert metric(ep.ingest, "circuit_breaker_state", "nats") == 1

            ns.start()
            n = [0]

            def accepted():
                n[0] += 1
                eid = "d-%d" % n[0]
                r = request(ep.ingest, "POST", "/ingest", {"id": eid, "source": "s", "data": "x"},
                            timeout=30)
                if r.status == 202:
                    ok.append(eid)
                    return r
                assert r.status == 503, r
                return None

            wait_for(accepted, timeout=60, interval=0.2, what="a 202 after NATS came back")
            b = breaker(ep.ingest, "nats")
            assert b["state"] == "closed", b
            assert metric(ep.ingest, "circuit_breaker_state", "nats") == 0
            for i in range(5):
                r = request(ep.ingest, "POST", "/ingest", {"id": "e-%d" % i, "source": "s",
                                                           "data": "x"})
                assert r.status == 202, r
                ok.append("e-%d" % i)
            wait_for(lambda: sorted(e["id"] for e in read_sink(sink)) == sorted(ok), 60,
                     what="exactly the 2xx events processed")
            wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == len(ok),
                     30, what="processed == 2xx")
            log = ep.log_text()
            assert "circuit breaker nats: closed -> open" in log, log[-3000:]
            assert "circuit breaker nats: half_open -> closed" in log, log[-3000:]
            assert ep.stop() == 0


def test_breakers_off_and_bad_settings():
    from eptest import EP_BIN

    # CIRCUIT_BREAKER_FAILURES=0: no breaker; every call tries the hop.
    env = {"PROCESSOR_URL": "http://127.0.0.1:%d" % free_port(), "CIRCUIT_BREAKER_FAILURES": "0"}
    with Eventpipe("ingest", env=env) as ing:
        for i in range(8):
            r = request(ing.ingest, "POST", "/ingest", seed_event(i), timeout=30)
            assert r.status == 503 and "circuit breaker" not in r.json()["error"], r
        assert "circuit_breakers" not in get_json(ing.ingest, "/stats")
        assert metric(ing.ingest, "circuit_breaker_state", "processor") is None
        assert ing.stop() == 0

    for var, val in (("CIRCUIT_BREAKER_FAILURES", "-1"), ("CIRCUIT_BREAKER_FAILURES", "abc"),
                     ("CIRCUIT_BREAKER_OPEN_MS", "0"), ("CIRCUIT_BREAKER_OPEN_MS", "1x"),
                     ("CIRCUIT_BREAKER_OPEN_MS", "-1s")):
        r = subprocess.run([EP_BIN, "ingest"], env=dict(os.environ, **{var: val}),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and r.stderr.count("%s:" % var) == 1, (var, val, r)
    r = subprocess.run([EP_BIN, "run", "--help"], capture_output=True, text=True, timeout=30)
    assert "CIRCUIT_BREAKER_FAILURES" in r.stdout and "CIRCUIT_BREAKER_OPEN_MS" in r.stdout


if __name__ == "__main__":
    main(globals())
