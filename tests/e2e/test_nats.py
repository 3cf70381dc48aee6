"""End to end with QUEUE_TYPE=nats against a real nats-server (ep_nats.py):
all-in-one and split roles, two processors on one durable, kill -9 of a
processor, the server going away and coming back, poison messages."""

import http.client
import os
import re
import threading
import time

from ep_nats import NatsClient, NatsServer
from eptest import Eventpipe, Load, free_port, get_json, main, read_sink, request, wait_for


def nats_env(ns, sink, **extra):
    env = {"QUEUE_TYPE": "nats", "NATS_URL": ns.url, "PROCESSOR_SINK": "file:" + sink,
           "LOG_LEVEL": "info"}
    env.update(extra)
    return env


def send_events(port, ids, threads=4, path="/ingest"):
    """Posts one event per id over keep-alive connections; returns (ok ids, statuses)."""
    ok, statuses, lock = [], {}, threading.Lock()
    chunks = [ids[k::threads] for k in range(threads)]

    def run(chunk):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for eid in chunk:
            r = request(port, "POST", path, {"id": eid, "source": "e2e", "data": "x"}, conn=conn)
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if 200 <= r.status < 300:
                    ok.append(eid)
            if r.headers.get("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()

    ts = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return ok, statuses


def sink_ids(*paths):
    ids = []
    for p in paths:
        ids += [e["id"] for e in read_sink(p)]
    return ids


def test_run_1000_events():
    with NatsServer() as ns:
        sink = os.path.join(ns.dir, "sink.ndjson")
        with Eventpipe("run", env=nats_env(ns, sink)) as ep:
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            ids = ["run-%d" % i for i in range(1000)]
            t0 = time.time()
            ok, statuses = send_events(ep.ingest, ids)
            t_ack = time.time() - t0
            assert statuses == {202: 1000}, statuses
            wait_for(lambda: len(set(sink_ids(sink))) >= 1000, 30, what="1000 processed")
            t_done = time.time() - t0
            assert set(sink_ids(sink)) == set(ok)
            print("  nats run: 1000 events acknowledged in %.2fs (%.0f/s), processed in %.2fs "
                  "(%.0f/s), 4 HTTP connections" % (t_ack, 1000 / t_ack, t_done, 1000 / t_done))
            st = get_json(ep.processor, "/stats")
            assert st["queue"]["type"] == "nats"
            assert st["queue"]["nats"]["connected"] is True
            # Sink lines are written before the acks, and the figures refresh once a second.
            wait_for(lambda: (lambda l: l["pending"] == 0 and l["ack_pending"] == 0)(
                get_json(ep.processor, "/lag")), 30, what="lag and ack_pending 0")
            lag = get_json(ep.processor, "/lag")
            assert lag["total"] == 0 and lag["ack_pending"] == 0, lag
            c = NatsClient(ns.port)
            assert c.subject_count("diplom.messages") == 1000
            c.close()
            assert ep.stop() == 0


def test_split_roles_two_processors_share_the_work():
    with NatsServer() as ns:
        sinks = [os.path.join(ns.dir, "sink-%d.ndjson" % k) for k in range(2)]
        with Eventpipe("ingest", env=nats_env(ns, "/dev/null")) as ing:
            wait_for(lambda: request(ing.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            with Eventpipe("processor", env=nats_env(ns, sinks[0])) as p1, \
                    Eventpipe("processor", env=nats_env(ns, sinks[1])) as p2:
                for p in (p1, p2):
                    wait_for(lambda: request(p.processor, "GET", "/ready").status == 200, 30,
                             what="processor ready")
                ok = []
                for burst in range(6):
                    ids = ["split-%d-%d" % (burst, i) for i in range(100)]
                    got, statuses = send_events(ing.ingest, ids)
                    assert statuses == {202: 100}, statuses
                    ok += got
                    time.sleep(0.1)
                wait_for(lambda: set(sink_ids(*sinks)) >= set(ok), 30, what="all processed")
                per = [len(set(sink_ids(s))) for s in sinks]
                assert per[0] > 0 and per[1] > 0, per
                assert set(sink_ids(*sinks)) == set(ok)
                # The processor still takes POST /enqueue, straight into the broker.
                r = request(p1.processor, "POST", "/enqueue",
                            {"id": "via-enqueue", "source": "e2e", "data": "x"})
                assert r.status == 202, r
                wait_for(lambda: "via-enqueue" in sink_ids(*sinks), 30, what="enqueued event")
                assert p1.stop() == 0 and p2.stop() == 0
            assert ing.stop() == 0


def test_kill9_processor_loses_nothing():
    with NatsServer() as ns:
        sinks = [os.path.join(ns.dir, "sink-%d.ndjson" % k) for k in range(2)]
        with Eventpipe("ingest", env=nats_env(ns, "/dev/null")) as ing:
            wait_for(lambda: request(ing.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            # The operator's durable, with a short AckWait so the test sees redeliveries soon.
            c = NatsClient(ns.port)
            c.add_consumer("processor", ack_wait_s=2)
            c.close()
            load = Load(ing.ingest, path="/ingest", threads=4, prefix="k9").start()
            with Eventpipe("processor", env=nats_env(ns, sinks[0])) as p1:
                wait_for(lambda: len(sink_ids(sinks[0])) > 200, 30, what="events flowing")
                p1.proc.kill()  # kill -9 mid-stream
                p1.proc.wait()
            time.sleep(0.3)
            with Eventpipe("processor", env=nats_env(ns, sinks[1])) as p2:
                time.sleep(0.5)
                load.stop()
                ok = set(load.ok_ids)
                assert len(ok) > 200, load.statuses
                wait_for(lambda: set(sink_ids(*sinks)) >= ok, 30,
                         what="every acknowledged event processed")
                print("  nats kill -9: %d acknowledged, %d distinct processed, %d lines "
                      "(redeliveries)" % (len(ok), len(set(sink_ids(*sinks))),
                                          len(sink_ids(*sinks))))
                assert p2.stop() == 0
            assert ing.stop() == 0


def test_packed_messages_kill9_and_sigterm_lose_nothing():
    """NATS_BATCH_EVENTS=100: batches of 100 go into one message each. kill -9 of a
    processor holding parts of messages, and SIGTERM of the next: every acknowledged
    event is processed, and the duplicates stay within the messages the killed one held."""
    with NatsServer() as ns:
        sinks = [os.path.join(ns.dir, "sink-%d.ndjson" % k) for k in range(3)]
        packed = {"NATS_BATCH_EVENTS": "100"}
        with Eventpipe("ingest", env=nats_env(ns, "/dev/null", **packed)) as ing:
            wait_for(lambda: request(ing.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            c = NatsClient(ns.port)
            # AckWait 20 s: longer than any message waits in a processor on a busy machine
            # (with 5 s, messages still being processed came back: more duplicates than held).
            c.add_consumer("processor", ack_wait_s=20)
            load = Load(ing.ingest, path="/events/batch", threads=2, prefix="pk",
                        batch=100).start()
            with Eventpipe("processor", env=nats_env(ns, sinks[0])) as p1:
                wait_for(lambda: len(sink_ids(sinks[0])) > 2000, 30, what="events flowing")
                p1.proc.kill()  # kill -9, with messages partly processed
                p1.proc.wait()
            # Everything the killed one held: its ack-pending messages, 100 events each,
            # counted once the pull requests it left on the server (at most 1 s) are over:
            # the server may still deliver to them, and those come back too.
            time.sleep(2)
            held = c.js_api("CONSUMER.INFO.DIPLOM_STREAM.processor")["num_ack_pending"]
            with Eventpipe("processor", env=nats_env(ns, sinks[1])) as p2:
                wait_for(lambda: len(sink_ids(sinks[1])) > 2000, 30, what="p2 processing")
                assert p2.stop() == 0  # SIGTERM mid-load: it finishes what it holds
            # Packed messages it had handed out in part when it stopped come back whole.
            m = re.findall(r"events of (\d+) packed messages were not handed out", p2.log_text())
            held2 = sum(int(x) for x in m)
            with Eventpipe("processor", env=nats_env(ns, sinks[2])) as p3:
                time.sleep(0.5)
                load.stop()
                ok = set(load.ok_ids)
                assert len(ok) > 4000, load.statuses
                wait_for(lambda: set(sink_ids(*sinks)) >= ok, 60,
                         what="every acknowledged event processed")
                got = sink_ids(*sinks)
                assert all(g.startswith("pk-") for g in got), got[:5]
                dups = len(got) - len(set(got))
                print("  packed kill -9 + SIGTERM: %d acknowledged in %s, %d processed, %d "
                      "duplicates (the killed processor held %d messages, the stopped one "
                      "left %d in part)" % (len(ok), load.statuses, len(set(got)), dups, held, held2))
                assert dups <= (held + held2) * 100, (dups, held, held2)
                st = get_json(p3.processor, "/stats")
                assert st["queue"]["nats"]["poison"] == 0, st
                assert p3.stop() == 0
            c.close()
            assert ing.stop() == 0


def test_nats_down_503_then_recovers():
    with NatsServer() as ns:
        sink = os.path.join(ns.dir, "sink.ndjson")
        with Eventpipe("run", env=nats_env(ns, sink)) as ep:
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            ok, _ = send_events(ep.ingest, ["before-%d" % i for i in range(20)])
            assert len(ok) == 20
            ns.stop()
            r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(
                request(ep.ingest, "POST", "/ingest", {"source": "e2e", "data": "x"})), 30,
                what="503 while NATS is down")
            assert "error" in r.json(), r
            assert r.headers.get("content-type", "").startswith("application/json")
            rd = request(ep.ingest, "GET", "/ready")
            assert rd.status == 503 and "NATS" in rd.json()["error"], rd
            ns.start()
            wait_for(lambda: request(ep.ingest, "POST", "/ingest",
                                     {"id": "after-0", "source": "e2e", "data": "x"}).status
                     == 202, 30, what="202 after NATS came back")
            ok.append("after-0")
            got, statuses = send_events(ep.ingest, ["after-%d" % i for i in range(1, 20)])
            assert statuses == {202: 19}, statuses
            ok += got
            assert request(ep.ingest, "GET", "/ready").status == 200
            wait_for(lambda: set(sink_ids(sink)) >= set(ok), 30, what="all processed")
            assert ep.stop() == 0


def test_nats_url_list_ready_and_fails_over():
    """NATS_URL as a list (issue 20): a dead server first or last in it does not
    matter; when the server in use stops, the next one of the list takes over
    (the stream and the durable are created there) and /ready is 200 again."""
    dead = "nats://127.0.0.1:%d" % free_port()
    with NatsServer() as a, NatsServer() as b:
        sink = os.path.join(a.dir, "sink.ndjson")
        for n, url in enumerate(["%s,%s" % (dead, a.url), "%s, %s" % (a.url, dead)]):
            with Eventpipe("run", env=nats_env(a, sink, NATS_URL=url)) as ep:
                wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, 30,
                         what="ingest ready with NATS_URL=%s" % url)
                ids = ["list%d-%d" % (n, i) for i in range(20)]
                ok, statuses = send_events(ep.ingest, ids)
                assert statuses == {202: 20}, statuses
                wait_for(lambda: set(sink_ids(sink)) >= set(ids), 30, what="list processed")
                assert get_json(ep.processor, "/stats")["queue"]["nats"]["server"] == a.url
                assert ep.stop() == 0
        with Eventpipe("run", env=nats_env(a, sink, NATS_URL="%s,%s" % (a.url, b.url))) as ep:
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            a.stop()
            wait_for(lambda: get_json(ep.processor, "/stats")["queue"]["nats"]["server"]
                     == b.url, 30, what="moved to the second server")
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, 30,
                     what="ready on the second server")
            ids = ["over-%d" % i for i in range(20)]
            ok, statuses = send_events(ep.ingest, ids)
            assert statuses == {202: 20}, statuses
            wait_for(lambda: set(sink_ids(sink)) >= set(ids), 30, what="processed after failover")
            c = NatsClient(b.port)
            assert c.subject_count("diplom.messages") == 20
            c.close()
            assert ep.stop() == 0


def test_poison_message_ends_in_dlq():
    with NatsServer() as ns:
        sink = os.path.join(ns.dir, "sink.ndjson")
        with Eventpipe("run", env=nats_env(ns, sink)) as ep:
            wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, 30,
                     what="ingest ready")
            c = NatsClient(ns.port)
            c.publish("diplom.messages", b"\xff\x00 garbage, not a DataMessage")
            c.flush()
            ok, _ = send_events(ep.ingest, ["p-%d" % i for i in range(10)])
            wait_for(lambda: set(sink_ids(sink)) >= set(ok), 30, what="valid events processed")
            wait_for(lambda: c.subject_count("diplom.dlq") == 1, 30, what="poison in diplom.dlq")
            (headers, data), = c.read_stream("diplom.dlq")
            assert data == b"\xff\x00 garbage, not a DataMessage"
            assert "undecodable" in headers.get("Ep-Dlq-Reason", ""), headers
            time.sleep(0.5)
            assert c.subject_count("diplom.dlq") == 1  # once, not in a loop
            assert len(sink_ids(sink)) == 10
            st = get_json(ep.processor, "/stats")
            assert st["queue"]["nats"]["poison"] == 1, st
            c.close()
            assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
