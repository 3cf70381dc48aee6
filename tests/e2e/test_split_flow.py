"""The seed 000 flow with gateway, ingest and processor as three processes
talking HTTP, and what happens when the processor goes away: /api/v1/status
still answers quickly and shows it unhealthy, and ingest answers 503."""

import time

from eptest import Eventpipe, free_port, get_json, main, request, seed_event, wait_for


def ports():
    return {"api": free_port(), "ingest": free_port(), "processor": free_port()}


def test_three_processes_flow_and_processor_down():
    p = ports()
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing, \
            Eventpipe("gateway", ports=p) as gw:
        for port in (p["api"], p["ingest"], p["processor"]):
            assert request(port, "GET", "/health").json() == {"healthy": True}
        assert request(p["api"], "GET", "/ready").status == 200

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
