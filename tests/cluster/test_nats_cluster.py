"""Faults on a 3-node NATS JetStream cluster (issue 18): ingest and several
processors as separate `eventpipe` processes on NATS_URL=<all three nodes>
(each process's list starting at another node), NATS_STREAM_REPLICAS=3, a
load generator posting batches and single events with unique client ids and
retrying what was not acknowledged. Each test injects one fault mid-load and
then checks, from the processors' file sinks:

- every id that got a 2xx was processed (at least once);
- nothing was processed that was not sent;
- duplicates (sink lines beyond one per id) stay within what was in flight
  when the fault hit (the bound of each test is stated where it is asserted).

A processor that must be caught holding events (kill -9, SIGTERM) writes to a
named pipe that the test stops reading: its worker then blocks inside the sink
write with a consumed, unacknowledged batch, and /stats queue.in_flight says
how many events it holds.

Every wait is on a real condition with a generous limit (the machine may be
busy); no assertion is about speed."""

import fcntl
import http.client
import json
import os
import select
import struct
import termios
import shutil
import signal
import tempfile
import threading
import time

from ep_nats import NatsCluster
from eptest import Eventpipe, get_json, main, read_sink, ready, request, wait_for

WORKERS, BATCH = 4, 64  # PROCESSOR_WORKERS, PROCESSOR_BATCH of every processor here
IN_FLIGHT = WORKERS * BATCH  # most events one processor holds between consume and ack


def env_for(cluster, sink="/dev/null", first=0, **extra):
    """A process's settings; its NATS_URL lists every node, starting at node `first`
    (eventpipe keeps the list's order, so rotating it spreads the processes)."""
    urls = [cluster.url((first + k) % cluster.size) for k in range(cluster.size)]
    env = {"QUEUE_TYPE": "nats", "NATS_URL": ",".join(urls), "NATS_STREAM_REPLICAS": "3",
           "PROCESSOR_SINK": "file:" + sink, "PROCESSOR_WORKERS": str(WORKERS),
           "PROCESSOR_BATCH": str(BATCH), "LOG_LEVEL": "info"}
    env.update(extra)
    return env


class Loader:
    """Client threads posting to the ingests until stopped: batches of `batch`
    events to /events/batch (and, on thread 0, single events to /ingest), each
    with a unique client id. An event that is not acknowledged (a per-event
    error, a 5xx, a broken connection) is sent again with the same id until it
    is; `sent` holds every id ever posted, `acked` those answered 2xx."""

    def __init__(self, ports, threads=3, batch=20, rate=15, prefix="ld"):
        self.ports, self.batch, self.prefix = ports, batch, prefix
        self.period = 1.0 / rate  # per thread: at most `rate` requests a second
        self.sent, self.acked = set(), set()
        self.acked_by_port = {p: 0 for p in ports}
        self.retries = 0  # ids posted again after a failure
        self.maybe_kept = 0  # of them, failures that may have been stored (a retry may duplicate)
        self.statuses = {}
        self.lock = threading.Lock()
        self.stop_new = threading.Event()
        self.give_up = threading.Event()
        self.left = []  # ids still unacknowledged when the threads gave up
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def wait_acked(self, n, timeout=60):
        wait_for(lambda: len(self.acked) >= n, timeout, what="%d events acknowledged" % n)

    def _post(self, conn, port, ids, single):
        """Returns (acked ids, failed ids, failures that may have been kept)."""
        if single:
            eid = ids[0]
            r = request(port, "POST", "/ingest", {"id": eid, "source": "cl", "data": "x"},
                        conn=conn, timeout=30)
            self._count(r.status)
            if 200 <= r.status < 300:
                return [eid], [], 0
            return [], [eid], int(r.status >= 500)
        body = json.dumps([{"id": e, "source": "cl", "data": "x"} for e in ids])
        r = request(port, "POST", "/events/batch", body,
                    headers={"Content-Type": "application/json"}, conn=conn, timeout=30)
        self._count(r.status)
        try:
            results = r.json()["results"]
        except (ValueError, KeyError, TypeError):
            return [], list(ids), len(ids) if r.status >= 500 else 0
        ok, bad, maybe = [], [], 0
        for res in results:
            eid = ids[res["index"]]
            if "messageId" in res:
                assert res["messageId"] == eid, res
                ok.append(eid)
            else:
                assert res.get("retry") is True, res  # nothing here is invalid input
                bad.append(eid)
                maybe += bool(res.get("maybe_kept"))
        assert len(ok) + len(bad) == len(ids), (r, ids)
        return ok, bad, maybe

    def _count(self, status):
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def _run(self, k):
        port = self.ports[k % len(self.ports)]
        conn, seq, pending = None, 0, []
        single = k == 0
        want = 1 if single else self.batch
        while not self.give_up.is_set():
            t0 = time.time()
            if not self.stop_new.is_set():
                while len(pending) < want:
                    pending.append("%s-%d-%d" % (self.prefix, k, seq))
                    seq += 1
            if not pending:
                break
            ids, pending = pending[:want], pending[want:]
            with self.lock:
                self.sent.update(ids)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok, bad, maybe = self._post(conn, port, ids, single)
            except (OSError, http.client.HTTPException):
                # No answer: any of them may have been stored.
                if conn is not None:
                    conn.close()
                conn = None
                ok, bad, maybe = [], ids, len(ids)
            with self.lock:
                self.acked.update(ok)
                self.acked_by_port[port] += len(ok)
                self.retries += len(bad)
                self.maybe_kept += maybe
            pending = bad + pending
            pause = self.period - (time.time() - t0)
            if bad:
                pause = max(pause, 0.1)  # a 503 asks for a pause; tests need no Retry-After wait
            if pause > 0:
                time.sleep(pause)
        with self.lock:
            self.left += pending
        if conn is not None:
            conn.close()

    def finish(self, timeout=60):
        """Stops new ids and keeps retrying the unacknowledged ones until all are acknowledged
        (or timeout: then they are listed in left)."""
        self.stop_new.set()
        deadline = time.time() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.time()))
        self.give_up.set()
        for t in self.threads:
            t.join(35)
        return self


def sink_lines(paths):
    """The ids of every complete line of the sink files (a processor killed in the middle of a
    write may leave a last line without its newline: not processed)."""
    ids = []
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p, "rb") as f:
            data = f.read()
        ids += [json.loads(line)["id"] for line in data.split(b"\n")[:-1] if line.strip()]
    return ids


class FifoSink:
    """A named pipe as a processor's file sink, read by a thread that copies it to `path`.
    pause() stops the reading: once the pipe is full the processor's worker blocks in its
    sink write holding a consumed, unacknowledged batch, which is what kill -9 should
    find in flight."""

    def __init__(self, fifo, path):
        self.fifo, self.path = fifo, path
        os.mkfifo(fifo)
        # The read end first (non-blocking open), so the processor's open for writing returns.
        self.fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.out = open(path, "wb")
        self.paused = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            if self.paused.is_set():
                time.sleep(0.02)
                continue
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            data = os.read(self.fd, 65536)
            if not data:  # no writer (yet, or any more)
                time.sleep(0.02)
                continue
            self.out.write(data)
            self.out.flush()

    def buffered(self):
        """Bytes written into the pipe and not read yet."""
        return struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]

    def capacity(self):
        return fcntl.fcntl(self.fd, 1032)  # F_GETPIPE_SZ

    def full(self):
        """The pipe is nearly full and nothing more came in for a second."""
        n = self.buffered()
        if n < self.capacity() - 16384:
            return False
        time.sleep(1)
        return self.buffered() == n

    def pause(self):
        self.paused.set()

    def resume(self):
        self.paused.clear()

    def close(self):
        self.done.set()
        self.thread.join(5)
        os.close(self.fd)
        self.out.close()


def consumer_info(cluster, durable="processor"):
    return cluster.js_api("CONSUMER.INFO.DIPLOM_STREAM." + durable)


def settled(cluster):
    """The durable has nothing pending and nothing unacknowledged."""
    ci = consumer_info(cluster)
    return ci.get("num_pending") == 0 and ci.get("num_ack_pending") == 0


def verify(cluster, load, sinks, dup_bound, why, also_sent=(), timeout=120):
    """Every acknowledged id processed, nothing unknown processed (sent: load's ids and
    also_sent), duplicates within dup_bound (why says where it comes from)."""
    assert not load.left, "ids never acknowledged after retries: %d (%r)" % (
        len(load.left), load.left[:5])
    assert load.acked == load.sent, "sent but not acknowledged: %r" % sorted(
        load.sent - load.acked)[:5]
    wait_for(lambda: load.acked <= set(sink_lines(sinks)), timeout, interval=0.5,
             what="every acknowledged id processed (%d)" % len(load.acked))
    # Redeliveries (the duplicates) may still be under way: wait until the durable is empty.
    wait_for(lambda: settled(cluster), timeout, interval=0.5, what="consumer settled")
    lines = sink_lines(sinks)
    distinct = set(lines)
    unknown = distinct - load.sent - set(also_sent)
    assert not unknown, "processed but never sent: %r" % sorted(unknown)[:5]
    dups = len(lines) - len(distinct)
    print("  %d sent, %d acknowledged, %d retried (%d maybe kept), %d sink lines, %d distinct, "
          "%d duplicates (bound %d: %s); statuses %r" %
          (len(load.sent), len(load.acked), load.retries, load.maybe_kept, len(lines),
           len(distinct), dups, dup_bound, why, load.statuses), flush=True)
    assert dups <= dup_bound, "%d duplicates > %d (%s)" % (dups, dup_bound, why)
    return lines, distinct


def make_durable(cluster, ack_wait_s):
    """The processors' durable, made here with a short AckWait so a test sees a dead
    processor's events redelivered within seconds (eventpipe's own durable waits 30 s);
    otherwise as eventpipe makes it, R3. eventpipe binds to an existing durable as it is."""
    cfg = {"durable_name": "processor", "ack_policy": "explicit", "deliver_policy": "all",
           "filter_subject": "diplom.messages", "ack_wait": int(ack_wait_s * 1e9),
           "max_deliver": -1, "max_ack_pending": 20000, "num_replicas": 3}
    r = cluster.js_api("CONSUMER.DURABLE.CREATE.DIPLOM_STREAM.processor",
                       {"stream_name": "DIPLOM_STREAM", "config": cfg})
    assert "error" not in r, r


class Rig:
    """A cluster, one or two ingests (the first creates the R3 stream), processors added
    with add_processor(); everything stopped and removed by close()."""

    def __init__(self, ingests=1, ack_wait_s=None):
        self.dir = tempfile.mkdtemp(prefix="ep-ncl-")
        self.procs, self.sinks, self.ingests = [], [], []
        self.fifo = None
        self.started = 0  # processes started: the next one's NATS_URL starts at node started % 3
        self.cluster = NatsCluster()
        try:
            for _ in range(ingests):
                ing = Eventpipe("ingest", env=env_for(self.cluster, first=self._next()))
                self.ingests.append(ing)
                wait_for(lambda: ready(ing.ingest), 60, what="ingest ready")
            if ack_wait_s is not None:
                make_durable(self.cluster, ack_wait_s)
        except BaseException:
            self.close(failed=True)
            raise

    def _next(self):
        self.started += 1
        return (self.started - 1) % self.cluster.size

    def add_processor(self, fifo=False, **extra):
        """A processor with its own file sink (with fifo, a FifoSink in front of it)."""
        sink = os.path.join(self.dir, "sink-%d.ndjson" % len(self.sinks))
        target = sink
        if fifo:
            self.fifo = FifoSink(sink + ".fifo", sink)
            target = self.fifo.fifo
        p = Eventpipe("processor", env=env_for(self.cluster, target, first=self._next(), **extra))
        self.procs.append(p)
        self.sinks.append(sink)
        wait_for(lambda: ready(p.processor), 60, what="processor ready")
        return p

    def loader(self, **kw):
        return Loader([i.ingest for i in self.ingests], **kw).start()

    def close(self, failed=False):
        for e in self.procs + self.ingests:
            try:
                e.__exit__(*((AssertionError, None, None) if failed else (None, None, None)))
            except Exception:  # noqa: BLE001 - keep cleaning up
                pass
        if self.fifo is not None:
            self.fifo.close()
        self.cluster.__exit__(*((AssertionError, None, None) if failed else (None, None, None)))
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(failed=exc[0] is not None)
        return False


def processed(p):
    return get_json(p.processor, "/stats")["pool"]["processed"]


def test_r3_stream_and_add_processor_mid_load():
    """eventpipe creates an R3 stream and an R3 durable on the cluster; a processor started
    mid-load pulls work too; no duplicates (nobody died, AckWait 30 s never expires)."""
    with Rig(ingests=2) as rig:
        rig.add_processor()
        rig.add_processor()
        si = rig.cluster.stream_info()
        assert si["config"]["num_replicas"] == 3, si["config"]
        assert si["cluster"]["name"] == NatsCluster.NAME and si["cluster"].get("leader"), si
        assert len(si["cluster"]["replicas"]) == 2, si["cluster"]  # the two followers
        ci = wait_for(lambda: (lambda c: c if (c.get("cluster") or {}).get("leader") else None)(
            consumer_info(rig.cluster)), 30, what="the durable's leader")
        assert ci["config"].get("num_replicas") == 3, ci["config"]
        assert len(ci["cluster"]["replicas"]) == 2, ci["cluster"]
        assert ci["config"]["ack_wait"] == 30 * 10**9, ci["config"]  # eventpipe's own durable
        load = rig.loader(prefix="add")
        load.wait_acked(1500)
        late = rig.add_processor()
        wait_for(lambda: processed(late) > 0, 60, what="the added processor processed events")
        n = len(load.acked)
        load.wait_acked(n + 1500)
        load.finish()
        verify(rig.cluster, load, rig.sinks, 0, "no process died")
        assert processed(late) > 0 and read_sink(rig.sinks[-1]), "the late processor got nothing"
        print("  per processor: %r" % [len(read_sink(s)) for s in rig.sinks])
        for e in rig.procs + rig.ingests:
            assert e.stop() == 0


def test_kill9_processor_mid_load():
    """kill -9 of one of three processors while it holds a consumed batch: its
    unacknowledged events come back to the others after the durable's AckWait (10 s here).
    The victim writes to a named pipe that the test stops reading, so it is caught inside
    its sink write with a batch in hand (one worker: one batch)."""
    with Rig(ingests=1, ack_wait_s=10) as rig:
        rig.add_processor()
        victim = rig.add_processor(fifo=True, PROCESSOR_WORKERS="1")
        rig.add_processor()
        load = rig.loader(prefix="k9p")
        wait_for(lambda: len(sink_lines([rig.sinks[1]])) > 200, 60, what="victim processing")
        rig.fifo.pause()
        # A full pipe (the kernel counts it in pages: full is a little under its size, and
        # then stays put): the victim's write blocks mid-batch.
        wait_for(lambda: rig.fifo.full(), 60,
                 what="victim's pipe full (%d bytes)" % rig.fifo.capacity())
        # Blocked: what it consumed and has not acked is fixed now.
        held = get_json(victim.processor, "/stats")["queue"]["in_flight"]
        assert 0 < held <= BATCH, held
        victim.proc.kill()
        victim.proc.wait()
        rig.fifo.resume()  # what it wrote before dying is in the pipe: processed, maybe unacked
        n = len(load.acked)
        load.wait_acked(n + 1500)
        load.finish()
        # A duplicate is an event the victim wrote (part of its blocked batch) but had not
        # acked: the `held` events it had consumed and not acked when killed (one worker: at
        # most one PROCESSOR_BATCH). Nothing else died, and AckWait (10 s) does not expire on
        # the live processors, which ack within milliseconds.
        verify(rig.cluster, load, rig.sinks, held,
               "the killed processor's consumed, unacked events when killed")
        print("  victim held %d events when killed; its sink: %d complete lines" %
              (held, len(sink_lines([rig.sinks[1]]))))
        for e in [rig.procs[0], rig.procs[2]] + rig.ingests:
            assert e.stop() == 0


def test_kill9_stream_leader_node_and_restart():
    """kill -9 of the NATS node leading the stream mid-load, restarted later on the same
    ports and store: ingest answers 503 for what it could not store, the clients retry,
    and processors and ingests fail over to the other nodes."""
    with Rig(ingests=2, ack_wait_s=10) as rig:
        for _ in range(2):
            rig.add_processor()
        load = rig.loader(prefix="k9n")
        load.wait_acked(1500)
        leader = rig.cluster.stream_leader()
        assert leader is not None
        # Processes start on different nodes (first, second, third of their NATS_URL): with
        # two ingests and two processors at least one is connected to the victim.
        servers = [get_json(p.processor, "/stats")["queue"]["nats"]["server"] for p in rig.procs]
        on_victim = [k for k, s in enumerate(servers) if s == rig.cluster.url(leader)]
        ing_on_victim = [k for k in range(2) if k == leader]
        assert on_victim or ing_on_victim, (leader, servers)
        print("  killing n%d (stream leader); ingests on n0, n1; processors on %r" % (
            leader, ["n%d" % rig.cluster.ports.index(int(s.rsplit(":", 1)[1])) for s in servers]),
            flush=True)
        before = dict(load.acked_by_port)
        t_kill = time.time()
        rig.cluster.kill(leader)
        n = len(load.acked)
        load.wait_acked(n + 1000, timeout=90)  # progress while the node is down
        # Both ingests store events again, the one that was on the victim included.
        wait_for(lambda: all(load.acked_by_port[i.ingest] > before[i.ingest] + 100
                             for i in rig.ingests), 90, what="both ingests acknowledging")
        for k in on_victim:  # a processor that was on the victim moved and works
            p = rig.procs[k]
            wait_for(lambda: get_json(p.processor, "/stats")["queue"]["nats"]["server"]
                     not in (None, rig.cluster.url(leader)), 60, what="processor failed over")
            done = processed(p)
            wait_for(lambda: processed(p) > done, 60, what="failed-over processor processing")
        new_leader, = wait_for(lambda: (lambda n: (n,) if n is not None else None)(
            rig.cluster.stream_leader()), 60, what="a new stream leader")
        assert new_leader != leader, new_leader
        print("  new stream leader n%d after %.1fs" % (new_leader, time.time() - t_kill))
        rig.cluster.start(leader)
        n = len(load.acked)
        load.wait_acked(n + 1000, timeout=90)
        load.finish()
        for e in rig.procs + rig.ingests:
            p = e.processor if e.cmd == "processor" else e.ingest
            wait_for(lambda: ready(p), 60, what="%s ready again" % e.cmd)
        # Duplicates: events processed whose acks went to the dead node (each processor holds
        # at most IN_FLIGHT unacked), plus retries of publishes that may have been stored
        # (JetStream's Nats-Msg-Id window drops those it recognises).
        verify(rig.cluster, load, rig.sinks, len(rig.procs) * IN_FLIGHT + load.maybe_kept,
               "%d processors x %d in flight + %d maybe-kept retries" %
               (len(rig.procs), IN_FLIGHT, load.maybe_kept))
        # The restarted node caught up: a leader and two current followers.
        wait_for(lambda: (lambda c: c.get("leader") and len(c.get("replicas", [])) == 2 and all(
            r.get("current") for r in c["replicas"]))(rig.cluster.stream_info()["cluster"]),
            60, what="stream replicas current again")
        for e in rig.procs + rig.ingests:
            assert e.stop() == 0


def test_sigterm_processor_mid_load():
    """SIGTERM of a processor mid-load while it holds a consumed batch (its sink write is
    blocked on a full named pipe): it finishes that write, acks, and exits 0, so nothing it
    processed is processed again."""
    with Rig(ingests=1) as rig:
        victim = rig.add_processor(fifo=True, PROCESSOR_WORKERS="1")
        rig.add_processor()
        rig.add_processor()
        load = rig.loader(prefix="term")
        wait_for(lambda: len(sink_lines([rig.sinks[0]])) > 200, 60, what="victim processing")
        rig.fifo.pause()
        wait_for(lambda: rig.fifo.full(), 60, what="victim's pipe full")
        held = get_json(victim.processor, "/stats")["queue"]["in_flight"]
        assert held > 0, held
        victim.proc.send_signal(signal.SIGTERM)
        time.sleep(1)  # it is still inside the write: the pipe is not read
        assert victim.proc.poll() is None, victim.proc.returncode
        rig.fifo.resume()
        rc = victim.stop(signal.SIGTERM, timeout=60)
        assert rc == 0, rc
        n = len(load.acked)
        load.wait_acked(n + 1500)
        load.finish()
        # Its acks went out before it exited and AckWait is 30 s: no event comes back.
        verify(rig.cluster, load, rig.sinks, 0, "the stopped processor acked all it processed")
        print("  SIGTERM with %d events held: exit 0, %d lines in its sink" %
              (held, len(sink_lines([rig.sinks[0]]))))
        for e in rig.procs[1:] + rig.ingests:
            assert e.stop() == 0


def test_whole_cluster_down_not_ready_then_recovers():
    """Every node killed: ingest and processor report not ready and ingest answers 503;
    after a restart on the same stores they are ready again, nothing acknowledged before
    was lost (R3 on disk), and new events flow."""
    with Rig(ingests=1, ack_wait_s=10) as rig:
        proc = rig.add_processor()
        ing = rig.ingests[0]
        load = rig.loader(prefix="down", threads=2)
        load.wait_acked(500)
        load.finish()
        for i in range(rig.cluster.size):
            rig.cluster.kill(i)
        for port in (ing.ingest, proc.processor):
            r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(
                request(port, "GET", "/ready")), 30, what="not ready without NATS")
            assert "NATS" in r.json()["error"], r
        r = request(ing.ingest, "POST", "/ingest",
                    {"id": "while-down", "source": "cl", "data": "x"})
        assert r.status == 503 and r.headers.get("retry-after"), r
        for i in range(rig.cluster.size):
            rig.cluster.start(i, wait=False)
        rig.cluster.wait_healthy(90)
        for port in (ing.ingest, proc.processor):
            wait_for(lambda: ready(port), 60, what="ready after the cluster came back")
        again = rig.loader(prefix="up", threads=2)
        again.wait_acked(500)
        again.finish()
        load.sent |= again.sent
        load.acked |= again.acked
        verify(rig.cluster, load, rig.sinks, IN_FLIGHT,
               "acks lost when every node died: one processor's in-flight",
               also_sent=["while-down"])  # answered 503: not stored, or stored and harmless
        for e in rig.procs + rig.ingests:
            assert e.stop() == 0


if __name__ == "__main__":
    main(globals())
