#!/usr/bin/env python3
"""How long a fresh `eventpipe analytics` replica takes to rebuild its summary from a
broker stream (issue 18 item 5, docs/architecture.md "Analytics and brokers").

    EP_BIN=build/eventpipe python3 bench/analytics_replay.py nats 100000
    EP_BIN=build/eventpipe EP_KAFKA_MOCK=build/ep_kafka_mock python3 bench/analytics_replay.py kafka 100000

Publishes N events through `eventpipe ingest` (batches of 1,000 on /events/batch) to one
nats-server or ep_kafka_mock, then starts `eventpipe analytics` and prints the seconds from
its start to /health, to /ready (with the total counted then) and to all N counted.
"""
import json
import os
import sys
import time

sys.path[:0] = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e")]
from eptest import Eventpipe, free_port, get_json, request, wait_for  # noqa: E402


def broker(kind):
    if kind == "nats":
        from ep_nats import NatsServer
        ns = NatsServer()
        return ns, {"QUEUE_TYPE": "nats", "NATS_URL": ns.url}
    from ep_kafka import MockKafka
    mk = MockKafka(brokers=1, topics={"diplom-messages": 2, "diplom-messages-dlq": 1})
    return mk, {"QUEUE_TYPE": "kafka", "KAFKA_BROKERS": mk.bootstraps,
                "KAFKA_TOPIC": "diplom-messages", "KAFKA_DLQ_TOPIC": "diplom-messages-dlq"}


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "nats"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    b, env = broker(kind)
    env["LOG_LEVEL"] = "warn"
    with b, Eventpipe("ingest", ports=p, env=env) as ing:
        t0 = time.time()
        for k in range(n // 1000):
            lines = "\n".join(json.dumps({"id": "m-%d-%d" % (k, i), "user_id": "u%d" % (i % 500),
                                          "event_type": "click", "source": "web"})
                              for i in range(1000))
            r = request(p["ingest"], "POST", "/events/batch", lines,
                        headers={"Content-Type": "application/x-ndjson"})
            assert r.status == 202, r
        print("%s: published %d in %.1f s" % (kind, n // 1000 * 1000, time.time() - t0))
        t0 = time.time()
        with Eventpipe("analytics", ports=p, env=env) as an:
            t_health = time.time() - t0
            while request(p["analytics"], "GET", "/ready").status != 200:
                time.sleep(0.05)
            t_ready = time.time() - t0
            at_ready = get_json(p["analytics"], "/analytics/summary")["total_events"]
            wait_for(lambda: get_json(p["analytics"], "/analytics/summary")["total_events"] >=
                     n // 1000 * 1000, timeout=3600, what="all counted")
            print("start->health %.2f s, start->ready %.2f s (%d counted then), "
                  "start->all counted %.2f s" % (t_health, t_ready, at_ready, time.time() - t0))
            an.stop()
        ing.stop()


if __name__ == "__main__":
    main()
