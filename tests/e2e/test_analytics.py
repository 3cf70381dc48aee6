"""The analytics role (seed 004 Analytics Service, port 8083): exact summary
counts for a known event set inside `eventpipe run`, the seed's curl, the
time series endpoint, /api/v1/status, and separate processor + analytics
processes fed by delta pushes."""

import collections
import time

from eptest import Eventpipe, free_port, get_json, main, request, wait_for

TYPES = ["page_view", "click", "purchase"]
SOURCES = ["web-app", "mobile"]


def known_events(n=300, users=50, prefix="ev"):
    evs = []
    for i in range(n):
        evs.append({"id": "%s-%d" % (prefix, i), "user_id": "user_%d" % (i % users),
                    "event_type": TYPES[i % 3], "source": SOURCES[i % 2],
                    "properties": {"page": "/page/%d" % (i % 4), "duration": "45"}})
    return evs


def send_all(port, evs, path="/api/v1/ingest"):
    for ev in evs:
        r = request(port, "POST", path, ev)
        assert r.status == 202, r


def check_summary(s, n=300):
    assert s["total_events"] == n, s
    assert s["events_by_type"] == {t: n // 3 for t in TYPES}, s["events_by_type"]
    assert s["events_by_source"] == {src: n // 2 for src in SOURCES}, s["events_by_source"]
    assert s["unique_users"] == 50, s["unique_users"]
    assert s["events_with_user"] == n
    for q in ("p50", "p95", "p99"):
        assert isinstance(s["latency_ms"][q], (int, float)) and s["latency_ms"][q] >= 0, s
    assert s["latency_ms"]["count"] == n
    assert s["latency_ms"]["p50"] <= s["latency_ms"]["p95"] <= s["latency_ms"]["p99"]
    top = collections.Counter()
    for i in range(n):
        top["/page/%d" % (i % 4)] += 1
    assert {p["page"]: p["count"] for p in s["top_pages"]} == dict(top), s["top_pages"]
    assert len(s["top_users"]) == 10 and all(u["count"] == n // 50 for u in s["top_users"])
    assert s["events_per_second"]["15m"] > 0, s


def test_run_summary_exact_and_status():
    with Eventpipe("run") as ep:
        send_all(ep.api, known_events())
        wait_for(lambda: get_json(ep.analytics, "/analytics/summary")["total_events"] == 300,
                 timeout=30, what="300 events in the summary")
        # The seed 004 example: curl http://localhost:8083/analytics/summary | jq
        r = request(ep.analytics, "GET", "/analytics/summary")
        assert r.status == 200 and r.headers["content-type"].startswith("application/json"), r
        check_summary(r.json())

        ts = get_json(ep.analytics, "/analytics/timeseries?window=5m&bucket=10s&dimension=event_type")
        assert ts["bucket_seconds"] == 10 and ts["window_seconds"] == 300
        got = {s["key"]: sum(s["counts"]) for s in ts["series"]}
        assert got == {t: 100 for t in TYPES}, ts
        assert all(len(s["counts"]) == 30 for s in ts["series"])
        ts = get_json(ep.analytics, "/analytics/timeseries?window=1h&bucket=60s")
        assert sum(ts["series"][0]["counts"]) == 300 and len(ts["series"][0]["counts"]) == 60
        for bad in ("window=2h", "window=5m&bucket=7s", "dimension=colour", "window=abc"):
            r = request(ep.analytics, "GET", "/analytics/timeseries?" + bad)
            assert r.status == 400 and "error" in r.json(), (bad, r)

        h = get_json(ep.analytics, "/analytics/health")
        assert h["healthy"] is True and h["total_events"] == 300, h
        assert request(ep.analytics, "GET", "/health").json() == {"healthy": True}
        assert request(ep.analytics, "GET", "/ready").status == 200

        status = get_json(ep.api, "/api/v1/status")
        assert status["analytics"]["healthy"] is True, status
        assert status["analytics"]["stats"]["total_events"] == 300, status
        assert ep.stop() == 0


def test_separate_processor_pushes_deltas():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    fast = {"ANALYTICS_PUSH_INTERVAL_MS": "200"}
    # The processor starts first: its pushes fail until analytics is up, then catch up.
    with Eventpipe("processor", ports=p, env=fast) as proc, \
            Eventpipe("ingest", ports=p) as ing, Eventpipe("gateway", ports=p) as gw:
        send_all(p["ingest"], known_events(150, prefix="a"), path="/ingest")
        wait_for(lambda: get_json(p["processor"], "/stats")["analytics_push"]["failed"] >= 1,
                 timeout=30, what="a delta push failed (analytics not up yet)")
        with Eventpipe("analytics", ports=p) as an:
            send_all(p["api"], known_events(300, prefix="b")[150:])
            wait_for(lambda: get_json(p["analytics"], "/analytics/summary")["total_events"] == 300,
                     timeout=30, what="300 events pushed to analytics")
            s = get_json(p["analytics"], "/analytics/summary")
            check_summary(s)
            assert s["processing"]["senders"] == 1 and s["processing"]["deltas_merged"] >= 1, s
            push = get_json(p["processor"], "/stats")["analytics_push"]
            assert push["pushed"] >= 1 and push["failed"] >= 1, push  # failed before analytics

            status = get_json(p["api"], "/api/v1/status")
            assert status["analytics"]["healthy"] is True, status
            assert status["analytics"]["stats"]["total_events"] == 300, status

            # Events drained at shutdown reach analytics in the final push.
            send_all(p["ingest"], known_events(30, prefix="c"), path="/ingest")
            assert proc.stop() == 0
            s = get_json(p["analytics"], "/analytics/summary")
            assert s["total_events"] == 330, s["total_events"]
            assert an.stop() == 0

        # Analytics is down: the answer still comes at once (STATUS_TIMEOUT_MS is 1 s;
        # the margin is for a loaded machine), and says so.
        t0 = time.time()
        status = get_json(p["api"], "/api/v1/status", timeout=30)
        assert time.time() - t0 < 10.0, time.time() - t0
        assert status["analytics"]["healthy"] is False and status["analytics"]["error"], status
        assert gw.stop() == 0
        assert ing.stop() == 0


def test_merge_rejects_garbage():
    with Eventpipe("analytics") as an:
        r = request(an.analytics, "POST", "/analytics/merge", b"EPAD\x01garbage",
                    headers={"Content-Type": "application/octet-stream"})
        assert r.status == 400 and "error" in r.json(), r
        s = get_json(an.analytics, "/analytics/summary")
        assert s["total_events"] == 0 and s["processing"]["deltas_rejected"] == 1, s
        assert an.stop() == 0


if __name__ == "__main__":
    main(globals())
