"""Kafka cluster faults (issue 18): `eventpipe ingest` and several `eventpipe
processor` processes over tests/tools/ep_kafka_mock with 3 brokers and a topic
of 6 partitions, 3 replicas each, leaders spread over the brokers (partition P
led by broker P % 3 + 1), KAFKA_BROKERS naming all three, while a load
generator posts events with unique ids and records which ids got a 2xx.

  (a) the topic as eventpipe sees it; /ready 503 with every broker down, 200 again
  (b) a leader broker down, its leadership moved (as a controller would), back;
      a client started meanwhile with the dead broker first in KAFKA_BROKERS
  (c) a leader broker down with no new leader, back
  (d) kill -9 a processor      (e) a processor added      (f) SIGTERM a processor
  (g) commits the broker refused are sent again

After each, from every processor's NDJSON sink: every acknowledged id was
processed, nothing was processed that was never sent, and the duplicates
(copies beyond the first) stay within the bound each test states. A new owner
of a partition reads it from the offset the broker holds, so what can be
processed twice is what the old owner had handed out past that offset when the
partition moved. Each processor reports that number at every revocation
(log "revoked ... N in flight", /stats revoked_in_flight); for a processor
killed with -9 it is its sink count minus the offsets it had committed.

What librdkafka 2.0.2's mock cluster cannot show: it keeps ONE log per
partition whatever the leader, so "replicas" are metadata only (no copying,
no ISR shrinking, no unclean election, acks=all waits for nobody); it moves
no leadership when a broker goes down (the test does); it ignores the
replication factor it is given (always min(brokers, 3)); it has no
controller, so eventpipe's CreateTopics (KAFKA_PARTITIONS,
KAFKA_REPLICATION_FACTOR) cannot run against it; and it refuses every offset
commit while the group rebalances, also the one a member makes when its
partitions are revoked (a Kafka broker takes that one), so on the mock a
rebalance re-processes everything since the last commit it accepted: (e) and
(f) show hundreds to thousands of duplicates, all accounted for.
"""

import http.client
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time

import eptest
from eptest import Eventpipe, get_json, ready, request, wait_for
from ep_kafka import MockKafka, mock_path

TOPIC = "cluster-events"
DLQ = "cluster-events-dlq"
PARTS = 6
BROKERS = 3
GROUP = "cluster-group"
# SHUTDOWN_TIMEOUT (10 s) for the drain, then leaving the group (up to the session
# timeout while it rebalances), on a machine that may be busy.
STOP_WAIT = 60


def kafka_env(mock, sink=None, **extra):
    env = {
        "QUEUE_TYPE": "kafka",
        "KAFKA_BROKERS": mock.bootstraps,  # all three: the client fails over between them
        "KAFKA_TOPIC": TOPIC,
        "KAFKA_DLQ_TOPIC": DLQ,
        "KAFKA_CONSUMER_GROUP": GROUP,
        "KAFKA_PARTITIONS": str(PARTS),
        "KAFKA_REPLICATION_FACTOR": "3",
        # librdkafka passthrough: a short session, so the group notices a dead member in seconds.
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "SHUTDOWN_TIMEOUT": "10",
    }
    if sink:
        env["PROCESSOR_SINK"] = "file:" + sink
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_mock():
    return MockKafka(brokers=BROKERS, topics={TOPIC: PARTS, DLQ: 1})


def leaders(mock, topic=TOPIC):
    """{partition: leader broker id} from the mock's metadata."""
    out = {}
    for item in mock.command("leaders " + topic).split():
        p, leader = (int(x) for x in item.split(":")[:2])
        out[p] = leader
    return out


def stats(port):
    return get_json(port, "/stats")["queue"]["kafka"]


class LoadGen:
    """`threads` keep-alive connections posting one event per request, each thread with
    its own client id prefix; records every id it sent and the ids answered 2xx. A
    request that timed out or failed counts as sent, not acknowledged (it may have been
    kept: it may be processed, it need not be)."""

    def __init__(self, port, prefix, threads=4, pause=0.002):
        self.port, self.prefix, self.pause = port, prefix, pause
        self.sent, self.acked = set(), set()
        self.statuses = {}
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, k):
        conn, i = None, 0
        while not self.stop_flag.is_set():
            eid = "%s-c%d-%d" % (self.prefix, k, i)
            i += 1
            body = json.dumps({"id": eid, "source": "cluster-%d" % k, "data": "x",
                               "user_id": "u-%d" % (i % 97)})
            with self.lock:
                self.sent.add(eid)
            status = None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("POST", "/ingest", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = "error"
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if isinstance(status, int) and 200 <= status < 300:
                    self.acked.add(eid)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def n_acked(self):
        with self.lock:
            return len(self.acked)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=90)


def sink_ids_of(path):
    """Ids in one NDJSON sink file. A processor killed with -9 may leave its last line
    torn: that event was not acknowledged to the queue, so its next owner writes it
    whole; the torn line is skipped."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    ids = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ids.append(json.loads(line)["id"])
        except ValueError:
            if k != len(lines) - 1:
                raise
    return ids


def sink_lines(*paths):
    ids = []
    for p in paths:
        ids.extend(sink_ids_of(p))
    return ids


def check(load, sinks, dup_bound, what=""):
    """Every acked id processed, nothing extra, duplicates <= dup_bound (a callable, read
    once everything is processed). Returns the number of duplicates."""
    wait_for(lambda: set(sink_lines(*sinks)) >= load.acked, timeout=120, interval=0.5,
             what="%s: every acknowledged id processed" % what)
    time.sleep(1.0)  # anything still in flight lands now, so the duplicate count is final
    if callable(dup_bound):
        dup_bound = dup_bound()
    lines = sink_lines(*sinks)
    distinct = set(lines)
    extra = distinct - load.sent
    assert not extra, "%s: processed but never sent: %r" % (what, sorted(extra)[:5])
    dups = len(lines) - len(distinct)
    seen, dup_ids = set(), set()
    for i in lines:
        if i in seen:
            dup_ids.add(i)
        seen.add(i)
    print("  %s: sent %d, acked %d, processed %d distinct, %d duplicates (bound %d); "
          "statuses %r" % (what, len(load.sent), len(load.acked), len(distinct), dups,
                           dup_bound, load.statuses), flush=True)
    assert dups <= dup_bound, (what, dups, dup_bound, sorted(dup_ids)[:10])
    return dups


def settled(procs, n_parts=PARTS):
    """Every processor owns partitions and together they own all of them."""
    def cond():
        counts = [stats(p.processor)["assigned_partitions"] for p in procs]
        return all(c > 0 for c in counts) and sum(counts) == n_parts
    return cond


def committed_total(port):
    """Sum of the committed offsets of the partitions this processor owns (from /lag)."""
    body = get_json(port, "/lag")
    return sum(p["committed"] for p in body["partitions"])


def revoked_in_flight(*procs):
    """Records the processors had handed out past the commit point of partitions taken
    from them (their "revoked ... in flight" log lines, so also from one that has exited):
    the new owners read exactly those again, so they bound a rebalance's duplicates."""
    total = 0
    for p in procs:
        for m in re.finditer(r"revoked \d+ partition\(s\) of \S+(?: \(lost\))?; (\d+) in flight",
                             p.log_text()):
            total += int(m.group(1))
    return total


def tmpdir():
    return tempfile.mkdtemp(prefix="ep-kcluster-")


# --------------------------------------------------------------------------- tests


def test_a_topic_view_and_readiness_follow_the_brokers():
    """The topic as eventpipe sees it (6 partitions, 3 replicas, leaders on all three
    brokers); a topic whose partition count differs from KAFKA_PARTITIONS is reported;
    /ready goes 503 when every broker is down and 200 when they are back, and events
    flow again."""
    with start_mock() as mock:
        lead = leaders(mock)
        assert sorted(lead) == list(range(PARTS)) and set(lead.values()) == {1, 2, 3}, lead
        d = tmpdir()
        sink = os.path.join(d, "p.ndjson")
        with Eventpipe("ingest", env=kafka_env(mock)) as ing, \
                Eventpipe("processor", env=kafka_env(mock, sink)) as p1, \
                Eventpipe("ingest", env=kafka_env(mock, KAFKA_PARTITIONS=4,
                                                  KAFKA_REPLICATION_FACTOR=0)) as other:
            st = stats(p1.processor)
            assert (st["topic_partitions"], st["topic_replicas"]) == (PARTS, 3), st
            other.wait_log("exists with 6 partitions, not KAFKA_PARTITIONS=4")
            assert "exists with" not in ing.log_text()
            wait_for(settled([p1]), timeout=60, what="partitions assigned")
            wait_for(lambda: ready(ing.ingest) and ready(p1.processor), timeout=30,
                     what="ready")
            load = LoadGen(ing.ingest, "a").start()
            try:
                wait_for(lambda: load.n_acked() >= 100, timeout=60, what="load flowing")
                mock.command("down -1")
                wait_for(lambda: not ready(ing.ingest), timeout=30,
                         what="ingest not ready with every broker down")
                wait_for(lambda: not ready(p1.processor), timeout=30,
                         what="processor not ready with every broker down")
                r = request(ing.ingest, "GET", "/ready")
                assert r.status == 503 and b"kafka" in r.body, (r.status, r.body)
                mock.command("up -1")
                wait_for(lambda: ready(ing.ingest) and ready(p1.processor), timeout=60,
                         what="ready again once the brokers are back")
                before = load.n_acked()
                wait_for(lambda: load.n_acked() >= before + 200, timeout=60,
                         what="events acknowledged again after the brokers came back")
            finally:
                load.stop()
            # Nothing processed twice: one processor, no rebalance, the coordinator came back.
            check(load, [sink], dup_bound=0, what="(a) all brokers down and up")
            for p in (p1, ing, other):
                assert p.stop(timeout=STOP_WAIT) == 0


def test_b_broker_down_leadership_moves_then_back():
    """A broker that leads partitions goes down mid-load; the test moves its partitions'
    leadership to the other two (the mock has no controller to do it), producers and
    consumers follow the metadata; the broker comes back and takes its partitions back.
    The group coordinator is pinned to broker 1 and the victim is broker 2, so the
    group does not rebalance: every partition keeps its consumer, so nothing is
    processed twice (bound 0); producer retries (idempotent) add no copies either."""
    with start_mock() as mock:
        mock.command("coordinator %s 1" % GROUP)
        d = tmpdir()
        s1, s2 = os.path.join(d, "p1.ndjson"), os.path.join(d, "p2.ndjson")
        with Eventpipe("ingest", env=kafka_env(mock)) as ing, \
                Eventpipe("processor", env=kafka_env(mock, s1)) as p1, \
                Eventpipe("processor", env=kafka_env(mock, s2)) as p2:
            wait_for(settled([p1, p2]), timeout=60, what="both processors own partitions")
            load = LoadGen(ing.ingest, "b").start()
            try:
                wait_for(lambda: load.n_acked() >= 300, timeout=60, what="load flowing")
                victim = 2
                moved = [p for p, b in leaders(mock).items() if b == victim]
                assert moved, "broker 2 leads no partition"
                mock.command("down %d" % victim)
                for k, p in enumerate(moved):
                    mock.command("leader %s %d %d" % (TOPIC, p, 1 if k % 2 == 0 else 3))
                assert victim not in leaders(mock).values()
                before = load.n_acked()
                wait_for(lambda: load.n_acked() >= before + 500, timeout=90,
                         what="events acknowledged with broker 2 down")
                # A client started now, with the dead broker first in KAFKA_BROKERS,
                # bootstraps from the next one and takes events.
                hosts = mock.bootstraps.split(",")
                late_env = kafka_env(mock, KAFKA_BROKERS=",".join(
                    [hosts[victim - 1]] + [h for h in hosts if h != hosts[victim - 1]]))
                with Eventpipe("ingest", env=late_env) as late:
                    wait_for(lambda: ready(late.ingest), timeout=60,
                             what="a new ingest ready with the first broker of its list down")
                    r = request(late.ingest, "POST", "/ingest",
                                {"id": "b-late-0", "source": "late", "data": "x"}, timeout=60)
                    assert 200 <= r.status < 300, (r.status, r.body)
                    with load.lock:
                        load.sent.add("b-late-0")
                        load.acked.add("b-late-0")
                    assert late.stop(timeout=STOP_WAIT) == 0
                mock.command("up %d" % victim)
                for p in moved:
                    mock.command("leader %s %d %d" % (TOPIC, p, victim))
                before = load.n_acked()
                wait_for(lambda: load.n_acked() >= before + 500, timeout=90,
                         what="events acknowledged after broker 2 came back as leader")
                wait_for(lambda: ready(ing.ingest), timeout=30, what="ingest ready")
            finally:
                load.stop()
            check(load, [s1, s2], dup_bound=0, what="(b) broker down, leaders moved, back")
            for p in (p1, p2, ing):
                assert p.stop(timeout=STOP_WAIT) == 0


def test_c_broker_down_without_new_leader_then_up():
    """A leader broker goes down and nobody takes its partitions (no controller): the
    records for those partitions time out (a 503: not acknowledged, nothing lost). The
    others still go through, but each load thread waits for a failing record's timeout
    (and the ingest circuit breaker may open after 5 failures in a row), so how many is
    printed, not asserted. When it comes back, its partitions are produced to and
    consumed again (nothing stuck). Coordinator pinned to broker 1, victim broker 3: no
    rebalance, duplicates bound 0."""
    with start_mock() as mock:
        mock.command("coordinator %s 1" % GROUP)
        d = tmpdir()
        s1, s2 = os.path.join(d, "p1.ndjson"), os.path.join(d, "p2.ndjson")
        with Eventpipe("ingest", env=kafka_env(mock)) as ing, \
                Eventpipe("processor", env=kafka_env(mock, s1)) as p1, \
                Eventpipe("processor", env=kafka_env(mock, s2)) as p2:
            wait_for(settled([p1, p2]), timeout=60, what="both processors own partitions")
            load = LoadGen(ing.ingest, "c").start()
            try:
                wait_for(lambda: load.n_acked() >= 300, timeout=60, what="load flowing")
                mock.command("down 3")
                before = load.n_acked()
                # Records for partitions 2 and 5 wait for message.timeout.ms and fail: 503.
                wait_for(lambda: load.statuses.get(503, 0) >= 8, timeout=90,
                         what="publishes to broker 3's partitions failing")
                during = load.n_acked() - before
                mock.command("up 3")
                t_up = load.n_acked()
                wait_for(lambda: load.n_acked() >= t_up + 500, timeout=90,
                         what="events acknowledged after broker 3 came back")
            finally:
                load.stop()
            print("  (c) acknowledged while broker 3 was down: %d" % during, flush=True)
            check(load, [s1, s2], dup_bound=0, what="(c) leader down, no new leader, up")
            # Broker 3's partitions flow again: the consumer lag drains to 0 on both.
            wait_for(lambda: get_json(p1.processor, "/lag")["total"] == 0 and
                     get_json(p2.processor, "/lag")["total"] == 0, timeout=60,
                     what="lag 0 on every partition after broker 3 returned")
            for p in (p1, p2, ing):
                assert p.stop(timeout=STOP_WAIT) == 0


def test_d_kill9_processor_mid_load():
    """kill -9 one of three processors mid-load. Bound: (1) the victim's uncommitted work:
    it owned its partitions from offset 0 with no rebalance before the kill, so at least
    the sum of its committed offsets (sampled just before the kill) of what it wrote to
    its sink was committed; the rest (sink count - that sum) can be processed again by
    the new owners; plus (2) what the survivors had in flight past their commit points
    when the eager rebalance took their partitions too (their "revoked" log lines)."""
    with start_mock() as mock:
        d = tmpdir()
        sinks = [os.path.join(d, "p%d.ndjson" % k) for k in range(3)]
        with Eventpipe("ingest", env=kafka_env(mock)) as ing, \
                Eventpipe("processor", env=kafka_env(mock, sinks[0])) as p0, \
                Eventpipe("processor", env=kafka_env(mock, sinks[1])) as p1, \
                Eventpipe("processor", env=kafka_env(mock, sinks[2])) as p2:
            wait_for(settled([p0, p1, p2]), timeout=60, what="three processors own partitions")
            load = LoadGen(ing.ingest, "d").start()
            try:
                wait_for(lambda: len(sink_ids_of(sinks[2])) >= 200, timeout=60,
                         what="the victim processing")
                committed = committed_total(p2.processor)
                p2.proc.send_signal(signal.SIGKILL)
                p2.proc.wait()
                victim_in_flight = len(sink_ids_of(sinks[2])) - committed
                wait_for(settled([p0, p1]), timeout=60,
                         what="the survivors take the victim's partitions")
                before = load.n_acked()
                wait_for(lambda: load.n_acked() >= before + 300, timeout=60,
                         what="load after the kill")
            finally:
                load.stop()
            assert victim_in_flight >= 0, victim_in_flight
            check(load, sinks, what="(d) kill -9 a processor",
                  dup_bound=lambda: victim_in_flight + revoked_in_flight(p0, p1))
            for p in (p0, p1, ing):
                assert p.stop(timeout=STOP_WAIT) == 0


def test_e_processor_added_mid_load():
    """A third processor joins mid-load: the group rebalances and it gets partitions and
    processes events. Bound: on revocation each old owner commits its acked prefix
    (synchronously); what it had handed out past that point (its "revoked ... in flight"
    log lines) is what the new owners read again."""
    with start_mock() as mock:
        d = tmpdir()
        sinks = [os.path.join(d, "p%d.ndjson" % k) for k in range(3)]
        with Eventpipe("ingest", env=kafka_env(mock)) as ing, \
                Eventpipe("processor", env=kafka_env(mock, sinks[0])) as p0, \
                Eventpipe("processor", env=kafka_env(mock, sinks[1])) as p1:
            wait_for(settled([p0, p1]), timeout=60, what="two processors own partitions")
            load = LoadGen(ing.ingest, "e").start()
            try:
                wait_for(lambda: load.n_acked() >= 300, timeout=60, what="load flowing")
                with Eventpipe("processor", env=kafka_env(mock, sinks[2])) as p2:
                    wait_for(settled([p0, p1, p2]), timeout=90,
                             what="the new processor owns partitions")
                    wait_for(lambda: len(sink_ids_of(sinks[2])) > 0, timeout=60,
                             what="the new processor processes events")
                    before = load.n_acked()
                    wait_for(lambda: load.n_acked() >= before + 300, timeout=60,
                             what="load after the rebalance")
                    load.stop()
                    check(load, sinks, what="(e) processor added",
                          dup_bound=lambda: revoked_in_flight(p0, p1, p2))
                    assert p2.stop(timeout=STOP_WAIT) == 0
            finally:
                load.stop()
            for p in (p0, p1, ing):
                assert p.stop(timeout=STOP_WAIT) == 0


def test_f_sigterm_processor_commits():
    """SIGTERM one of two processors mid-load: it exits 0 having committed what it
    processed, the other takes its partitions; then it is started again. Bound: what
    was in flight past a commit point when a partition changed hands: the stopped one
    finishes its events and commits them before leaving the group, so it is what it
    still held un-acked then, plus the survivor's in-flight at the two rebalances (all
    from the "revoked ... in flight" log lines)."""
    with start_mock() as mock:
        d = tmpdir()
        sinks = [os.path.join(d, "p%d.ndjson" % k) for k in range(3)]
        with Eventpipe("ingest", env=kafka_env(mock)) as ing, \
                Eventpipe("processor", env=kafka_env(mock, sinks[0])) as p0:
            p1 = Eventpipe("processor", env=kafka_env(mock, sinks[1]))
            load = None
            try:
                wait_for(settled([p0, p1]), timeout=60, what="two processors own partitions")
                load = LoadGen(ing.ingest, "f").start()
                wait_for(lambda: len(sink_ids_of(sinks[1])) >= 200, timeout=60,
                         what="the victim processing")
                assert p1.stop(sig=signal.SIGTERM, timeout=STOP_WAIT) == 0
                # It finished what it held and the broker took its last commit: leaving the
                # group it handed nothing past the broker's commit point to the next owner.
                assert "revoked" in p1.log_text() and revoked_in_flight(p1) == 0, [
                    line for line in p1.log_text().splitlines() if "commit" in line][-6:]
                wait_for(settled([p0]), timeout=60, what="the survivor owns every partition")
                with Eventpipe("processor", env=kafka_env(mock, sinks[2])) as p2:
                    wait_for(settled([p0, p2]), timeout=90, what="the restart owns partitions")
                    before = load.n_acked()
                    wait_for(lambda: load.n_acked() >= before + 300, timeout=60,
                             what="load after the restart")
                    load.stop()
                    check(load, sinks, what="(f) SIGTERM a processor",
                          dup_bound=lambda: revoked_in_flight(p0, p1, p2))
                    assert p2.stop(timeout=STOP_WAIT) == 0
            finally:
                if load:
                    load.stop()
                p1.__exit__(None, None, None)
            for p in (p0, ing):
                assert p.stop(timeout=STOP_WAIT) == 0


OFFSET_COMMIT = 8               # Kafka API key
# An error librdkafka hands to the commit callback without retrying it or rejoining the
# group (REBALANCE_IN_PROGRESS would make the member rejoin: a rebalance, not a refusal).
INVALID_COMMIT_OFFSET_SIZE = 28


def all_committed(port, n_events):
    """Every partition assigned and committed up to its end, the ends summing to n_events."""
    parts = get_json(port, "/lag")["partitions"]
    return (len(parts) == PARTS and sum(p["high_watermark"] for p in parts) == n_events and
            all(p["committed"] == p["high_watermark"] for p in parts))


def test_g_failed_commits_are_sent_again():
    """The broker refuses the commits that follow the last events of a burst (the mock
    answers the next 20 OffsetCommit requests with INVALID_COMMIT_OFFSET_SIZE); then nothing
    new arrives to move the commit points. The refused offsets must still reach the
    broker: the lag drains to 0, and a processor that takes over after a kill -9 (no
    commit at exit) processes nothing again."""
    with start_mock() as mock:
        d = tmpdir()
        s1, s2 = os.path.join(d, "p1.ndjson"), os.path.join(d, "p2.ndjson")
        with Eventpipe("ingest", env=kafka_env(mock)) as ing:
            with Eventpipe("processor", env=kafka_env(mock, s1)) as p1:
                wait_for(settled([p1]), timeout=60, what="partitions assigned")
                load = LoadGen(ing.ingest, "g").start()
                try:
                    wait_for(lambda: load.n_acked() >= 200, timeout=60, what="load flowing")
                    mock.command("errors %d 20 %d" % (OFFSET_COMMIT, INVALID_COMMIT_OFFSET_SIZE))
                finally:
                    load.stop()
                wait_for(lambda: set(sink_lines(s1)) >= load.acked, timeout=60,
                         what="processed")
                wait_for(lambda: "offset commit failed" in p1.log_text(), timeout=30,
                         what="commits refused")
                wait_for(lambda: all_committed(p1.processor, len(load.sent)), timeout=60,
                         what="every processed offset committed after the refusals")
                p1.proc.send_signal(signal.SIGKILL)
                p1.proc.wait()
            with Eventpipe("processor", env=kafka_env(mock, s2)) as p2:
                wait_for(settled([p2]), timeout=60, what="the new processor owns the topic")
                time.sleep(2)
                check(load, [s1, s2], dup_bound=0, what="(g) refused commits sent again")
                assert p2.stop(timeout=STOP_WAIT) == 0
            assert ing.stop(timeout=STOP_WAIT) == 0


if __name__ == "__main__":
    if mock_path() is None:
        print("ep_kafka_mock not built (EP_WITH_KAFKA off): skipped")
        print("0 passed, 0 failed")
        sys.exit(0)
    eptest.main(globals())
