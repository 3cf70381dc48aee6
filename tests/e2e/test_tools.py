"""The user tools: `eventpipe send` (generate-data and the seed 004 example
client), `eventpipe status` (the status aggregate as a table) and `eventpipe
bench` (the load generator: counts, percentiles, batches, fixed rate)."""

import json
import re
import subprocess

from ep_nats import NatsServer
from eptest import EP_BIN, Eventpipe, free_port, get_json, main, request, wait_for


def run(*args, timeout=60):
    return subprocess.run([EP_BIN] + list(args), capture_output=True, text=True, timeout=timeout)


def test_send_generates_and_counts():
    with Eventpipe("run", env={"QUEUE_SIZE": "20000"}) as ep:
        url = "http://127.0.0.1:%d" % ep.api
        r = run("send", "--url", url, "--count", "3000", "--batch", "100", "--users", "200",
                "--seed", "7", "--quiet")
        assert r.returncode == 0, r
        assert "3000 accepted, 0 failed" in r.stdout, r.stdout
        r = run("send", "--url", url, "--count", "200", "--rate", "2000", "--quiet")
        assert r.returncode == 0 and "200 accepted" in r.stdout, r
        r = run("send", "--url", "http://127.0.0.1:%d" % ep.ingest, "--path", "/events",
                "--event", '{"id":"event_123","user_id":"user_456","event_type":"page_view",'
                '"properties":{"page":"/dashboard","duration":"45"},"timestamp":1640995200,'
                '"source":"web-app"}')
        assert r.returncode == 0 and "1 accepted" in r.stdout, r
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 3201,
                 what="3201 processed")
        r = run("send", "--url", url, "--event", '{"source":5}')
        assert r.returncode == 1 and "HTTP 400" in r.stdout, r
        r = run("send", "--bogus")
        assert r.returncode == 2, r
        assert ep.stop() == 0


def test_send_to_ingest_or_gateway_of_split_roles():
    # `send --url` takes the gateway's or ingest's base URL (its --help says so):
    # ingest serves the gateway's public paths too.
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing, \
            Eventpipe("gateway", ports=p) as gw:
        sent = 0
        for port in (p["ingest"], p["api"]):
            url = "http://127.0.0.1:%d" % port
            r = run("send", "--url", url, "--count", "50", "--seed", "3", "--quiet")
            assert r.returncode == 0 and "50 accepted, 0 failed" in r.stdout, (port, r)
            r = run("send", "--url", url, "--count", "200", "--batch", "50", "--quiet")
            assert r.returncode == 0 and "200 accepted, 0 failed" in r.stdout, (port, r)
            r = run("send", "--url", url, "--event", '{"source":"cli","data":"one"}')
            assert r.returncode == 0 and "1 accepted" in r.stdout, (port, r)
            sent += 251
            wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == sent,
                     timeout=30, what="%d processed" % sent)
        assert get_json(p["ingest"], "/stats")["TotalSent"] == sent
        for e in (gw, ing, proc):
            assert e.stop() == 0


def test_status_table_and_exit_code():
    with Eventpipe("run") as ep:
        r = run("status", "--url", "http://127.0.0.1:%d" % ep.api)
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["ROLE", "HEALTH", "DETAIL"], lines
        assert any(l.startswith("ingest") and " up " in l for l in lines), lines
        assert any(l.startswith("processor") and "queue=0/1000" in l for l in lines), lines
        assert ep.stop() == 0
    ports = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    with Eventpipe("gateway", ports=ports) as gw:
        r = run("status", "--url", "http://127.0.0.1:%d" % ports["api"])
        assert r.returncode == 1 and "DOWN" in r.stdout, r
        assert gw.stop() == 0
    r = run("status", "--url", "http://127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and r.stderr, r


def test_status_of_a_broker_queue_says_what_is_unknown():
    """Issue 20: a broker queue has no capacity (queue=N, never N/-1), and while
    NATS is unreachable its size is unknown and said so (status, stats log line,
    no queue_size sample in /metrics), never -1."""
    def processor_line(ep):
        r = run("status", "--url", "http://127.0.0.1:%d" % ep.api)
        return [l for l in r.stdout.splitlines() if l.startswith("processor")][0]

    with NatsServer() as ns, Eventpipe("run", env={"QUEUE_TYPE": "nats", "NATS_URL": ns.url,
                                                   "STATS_INTERVAL": "1"}) as ep:
        wait_for(lambda: re.search(r" queue=0 processed=", processor_line(ep)), 20,
                 what="queue=0 without a capacity")
        wait_for(lambda: re.search(r"queue_size=0 ", ep.log_text()), 10,
                 what="stats log line with queue_size=0")
        ns.stop()
        wait_for(lambda: "queue=unknown (NATS disconnected" in processor_line(ep), 20,
                 what="queue=unknown with the reason")
        line = processor_line(ep)
        assert "-1" not in line, line
        wait_for(lambda: "queue_size=unknown" in ep.log_text(), 10,
                 what="stats log line with queue_size=unknown")
        assert "queue_size=-1" not in ep.log_text()
        metrics = request(ep.processor, "GET", "/metrics").body.decode()
        assert not re.search(r'^queue_size\{queue="nats"\}', metrics, re.M), metrics
        st = get_json(ep.processor, "/stats")["queue"]
        assert st["size"] == -1 and st["ready"] is False and "NATS" in st["reason"], st
        assert ep.stop() == 0


def bench(*args, rc=0, timeout=60):
    """Runs eventpipe bench --json; exit 0 when every answer was a 2xx, else 1."""
    r = run("bench", "--quiet", "--json", *args, timeout=timeout)
    assert r.returncode == rc, r
    return json.loads(r.stdout)


def check_latency(rep):
    l = rep["latency_us"]
    assert 0 < l["p50"] <= l["p90"] <= l["p95"] <= l["p99"] <= l["p99_9"] <= l["max"], l


def test_bench_counts_match_the_server():
    with Eventpipe("run", env={"QUEUE_SIZE": "50000"}) as ep:
        url = "http://127.0.0.1:%d/api/v1/ingest" % ep.api
        # A request count: exactly that many requests, every one a 2xx the server counted.
        rep = bench("--url", url, "-c", "8", "-n", "3000")
        assert rep["requests"] == 3000 and rep["ok"] == 3000, rep
        assert rep["non2xx"] == 0 and rep["socket_errors"] == 0, rep
        check_latency(rep)
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 3000,
                 what="3000 processed")
        # Batches: NDJSON bodies of B events on ingest's batch route.
        rep = bench("--url", "http://127.0.0.1:%d/events/batch" % ep.ingest, "-c", "4",
                    "-n", "200", "--batch", "25")
        assert rep["ok"] == 200 and rep["batch"] == 25, rep
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 8000,
                 what="8000 processed")
        # Fixed rate: about rate x duration requests, latency measured from the schedule.
        rep = bench("--url", url, "-c", "4", "--rate", "500", "-d", "2")
        assert 800 <= rep["requests"] <= 1100, rep
        assert rep["rate"] == 500, rep
        check_latency(rep)
        # Answers that are not 2xx are counted as such, by class.
        rep = bench("--url", "http://127.0.0.1:%d/api/v2/nope" % ep.api, "-c", "2", "-n", "50",
                    rc=1)
        assert rep["requests"] == 50 and rep["ok"] == 0, rep
        assert rep["non2xx"] == 50 and rep["status"]["4xx"] == 50, rep
        # The progress line goes to stderr when not --quiet; the text report to stdout.
        r = run("bench", "--url", url, "-c", "2", "-d", "2")
        assert r.returncode == 0, r
        assert "2xx" in r.stdout and "p99" in r.stdout, r.stdout
        assert r.stderr.strip(), "no progress line"
        assert ep.stop() == 0
    # Nothing listening: socket errors, not a hang or a crash.
    r = run("bench", "--quiet", "--json", "--url", "http://127.0.0.1:%d/" % free_port(),
            "-c", "2", "-d", "1")
    assert r.returncode == 1 and r.stdout, r
    rep = json.loads(r.stdout)
    assert rep["ok"] == 0 and rep["socket_errors"] > 0, rep
    # A request count that cannot be reached still ends at an explicit -d.
    r = run("bench", "--quiet", "--json", "--url", "http://127.0.0.1:%d/" % free_port(),
            "-c", "2", "-n", "100", "-d", "1", timeout=20)
    assert r.returncode == 1 and json.loads(r.stdout)["socket_errors"] > 0, r


def test_bench_duration_run_counts_every_accepted_request():
    # A -d run ends with requests in flight; the server keeps what it accepted,
    # so the report waits for those answers: its 2xx count is what ingest kept.
    with Eventpipe("run", env={"QUEUE_SIZE": "200000"}) as ep:
        for url, batch in (("http://127.0.0.1:%d/api/v1/ingest" % ep.api, 1),
                           ("http://127.0.0.1:%d/events/batch" % ep.ingest, 20)):
            before = get_json(ep.ingest, "/stats")["TotalSent"]
            rep = bench("--url", url, "-c", "32", "-d", "1", "--batch", str(batch))
            assert rep["ok"] > 0 and rep["non2xx"] == 0 and rep["socket_errors"] == 0, rep
            want = rep["ok"] * batch
            wait_for(lambda: get_json(ep.ingest, "/stats")["TotalSent"] - before == want,
                     what="ingest kept %d (%s), as bench counted" % (want, url))
        total = get_json(ep.ingest, "/stats")["TotalSent"]
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == total,
                 timeout=60, what="%d processed" % total)
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
