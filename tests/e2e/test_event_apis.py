"""Seed 003/004 event APIs on ingest: sync, async, batch (JSON array, NDJSON,
gzip) with per-event results, typed events, and idempotent client ids."""

import gzip
import json
import os
import tempfile
import time

from eptest import Eventpipe, get_json, main, read_sink, request, wait_for


def sink_env():
    path = os.path.join(tempfile.mkdtemp(prefix="ep-api-"), "out.ndjson")
    return path, {"PROCESSOR_SINK": "file:" + path, "QUEUE_SIZE": "50000"}


def processed(ep):
    return get_json(ep.processor, "/stats")["pool"]["processed"]


def test_seed_004_curl_and_async():
    sink, env = sink_env()
    with Eventpipe("run", env=env) as ep:
        # Seed 004's curl, as written.
        r = request(ep.ingest, "POST", "/events", """{
    "id": "event_123",
    "user_id": "user_456",
    "event_type": "page_view",
    "properties": {
      "page": "/dashboard",
      "duration": "45"
    },
    "timestamp": 1640995200,
    "source": "web-app"
  }""", headers={"Content-Type": "application/json"})
        assert r.status == 202 and r.json() == {"messageId": "event_123", "status": "accepted"}, r
        r = request(ep.ingest, "POST", "/events/async",
                    {"source": "web-app", "event_type": "click", "user_id": "u1"})
        assert r.status == 202 and r.json()["status"] == "buffered", r
        wait_for(lambda: processed(ep) == 2, what="2 processed")
        st = get_json(ep.ingest, "/stats")
        assert st["TotalSent"] == 2 and st["async_accepted"] == 1, st
        assert ep.stop() == 0
        lines = {l["id"]: l for l in read_sink(sink)}
        assert lines["event_123"]["event_type"] == "page_view"
        assert lines["event_123"]["user_id"] == "user_456"
        assert lines["event_123"]["timestamp"] == 1640995200000


def test_seed_003_typed_events():
    with Eventpipe("run") as ep:
        r = request(ep.api, "POST", "/api/v1/events/user",
                    '{"data": "{\\"user_id\\": \\"123\\", \\"email\\": \\"user@example.com\\"}"}',
                    headers={"Content-Type": "application/json"})
        assert r.status == 202, r
        r = request(ep.api, "POST", "/api/v1/events/order",
                    '{"data": "{\\"order_id\\": \\"456\\", \\"amount\\": 100.50}"}',
                    headers={"Content-Type": "application/json"})
        assert r.status == 202, r
        r = request(ep.ingest, "POST", "/api/v1/events/payment", {"data": "p", "source": "shop"})
        assert r.status == 202, r
        r = request(ep.api, "POST", "/api/v1/events/user", {"data": "x", "event_type": "other"})
        assert r.status == 400 and r.json()["field"] == "event_type", r
        stats = get_json(ep.api, "/api/v1/events/stats")
        assert stats["events_by_type"] == {"user_created": 1, "order_created": 1,
                                           "payment_created": 1}, stats
        assert stats["total_typed"] == 3
        assert ep.stop() == 0


def test_seed_003_typed_events_require_data():
    # "data" is required on the typed routes: their type is set by the route, so an
    # event without data would carry nothing. A JSON error names the field.
    with Eventpipe("run") as ep:
        for port in (ep.api, ep.ingest):
            for kind in ("user", "order", "payment"):
                path = "/api/v1/events/" + kind
                for body, msg in (({}, "is required"), ({"data": ""}, "must not be empty"),
                                  ({"source": "shop", "metadata": {"k": "v"}}, "is required")):
                    r = request(port, "POST", path, body)
                    assert r.status == 400, (port, path, body, r)
                    assert r.headers["content-type"].startswith("application/json"), r
                    assert r.json()["field"] == "data", (port, path, body, r)
                    assert msg in r.json()["error"], (port, path, body, r)
                r = request(port, "POST", path, {"payload": ""})
                assert r.status == 400 and r.json()["field"] == "payload", r
        stats = get_json(ep.api, "/api/v1/events/stats")
        assert stats["total_typed"] == 0, stats
        assert get_json(ep.ingest, "/stats")["TotalSent"] == 0
        # With data they are accepted, on both ports.
        assert request(ep.api, "POST", "/api/v1/events/user", {"data": "u"}).status == 202
        assert request(ep.ingest, "POST", "/api/v1/events/order", {"payload": "bw=="}).status == 202
        assert get_json(ep.api, "/api/v1/events/stats")["total_typed"] == 2
        assert ep.stop() == 0


def ndjson_batch(n, prefix, bad_every=0):
    lines = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            lines.append('{"id":"%s-%d","source":"b","data":' % (prefix, i))  # truncated
        else:
            lines.append(json.dumps({"id": "%s-%d" % (prefix, i), "source": "batch",
                                     "event_type": "t%d" % (i % 3), "user_id": "u%d" % (i % 50)}))
    return "\n".join(lines) + "\n"


def test_ndjson_batch_10000_with_bad_lines_and_replay():
    sink, env = sink_env()
    with Eventpipe("run", env=env) as ep:
        body = ndjson_batch(10000, "nd", bad_every=1000)
        r = request(ep.ingest, "POST", "/events/batch", body,
                    headers={"Content-Type": "application/x-ndjson"}, timeout=60)
        assert r.status == 202, r
        res = r.json()
        assert res["accepted"] == 9990 and res["rejected"] == 10, {k: res[k] for k in res
                                                                   if k != "results"}
        assert len(res["results"]) == 10000
        bad = [x for x in res["results"] if "error" in x]
        assert [x["line"] for x in bad] == [i for i in range(1000, 10001, 1000)], bad[:3]
        assert all(x["error"].startswith("malformed JSON") for x in bad), bad[0]
        ok = [x for x in res["results"] if "messageId" in x]
        assert ok[0] == {"index": 0, "line": 1, "messageId": "nd-0"}, ok[0]
        wait_for(lambda: processed(ep) == 9990, timeout=30, what="9990 processed")

        enq = get_json(ep.processor, "/stats")["queue"]["enqueued"]
        # The same batch again: every client id was seen, nothing is enqueued twice.
        r = request(ep.ingest, "POST", "/events/batch", body,
                    headers={"Content-Type": "application/x-ndjson"}, timeout=60)
        assert r.status == 202, r
        res = r.json()
        assert res["accepted"] == 0 and res["duplicates"] == 9990, {k: res[k] for k in res
                                                                    if k != "results"}
        time.sleep(0.5)
        assert get_json(ep.processor, "/stats")["queue"]["enqueued"] == enq
        assert processed(ep) == 9990
        # ... and nothing is added to the analytics either.
        assert get_json(ep.ports["analytics"], "/analytics/summary")["total_events"] == 9990
        assert ep.stop() == 0
        ids = [l["id"] for l in read_sink(sink)]
        assert len(ids) == 9990 and len(set(ids)) == 9990


def test_json_array_and_gzip_batches():
    with Eventpipe("run", env={"QUEUE_SIZE": "50000"}) as ep:
        arr = [{"source": "a", "data": "x%d" % i} for i in range(300)]
        arr[7] = {"source": 5, "data": "x"}
        r = request(ep.ingest, "POST", "/events/batch", arr)
        assert r.status == 202, r
        res = r.json()
        assert res["accepted"] == 299 and res["rejected"] == 1, res
        assert res["results"][7]["field"] == "source", res["results"][7]

        gz = gzip.compress(ndjson_batch(500, "gz").encode())
        r = request(ep.ingest, "POST", "/events/batch", gz,
                    headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        assert r.status == 202 and r.json()["accepted"] == 500, r
        r = request(ep.api, "POST", "/api/v1/events/batch", gz,
                    headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        assert r.status == 202 and r.json()["duplicates"] == 500, r

        for body, want in [("[1,2", 400), ("[]", 400), ("", 400), ("\n\n", 400)]:
            r = request(ep.ingest, "POST", "/events/batch", body,
                        headers={"Content-Type": "application/json"})
            assert r.status == want and "error" in r.json(), (body, r)
        r = request(ep.ingest, "POST", "/events/batch", b"not gzip",
                    headers={"Content-Encoding": "gzip"})
        assert r.status == 400, r
        wait_for(lambda: processed(ep) == 799, what="799 processed")
        assert ep.stop() == 0


def test_single_event_idempotency():
    with Eventpipe("run") as ep:
        ev = {"id": "client-1", "source": "s", "data": "x"}
        r1 = request(ep.api, "POST", "/api/v1/ingest", ev)
        r2 = request(ep.api, "POST", "/api/v1/ingest", ev)
        r3 = request(ep.ingest, "POST", "/events", ev)
        assert r1.status == r2.status == r3.status == 202
        assert "duplicate" not in r1.json() and r2.json()["duplicate"] is True
        wait_for(lambda: processed(ep) == 1, what="1 processed")
        time.sleep(0.3)
        assert processed(ep) == 1
        assert get_json(ep.ingest, "/stats")["duplicates"] == 2
        assert ep.stop() == 0


def test_batch_over_queue_capacity_reports_each_event():
    with Eventpipe("run", env={"QUEUE_SIZE": "100", "PROCESSOR_WORKERS": "1"}) as ep:
        body = ndjson_batch(2000, "cap")
        r = request(ep.ingest, "POST", "/events/batch", body, timeout=30)
        res = r.json()
        assert r.status in (202, 503), r
        kept = res["accepted"]
        failed = [x for x in res["results"] if x.get("retry")]
        assert kept + len(failed) == 2000, (kept, len(failed))
        assert all(x["error"].startswith("queue is full") for x in failed)
        wait_for(lambda: processed(ep) == kept, what="kept events processed")
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
