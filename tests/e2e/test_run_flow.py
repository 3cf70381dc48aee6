"""The seed 000 integration flow against `eventpipe run` (all roles in one
process): health on every port, the README's quick-check curls, 10 ingests ->
exactly 10 processed, /api/v1/status showing every role with its stats, and
1,000 events with every acknowledged id in the sink once."""

import http.client
import os
import re
import tempfile

from eptest import Eventpipe, get_json, main, read_sink, request, seed_event, wait_for

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_health_ready_on_every_port():
    with Eventpipe("run") as ep:
        for port in (ep.api, ep.ingest, ep.processor):
            r = request(port, "GET", "/health")
            assert r.status == 200 and r.json() == {"healthy": True}, r
            assert r.headers["content-type"].startswith("application/json")
            r = request(port, "GET", "/ready")
            assert r.status == 200 and r.json()["ready"] is True, r
        assert ep.stop() == 0


def test_seed_quick_check_and_ten_ingests():
    sink = os.path.join(tempfile.mkdtemp(prefix="ep-sink-"), "processed.ndjson")
    with Eventpipe("run", env={"PROCESSOR_SINK": "file:" + sink}) as ep:
        # The README's quick check, byte for byte.
        r = request(ep.api, "POST", "/api/v1/ingest",
                    '{"source":"test","data":"Hello World","metadata":{"type":"demo"}}',
                    headers={"Content-Type": "application/json"})
        assert r.status == 202, r
        body = r.json()
        assert body["status"] == "accepted" and UUID.match(body["messageId"]), body
        first_id = body["messageId"]

        # Let the first event through so the count below starts from a settled value.
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 1,
                 timeout=30, what="the quick-check event processed")
        before = get_json(ep.processor, "/stats")["pool"]["processed"]
        ids = []
        for i in range(10):
            r = request(ep.api, "POST", "/api/v1/ingest", seed_event(i))
            assert r.status == 202, r
            ids.append(r.json()["messageId"])
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == before + 10,
                 timeout=30, what="10 more processed")
        stats = get_json(ep.processor, "/stats")
        assert stats["pool"]["processed"] == before + 10, stats
        assert stats["pool"]["errors"] == 0
        assert stats["pool"]["workers"] == 4
        assert stats["queue"]["capacity"] == 1000
        assert stats["queue"]["size"] == 0

        status = get_json(ep.api, "/api/v1/status")
        assert status["ingest"]["healthy"] is True, status
        assert status["processor"]["healthy"] is True, status
        ing = status["ingest"]["stats"]
        assert ing["TotalReceived"] == 11 and ing["TotalSent"] == 11 and ing["TotalFailed"] == 0
        proc = status["processor"]["stats"]
        assert proc["queue"]["capacity"] == 1000 and proc["pool"]["processed"] == 11
        assert get_json(ep.api, "/status").keys() == status.keys()
        assert get_json(ep.ingest, "/stats")["TotalSent"] == 11

        assert ep.stop() == 0
        lines = read_sink(sink)
        got = [l["id"] for l in lines]
        assert sorted(got) == sorted([first_id] + ids), got
        line = next(l for l in lines if l["id"] == ids[3])
        assert line["source"] == "sensor-01" and line["processed_at"] >= line["received_at"]


def send_many(port, n, prefix):
    """POSTs n seed events over one keep-alive connection; returns the acknowledged ids."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    ids = []
    try:
        for i in range(n):
            ev = dict(seed_event(i), id="%s-%d" % (prefix, i))
            r = request(port, "POST", "/api/v1/ingest", ev, conn=conn)
            assert r.status == 202, r
            ids.append(r.json()["messageId"])
    finally:
        conn.close()
    return ids


def test_thousand_events_every_id_processed_once():
    sink = os.path.join(tempfile.mkdtemp(prefix="ep-sink-"), "processed.ndjson")
    with Eventpipe("run", env={"PROCESSOR_SINK": "file:" + sink}) as ep:
        ids = send_many(ep.api, 1000, "run")
        assert ids == ["run-%d" % i for i in range(1000)], ids[:3]
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 1000,
                 timeout=30, what="1000 processed")
        assert ep.stop() == 0
    got = [l["id"] for l in read_sink(sink)]
    assert sorted(got) == sorted(ids), (len(got), len(set(got)))


def test_direct_ingest_and_enqueue_routes():
    with Eventpipe("run") as ep:
        r = request(ep.ingest, "POST", "/ingest", seed_event(1))
        assert r.status == 202 and r.json()["status"] == "accepted", r
        # The seed's DataMessage JSON on the processor's /enqueue (payload is base64).
        r = request(ep.processor, "POST", "/enqueue",
                    {"id": "dm-1", "timestamp": 1718000000, "source": "test",
                     "payload": "aGVsbG8=", "metadata": {"k": "v"}})
        assert r.status == 202, r
        r = request(ep.api, "POST", "/ingest", seed_event(2))
        assert r.status == 202, r
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 3,
                 timeout=30, what="3 processed")
        assert ep.stop() == 0


def test_seed_004_shape_accepted():
    with Eventpipe("run") as ep:
        r = request(ep.api, "POST", "/api/v1/ingest",
                    {"id": "event_123", "user_id": "user_456", "event_type": "page_view",
                     "properties": {"page": "/dashboard", "n": 3, "ok": True},
                     "timestamp": 1640995200, "source": "web-app"})
        assert r.status == 202 and r.json()["messageId"] == "event_123", r
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
