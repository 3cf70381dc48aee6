"""The seed 000 flow with gateway, ingest and processor as three processes
talking HTTP (1,000 events, every acknowledged id processed once), and what
happens when the processor goes away: /api/v1/status still answers quickly and
shows it unhealthy, and ingest answers 503. Ingest claims readiness only after
its processor answered, and then follows it."""

import os
import tempfile
import time

from eptest import Eventpipe, free_port, get_json, main, read_sink, request, seed_event, wait_for
from test_run_flow import send_many


def ports():
    return {"api": free_port(), "ingest": free_port(), "processor": free_port()}


def test_three_processes_flow_and_processor_down():
    p = ports()
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing, \
            Eventpipe("gateway", ports=p) as gw:
        for port in (p["api"], p["ingest"], p["processor"]):
            assert request(port, "GET", "/health").json() == {"healthy": True}
        # Ready once ingest's probe of the processor came back.
        wait_for(lambda: request(p["api"], "GET", "/ready").status == 200, timeout=15,
                 what="gateway /ready 200")

        before = get_json(p["processor"], "/stats")["pool"]["processed"]
        for i in range(10):
            r = request(p["api"], "POST", "/api/v1/ingest", seed_event(i))
            assert r.status == 202, r
            assert r.json()["status"] == "accepted"
        wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == before + 10,
                 timeout=30, what="10 processed")

        status = get_json(p["api"], "/api/v1/status")
        assert status["ingest"]["healthy"] is True, status
        assert status["processor"]["healthy"] is True, status
        assert status["ingest"]["stats"]["TotalSent"] == 10, status
        assert status["processor"]["stats"]["pool"]["processed"] == before + 10, status
        assert status["processor"]["stats"]["queue"]["capacity"] == 1000

        # Seed 003/004 routes through the gateway's proxy (batch gzip included).
        import gzip
        r = request(p["api"], "POST", "/api/v1/events/user", {"data": "u"})
        assert r.status == 202, r
        body = gzip.compress(b'{"source":"b","data":"1"}\n{"source":"b","data":"2"}\n{"x":')
        r = request(p["api"], "POST", "/api/v1/events/batch", body,
                    headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        assert r.status == 202 and r.json()["accepted"] == 2 and r.json()["rejected"] == 1, r
        assert get_json(p["api"], "/api/v1/events/stats")["events_by_type"]["user_created"] == 1
        wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == before + 13,
                 timeout=30, what="13 processed")
        before += 3

        # A client's bad input is its own 4xx, passed through the gateway.
        r = request(p["api"], "POST", "/api/v1/ingest", '{"source":')
        assert r.status == 400 and "error" in r.json(), r

        assert proc.stop() == 0

        # STATUS_TIMEOUT_MS is 1 s; the margin is for a loaded machine.
        t0 = time.time()
        status = get_json(p["api"], "/api/v1/status", timeout=30)
        elapsed = time.time() - t0
        assert elapsed < 10.0, elapsed
        assert status["processor"]["healthy"] is False, status
        assert status["processor"]["error"], status
        assert status["ingest"]["healthy"] is True, status

        r = request(p["ingest"], "POST", "/ingest", seed_event(99))
        assert r.status == 503, r
        assert "error" in r.json() and r.headers.get("retry-after"), r
        r = request(p["api"], "POST", "/api/v1/ingest", seed_event(100))
        assert r.status == 503, r
        assert get_json(p["ingest"], "/stats")["TotalFailed"] >= 2
        assert request(p["ingest"], "GET", "/ready").status == 503

        assert gw.stop() == 0
        assert ing.stop() == 0


def test_thousand_events_every_id_processed_once():
    p = ports()
    sink = os.path.join(tempfile.mkdtemp(prefix="ep-sink-"), "processed.ndjson")
    with Eventpipe("processor", ports=p, env={"PROCESSOR_SINK": "file:" + sink}) as proc, \
            Eventpipe("ingest", ports=p) as ing, Eventpipe("gateway", ports=p) as gw:
        ids = send_many(p["api"], 1000, "split")
        wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == 1000,
                 timeout=30, what="1000 processed")
        for e in (gw, ing, proc):
            assert e.stop() == 0
    got = [l["id"] for l in read_sink(sink)]
    assert sorted(got) == sorted(ids), (len(got), len(set(got)))


def test_ingest_not_ready_until_processor_answers():
    p = ports()
    with Eventpipe("ingest", ports=p) as ing:
        # Nothing listens on PROCESSOR_URL: 503 with the reason from the start.
        r = request(p["ingest"], "GET", "/ready")
        assert r.status == 503, r
        assert r.json()["error"].startswith("processor "), r
        # Still not ready once the first probes have failed, and it says why.
        r = wait_for(lambda: (lambda r: r if "unreachable" in r.json()["error"] else None)(
            request(p["ingest"], "GET", "/ready")), timeout=15, what="probe failed")
        assert r.status == 503 and r.headers.get("content-type", "").startswith(
            "application/json"), r
        with Eventpipe("processor", ports=p) as proc:
            # No event is needed: the probe finds the processor.
            wait_for(lambda: request(p["ingest"], "GET", "/ready").status == 200, timeout=15,
                     what="ingest /ready 200 after the processor started")
            assert get_json(p["ingest"], "/stats")["TotalReceived"] == 0
            assert request(p["ingest"], "POST", "/ingest", seed_event(1)).status == 202
            assert proc.stop() == 0
        # It follows the processor away again, without a failed hand-off.
        r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(
            request(p["ingest"], "GET", "/ready")), timeout=15, what="ingest /ready 503 again")
        assert "processor" in r.json()["error"], r
        assert get_json(p["ingest"], "/stats")["TotalFailed"] == 0
        assert ing.stop() == 0


def test_gateway_with_ingest_down():
    p = ports()
    with Eventpipe("gateway", ports=p) as gw:
        t0 = time.time()
        status = get_json(p["api"], "/api/v1/status", timeout=30)
        assert time.time() - t0 < 10.0, time.time() - t0
        assert status["ingest"]["healthy"] is False and status["processor"]["healthy"] is False
        r = request(p["api"], "POST", "/api/v1/ingest", seed_event(1))
        assert r.status == 503 and "error" in r.json(), r
        assert request(p["api"], "GET", "/ready").status == 503
        assert gw.stop() == 0


if __name__ == "__main__":
    main(globals())
