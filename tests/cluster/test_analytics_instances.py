"""Issue 18 item 5: two `eventpipe analytics` instances on a broker queue give one
exact summary, also after one of them is killed (kill -9) and after it restarts.

The design under test (docs/architecture.md, "Analytics and brokers"): every
analytics process is a full replica that reads the whole retained stream with a
consumer of its own process (NATS: a durable "<NATS_DURABLE>-analytics-<unique>"
from the stream's start that the server removes after inactivity; Kafka: a group
"<KAFKA_CONSUMER_GROUP>-analytics-<unique>" from the earliest offset), so each
instance counts every event once, a survivor stays exact, and a restarted one
rebuilds its state by replaying the stream.

Separate ingest, processor and two analytics processes, over one real
nats-server and over ep_kafka_mock (librdkafka's mock cluster, 2 partitions).
"""

import re
import signal

from eptest import Eventpipe, free_port, get_json, main, request, wait_for
from test_analytics import check_summary, known_events, send_all

# The parts of the summary every exact instance must agree on (latency and rates
# depend on when each instance read the events).
SAME = ("total_events", "events_by_type", "events_by_source", "unique_users",
        "events_with_user", "top_pages", "top_users")


def summary(port):
    return get_json(port, "/analytics/summary")


def processed(port):
    return get_json(port, "/stats")["pool"]["processed"]


def wait_exact(ports, n, proc_port, what):
    """Waits until the processor processed n and every instance counts n, then checks
    each summary is exact and they agree."""
    wait_for(lambda: processed(proc_port) == n, timeout=90, what="the processor processed %d" % n)
    for port in ports:
        # A wrong split (each instance holding part of the stream) never reaches n; a
        # double count passes n: both are caught by check_summary below.
        wait_for(lambda: summary(port)["total_events"] >= n, timeout=90,
                 what="analytics on %d counts %d (%s)" % (port, n, what))
    sums = [summary(port) for port in ports]
    for s in sums:
        check_summary(s, n)
    for key in SAME:
        assert all(s[key] == sums[0][key] for s in sums), (key, [s[key] for s in sums])
    assert processed(proc_port) == n


def same_series(a, b):
    q = "/analytics/timeseries?window=15m&bucket=1s&dimension=event_type"
    ta, tb = get_json(a, q), get_json(b, q)
    total = sum(sum(x["counts"]) for x in ta["series"])

    def by_key(t):  # series of equal size may come in either order
        return t["start"], {x["key"]: x["counts"] for x in t["series"]}
    if total == 900 and by_key(ta) == by_key(tb):
        return True
    same_series.last = (ta, tb)  # for the failure message
    return False


def kill9(ep):
    ep.proc.send_signal(signal.SIGKILL)
    ep.proc.wait()
    ep.log.close()


def two_instances_scenario(env, ready=None, after_kill=None, after_stop=None, meddle=None):
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    pa, pb = dict(p), dict(p, analytics=free_port())
    with Eventpipe("processor", ports=p, env=env) as proc, \
            Eventpipe("ingest", ports=p, env=env) as ing, \
            Eventpipe("analytics", ports=pa, env=env) as a:
        b = Eventpipe("analytics", ports=pb, env=env)
        try:
            if ready:
                ready(proc, a, b)
            # Round 1: both instances are exact and agree.
            send_all(p["ingest"], known_events(300, prefix="r1"), path="/ingest")
            wait_exact([pa["analytics"], pb["analytics"]], 300, p["processor"], "both")

            # kill -9 one instance, send more: the survivor stays exact.
            kill9(b)
            if meddle:
                meddle(a)
            send_all(p["ingest"], known_events(300, prefix="r2"), path="/ingest")
            wait_exact([pa["analytics"]], 600, p["processor"], "the survivor")
            if after_kill:
                after_kill()

            # The killed one restarts with nothing in memory: it replays the stream and
            # converges to the same exact summary; new events reach both.
            b = Eventpipe("analytics", ports=pb, env=env)
            # /ready answers 200 once the replay is within one batch (PROCESSOR_BATCH, 64)
            # of the stream's end, never with a summary that lacks more.
            wait_for(lambda: request(pb["analytics"], "GET", "/ready").status == 200,
                     timeout=90, what="the restarted instance is ready")
            got = summary(pb["analytics"])["total_events"]
            assert 600 - 64 <= got <= 600, got
            wait_exact([pa["analytics"], pb["analytics"]], 600, p["processor"], "restarted")
            send_all(p["ingest"], known_events(300, prefix="r3"), path="/ingest")
            wait_exact([pa["analytics"], pb["analytics"]], 900, p["processor"], "after restart")
            # The replayed events sit in the seconds ingest accepted them, as on the survivor
            # that counted them live (asked twice in the same second: the series agree).
            try:
                wait_for(lambda: same_series(pa["analytics"], pb["analytics"]), timeout=30,
                         what="the same per-second series on both instances")
            except AssertionError:
                ta, tb = getattr(same_series, "last", (None, None))
                raise AssertionError("per-second series differ:\n%s\n%s" % (ta, tb))
            # Each instance read through a consumer of its own process.
            assert "consumer of this process" in a.log_text(), a.log_text()[-2000:]
            for e in (b, a, ing, proc):
                assert e.stop() == 0
            if after_stop:
                after_stop()
        finally:
            if b.proc.poll() is None:
                b.proc.kill()
                b.proc.wait()


def test_nats_two_analytics_instances_exact():
    from ep_nats import NatsClient, NatsServer

    def analytics_consumers(ns):
        c = NatsClient(ns.port)
        try:
            got = c.js_api("CONSUMER.LIST.DIPLOM_STREAM")
        finally:
            c.close()
        return {ci["name"]: ci["config"] for ci in got.get("consumers") or []
                if ci["name"].startswith("processor-analytics-")}

    with NatsServer() as ns:
        def after_kill():
            # Two durables of their own (one per process); the killed one's stays until the
            # server's inactivity threshold (5 min) removes it.
            cons = analytics_consumers(ns)
            assert len(cons) == 2, cons
            for name, cfg in cons.items():
                assert re.fullmatch(r"processor-analytics-[0-9a-f]{12}", name), name
                assert cfg.get("inactive_threshold") == 300 * 10**9, cfg
            # The killed one's from the start; the survivor's made again after meddle()
            # from the sequence after the 300 it had read.
            starts = sorted((cfg["deliver_policy"], cfg.get("opt_start_seq", 0))
                            for cfg in cons.values())
            assert starts == [("all", 0), ("by_start_sequence", 301)], cons

        def meddle(a):
            # The server drops the survivor's durable (as after a disconnection longer than
            # its inactivity threshold): it is made again from the next unread sequence, not
            # from the start, so nothing is counted twice.
            tag = re.search(r'"analytics-([0-9a-f]{12})"', a.log_text()).group(1)

            def delete():
                # nats-server 2.9 may answer 500 ("directory not empty") while the durable's
                # store is being written: ask again.
                c = NatsClient(ns.port)
                try:
                    r = c.js_api("CONSUMER.DELETE.DIPLOM_STREAM.processor-analytics-" + tag)
                finally:
                    c.close()
                return r.get("success") is True
            wait_for(delete, timeout=30, what="the survivor's durable deleted")

        def after_stop():
            # A clean stop removes its own durable; the killed one's is left to the threshold.
            assert len(analytics_consumers(ns)) == 1, analytics_consumers(ns)

        two_instances_scenario({"QUEUE_TYPE": "nats", "NATS_URL": ns.url},
                               after_kill=after_kill, after_stop=after_stop, meddle=meddle)


def test_kafka_two_analytics_instances_exact():
    from ep_kafka import MockKafka
    topic, dlq = "diplom-messages", "diplom-messages-dlq"
    with MockKafka(brokers=1, topics={topic: 2, dlq: 1}) as mock:
        env = {"QUEUE_TYPE": "kafka", "KAFKA_BROKERS": mock.bootstraps, "KAFKA_TOPIC": topic,
               "KAFKA_DLQ_TOPIC": dlq, "KAFKA_SESSION_TIMEOUT_MS": "4000",
               "KAFKA_HEARTBEAT_INTERVAL_MS": "500", "SHUTDOWN_TIMEOUT": "10"}

        def assigned(port):
            return get_json(port, "/stats")["queue"]["kafka"]["assigned_partitions"]

        def ready(proc, a, b):
            # The mock delays a new group's first join by 3 s: wait for the processor's.
            wait_for(lambda: assigned(proc.processor) == 2, timeout=30,
                     what="the processor owns both partitions")
        two_instances_scenario(env, ready)


if __name__ == "__main__":
    main(globals())
