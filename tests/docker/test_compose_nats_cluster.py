"""The nats-cluster stack of deploy/compose (issue 18) on the private engine: three
nats-server nodes (the image built from Debian's package) in one JetStream cluster,
ingest, two processors and analytics with NATS_URL listing the three servers and
NATS_STREAM_REPLICAS=3. The stream has 3 replicas; events are posted through the
gateway while the stream's leader node is killed with SIGKILL and later started
again; every event answered 2xx is processed (the two processors' NDJSON sinks hold
every accepted id), duplicates stay within the events in flight, and analytics counts
each accepted id. Prints the time to healthy and the answers during the fault."""

import http.client
import json
import threading
import time

from dockertest import (IMAGE, NATS_IMAGE, Stack, compose_file, docker, figure, get_json,
                        inspect, interfaces, main, now, ports_free, request, wait_for)

SINK = "/var/lib/eventpipe/processed.ndjson"
ROLES = ("gateway", "ingest", "processor", "processor-2", "analytics")
NODES = {"nats1": 8222, "nats2": 8223, "nats3": 8224}  # service: monitoring port
PROCESSORS = {"processor": 8082, "processor-2": 8084}


def with_sinks(config):
    for p in PROCESSORS:
        config["services"][p]["environment"]["PROCESSOR_SINK"] = "file:" + SINK


def stream_detail(port):
    """DIPLOM_STREAM as the node on monitoring port `port` reports it (None: not yet)."""
    j = get_json(port, "/jsz?streams=true&config=true")
    for acc in j.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if s.get("name") == "DIPLOM_STREAM":
                return s
    return None


class Poster:
    """Posts events with unique ids through the gateway until stopped; records answers."""

    def __init__(self, port, threads=4):
        self.port, self.accepted, self.refused = port, set(), {}
        self.lock, self.stop_flag, self.n = threading.Lock(), threading.Event(), 0
        self.ts = [threading.Thread(target=self.run, args=(k,)) for k in range(threads)]

    def run(self, k):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = 0
        while not self.stop_flag.is_set():
            eid = "nc-%d-%d" % (k, i)
            i += 1
            try:
                r = request(self.port, "POST", "/api/v1/ingest",
                            {"id": eid, "source": "compose-cluster", "user_id": "u%d" % (i % 17),
                             "event_type": "page_view"}, conn=conn)
                status = r.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                status = "error"
            with self.lock:
                self.n += 1
                if isinstance(status, int) and 200 <= status < 300:
                    self.accepted.add(eid)
                else:
                    self.refused[status] = self.refused.get(status, 0) + 1
            time.sleep(0.002)
        conn.close()

    def __enter__(self):
        for t in self.ts:
            t.start()
        return self

    def wait_accepted(self, n, timeout=120):
        wait_for(lambda: len(self.accepted) >= n, timeout=timeout, interval=0.2,
                 what="%d events accepted" % n)

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.ts:
            t.join()


def test_nats_cluster_stack_survives_a_node_killed():
    ports_free([8080, 8081, 8082, 8083, 8084, 4222, 4223, 4224, 6222, 6223, 6224,
                8222, 8223, 8224])
    links = interfaces()
    env = {"EVENTPIPE_IMAGE": IMAGE, "NATS_IMAGE": NATS_IMAGE}
    with Stack([compose_file("nats-cluster")], "eptest-natsc", env=env, tweak=with_sinks) as st:
        t0 = now()
        st.up(*NODES, *ROLES)
        figure("nats-cluster stack (3 nats nodes + 5 eventpipe services): seconds to all "
               "healthy", "%.1f" % (now() - t0))
        for p in PROCESSORS.values():
            assert request(p, "GET", "/ready").status == 200

        def replicated():
            s = stream_detail(8222)
            return s is not None and s["config"]["num_replicas"] == 3 and \
                len(s.get("cluster", {}).get("replicas") or []) == 2 and \
                s["cluster"].get("leader") in NODES
        wait_for(replicated, timeout=60, interval=0.5, what="DIPLOM_STREAM with 3 replicas")
        leader = stream_detail(8222)["cluster"]["leader"]

        with Poster(8080) as poster:
            poster.wait_accepted(300)
            victim = st.container(leader)
            docker("kill", "-s", "KILL", victim)
            killed_at, t_kill = len(poster.accepted), now()
            # The other two keep a quorum: new events are accepted again.
            poster.wait_accepted(killed_at + 1, timeout=180)
            figure("nats-cluster: seconds from the leader's SIGKILL to the next 2xx",
                   "%.1f" % (now() - t_kill))
            poster.wait_accepted(killed_at + 300, timeout=180)
            docker("start", victim)
            wait_for(lambda: inspect(victim, "{{.State.Health.Status}}") == "healthy",
                     timeout=180, interval=1, what="the killed node healthy again")
            poster.wait_accepted(len(poster.accepted) + 200, timeout=120)
        figure("nats-cluster: events answered 2xx / other answers during the fault",
               "%d / %s" % (len(poster.accepted), poster.refused))
        accepted = poster.accepted

        def processed():
            return sum(get_json(p, "/stats")["pool"]["processed"] for p in PROCESSORS.values())
        wait_for(lambda: processed() >= len(accepted), timeout=180, interval=0.5,
                 what="every accepted event processed")
        ids = []
        for p in PROCESSORS:
            lines = st.compose("exec", "-T", p, "cat", SINK).stdout.splitlines()
            ids += [json.loads(line)["id"] for line in lines if line.strip()]
        missing = accepted - set(ids)
        assert not missing, (len(missing), sorted(missing)[:5])
        # Nothing appears that was not sent (a refused event may still have been stored).
        assert all(e.startswith("nc-") for e in ids), [e for e in ids if not e.startswith("nc-")]
        # Redelivery after the node's death may repeat events that were in flight (at most
        # the workers' batches and the pull requests outstanding); far fewer than the load.
        dups = len(ids) - len(set(ids))
        figure("nats-cluster: duplicates after the node was killed", dups)
        assert dups <= 2 * 256, dups
        wait_for(lambda: get_json(8083, "/analytics/summary")["total_events"] >= len(accepted),
                 timeout=180, interval=0.5, what="analytics counted every accepted event")

        containers = {r: st.container(r) for r in ROLES}
        st.compose("stop", timeout=300)
        for r, c in containers.items():
            assert inspect(c, "{{.State.ExitCode}}") == "0", (r, st.logs())
    assert interfaces() == links, "the engine changed this machine's interfaces"


if __name__ == "__main__":
    main(globals())
