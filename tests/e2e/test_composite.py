"""Composite dual-write over a real nats-server and librdkafka's mock Kafka
cluster: 1,000 events all processed exactly once per id; seed 002's manual
check automated (nats-server stopped mid-stream: fail-fast answers 503,
best-effort keeps answering 2xx and counts the failures; after the restart
every event that got a 2xx is processed)."""

import http.client
import os
import subprocess
import tempfile

from ep_nats import NatsServer
from eptest import Eventpipe, get_json, main, read_sink, request, wait_for

KAFKA_MOCK = os.environ.get("EP_KAFKA_MOCK") or os.path.join(
    os.path.dirname(os.environ.get("EP_BIN", "build/eventpipe")), "ep_kafka_mock")


class KafkaMock:
    """ep_kafka_mock: librdkafka's mock cluster on localhost TCP."""

    def __init__(self, brokers=1, topics=("diplom-messages:3", "diplom-messages-dlq:1")):
        if not os.path.exists(KAFKA_MOCK):
            raise AssertionError("ep_kafka_mock not built at %s" % KAFKA_MOCK)
        args = [KAFKA_MOCK, "--brokers", str(brokers)]
        for t in topics:
            args += ["--topic", t]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "ep_kafka_mock printed no bootstrap servers"

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def env_for(ns, km, strategy, sink):
    return {"QUEUE_TYPE": "composite", "COMPOSITE_PROVIDERS": " nats , kafka ",
            "COMPOSITE_STRATEGY": strategy, "NATS_URL": ns.url, "KAFKA_BROKERS": km.bootstrap,
            "KAFKA_COMPRESSION": "lz4", "PROCESSOR_SINK": "file:" + sink,
            "UPSTREAM_TIMEOUT_MS": "10000", "SHUTDOWN_TIMEOUT": "30"}


def send(port, ids, conn_box):
    """Sends one event per id on a keep-alive connection; returns {id: status}."""
    out = {}
    for eid in ids:
        for _ in range(2):
            try:
                if conn_box[0] is None:
                    conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
                r = request(port, "POST", "/api/v1/ingest", {"id": eid, "source": "cmp",
                                                             "data": "x"}, conn=conn_box[0])
                out[eid] = r.status
                break
            except (OSError, http.client.HTTPException):
                conn_box[0].close()
                conn_box[0] = None
                out[eid] = 0
    return out


def sink_ids(sink):
    return [l["id"] for l in read_sink(sink)]


def test_composite_1000_events_processed_once_per_id():
    sink = os.path.join(tempfile.mkdtemp(prefix="ep-cmp-"), "out.ndjson")
    with NatsServer() as ns, KafkaMock() as km, \
            Eventpipe("run", env=env_for(ns, km, "fail-fast", sink)) as ep:
        ids = ["c-%d" % i for i in range(1000)]
        res = send(ep.api, ids, [None])
        ok = [i for i in ids if res[i] == 202]
        assert len(ok) == 1000, {s: list(res.values()).count(s) for s in set(res.values())}
        wait_for(lambda: len(set(sink_ids(sink))) == 1000, 60, what="1000 processed")
        # Both copies of every event were read (none left unread) and one was dropped.
        wait_for(lambda: get_json(ep.processor, "/stats")["queue"]["deduplicated"] == 1000, 60,
                 what="the second copies read and de-duplicated")
        q = get_json(ep.processor, "/stats")["queue"]
        cs = q["composite_stats"]
        assert cs["nats"]["published"] == 1000 and cs["kafka"]["published"] == 1000, cs
        assert cs["nats"]["failed"] == 0 and cs["kafka"]["failed"] == 0, cs
        assert q["strategy"] == "fail-fast"
        assert ep.stop() == 0
        got = sink_ids(sink)
        assert sorted(set(got)) == sorted(ok)
        assert len(got) - len(set(got)) <= 10, "too many duplicates: %d" % (len(got) - len(set(got)))


def outage_case(strategy):
    sink = os.path.join(tempfile.mkdtemp(prefix="ep-cmp-"), "out.ndjson")
    # Every publish of the outage reaches the composite, whose accounting is checked
    # here: no circuit breaker in front of it (test_circuit_breaker.py tests that).
    with NatsServer() as ns, KafkaMock() as km, \
            Eventpipe("run", env=dict(env_for(ns, km, strategy, sink),
                                      CIRCUIT_BREAKER_FAILURES="0")) as ep:
        box = [None]
        before = send(ep.api, ["%s-a-%d" % (strategy, i) for i in range(200)], box)
        assert set(before.values()) == {202}, before
        ns.stop()
        wait_for(lambda: get_json(ep.processor, "/stats")["queue"]["composite_stats"]["nats"]
                 ["ready"] is False, 30, what="the NATS provider seeing nats-server gone")
        during = send(ep.api, ["%s-b-%d" % (strategy, i) for i in range(200)], box)
        ready = request(ep.processor, "GET", "/ready")
        st = get_json(ep.processor, "/stats")["queue"]
        ns.start()
        wait_for(lambda: request(ep.processor, "GET", "/ready").status == 200, 30,
                 what="ready again after nats-server restarted")
        after = send(ep.api, ["%s-c-%d" % (strategy, i) for i in range(200)], box)
        assert set(after.values()) == {202}, {s: list(after.values()).count(s)
                                              for s in set(after.values())}
        acked = [i for r in (before, during, after) for i, s in r.items() if s == 202]
        wait_for(lambda: set(acked) <= set(sink_ids(sink)), 90,
                 what="every acknowledged event processed")
        assert ep.stop() == 0
        return during, ready, st, acked


def test_fail_fast_outage_answers_503_and_loses_nothing():
    during, ready, st, acked = outage_case("fail-fast")
    codes = {s: list(during.values()).count(s) for s in set(during.values())}
    assert codes.get(503, 0) >= 150, codes  # could not be stored everywhere
    assert ready.status == 503 and "nats" in ready.json()["error"], ready
    assert st["composite_stats"]["nats"]["failed"] >= 150, st
    # A broker outage is "unavailable", never "full" (issue 20).
    assert st["rejected_unavailable"] >= 150 and st["rejected_full"] == 0, st
    assert st["composite_stats"]["nats"]["failed_unavailable"] >= 150, st
    assert st["composite_stats"]["nats"]["failed_full"] == 0, st


def test_best_effort_outage_keeps_answering_and_counts_failures():
    during, ready, st, acked = outage_case("best-effort")
    codes = {s: list(during.values()).count(s) for s in set(during.values())}
    assert codes.get(202, 0) >= 190, codes
    assert ready.status == 200  # degraded, still usable
    assert st["composite_stats"]["nats"]["failed"] >= 150, st
    assert st["composite_stats"]["kafka"]["failed"] == 0, st


if __name__ == "__main__":
    main(globals())
