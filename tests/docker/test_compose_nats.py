"""The nats stack of deploy/compose (issue 17) on the private engine, with the
nats-server image built locally from Debian's package and the locally built
Prometheus of the monitoring file: every service turns healthy in dependency
order; 1,000 events posted through the gateway container, and every one answered
2xx is processed (the processor's NDJSON sink holds exactly those ids) and
counted by analytics; Prometheus scrapes all four roles; `docker-compose stop`
ends every eventpipe container with exit status 0. Grafana cannot be pulled here
(test_compose_config checks its part). Prints the time to healthy."""

import json
import threading

from dockertest import (IMAGE, NATS_IMAGE, PROMETHEUS_IMAGE, COMPOSE_DIR, Stack, compose_file,
                        figure, get_json, inspect, interfaces, main, now, ports_free, request,
                        wait_for)
import os

EVENTS = 1000
SINK = "/var/lib/eventpipe/processed.ndjson"
ROLES = ("gateway", "ingest", "processor", "analytics")


def with_sink(config):
    config["services"]["processor"]["environment"]["PROCESSOR_SINK"] = "file:" + SINK


def post_all(port, n, threads=8):
    accepted, failed, lock = set(), [], threading.Lock()

    def worker(k):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(k, n, threads):
            eid = "compose-nats-%d" % i
            r = request(port, "POST", "/api/v1/ingest",
                        {"id": eid, "source": "compose-test", "user_id": "u%d" % (i % 37),
                         "event_type": "page_view", "data": "event %d" % i}, conn=conn)
            with lock:
                (accepted.add(eid) if 200 <= r.status < 300 else failed.append((eid, r)))
        conn.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return accepted, failed


def test_nats_stack_carries_1000_events():
    ports_free([8080, 8081, 8082, 8083, 4222, 8222, 9090])
    links = interfaces()
    env = {"EVENTPIPE_IMAGE": IMAGE, "NATS_IMAGE": NATS_IMAGE,
           "PROMETHEUS_IMAGE": PROMETHEUS_IMAGE}
    files = [compose_file("nats"), os.path.join(COMPOSE_DIR, "docker-compose.monitoring.yml")]
    with Stack(files, "eptest-nats", env=env, tweak=with_sink) as st:
        t0 = now()
        st.up("nats", *ROLES, "prometheus")
        figure("nats stack (nats + 4 roles + prometheus): seconds to all healthy",
               "%.1f" % (now() - t0))
        assert inspect(st.container("nats"), "{{.Config.Image}}") == NATS_IMAGE
        status = get_json(8080, "/api/v1/status")
        assert all(status[r]["healthy"] for r in ("ingest", "processor", "analytics")), status

        accepted, failed = post_all(8080, EVENTS)
        assert len(accepted) + len(failed) == EVENTS
        assert len(accepted) == EVENTS, failed[:5]  # nothing refuses them on a healthy stack

        wait_for(lambda: get_json(8082, "/stats")["pool"]["processed"] >= len(accepted),
                 timeout=120, interval=0.5, what="every accepted event processed")
        wait_for(lambda: get_json(8083, "/analytics/summary")["total_events"] == len(accepted),
                 timeout=120, interval=0.5, what="analytics counted every accepted event")
        lines = st.compose("exec", "-T", "processor", "cat", SINK).stdout.splitlines()
        ids = [json.loads(line)["id"] for line in lines if line.strip()]
        assert set(ids) == accepted, (len(set(ids)), len(accepted))

        def targets_up():
            t = get_json(9090, "/api/v1/targets")["data"]["activeTargets"]
            return sorted(x["labels"]["job"] for x in t if x["health"] == "up")
        wait_for(lambda: targets_up() == ["eventpipe-%s" % r for r in sorted(ROLES)],
                 timeout=120, interval=1, what="prometheus scraping every role")

        containers = {r: st.container(r) for r in ROLES}
        st.compose("stop", timeout=300)
        for r, c in containers.items():
            assert inspect(c, "{{.State.ExitCode}}") == "0", (r, st.logs())
    assert interfaces() == links, "the engine changed this machine's interfaces"


if __name__ == "__main__":
    main(globals())
