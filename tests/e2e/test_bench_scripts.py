"""The benchmark scripts (issue 20, item 11a): `make bench` (bench/http_bench.sh)
starts `eventpipe run` on free ports for every role, whatever the caller's
environment says, so a taken port such as 8083 does not break it."""

import json
import os
import re
import shutil
import socket
import subprocess

from eptest import EP_BIN, main

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def test_http_bench_ignores_taken_role_ports():
    assert shutil.which("wrk"), "wrk is not installed (scripts/setup.sh installs it)"
    # One port, listening, named by every role setting of the caller's environment.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, BENCH_DURATION="1s", BENCH_CONNECTIONS="4")
        for name in ("API_PORT", "INGEST_PORT", "PROCESSOR_PORT", "ANALYTICS_PORT"):
            env[name] = str(port)
        for name in ("INGEST_URL", "PROCESSOR_URL", "ANALYTICS_URL"):
            env[name] = "http://127.0.0.1:%d" % port
        r = subprocess.run(["bash", os.path.join(ROOT, "bench", "http_bench.sh"), EP_BIN],
                           env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    m = re.search(r"^processed=(\d+) errors=0 ", r.stdout, re.M)
    assert m and int(m.group(1)) > 0, r.stdout
    assert re.search(r"^events/s: [1-9]", r.stdout, re.M), r.stdout


def test_scale_bench_measures_every_processor_count():
    """bench/scale_bench.py (issue 18, `make scale-bench`) in miniature: NATS and Kafka, 1
    and 2 processor processes, a 200 ms receiver (250 events/s per processor), a 3,000-event
    backlog that lasts past the window. Every run reports events processed in its window,
    not drained, without sink errors, and the table has a row per processor count."""
    assert os.access(os.path.join(os.path.dirname(EP_BIN), "ep_kafka_mock"), os.X_OK)
    r = subprocess.run(
        ["python3", os.path.join(ROOT, "bench", "scale_bench.py"), "--queues", "nats,kafka",
         "--procs", "1,2", "--delay-ms", "200", "--events", "3000", "--max-events", "3000",
         "--warmup", "0.5", "--window", "1.5", "--json"],
        env=dict(os.environ, EP_BIN=EP_BIN), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, (r.stdout, r.stderr[-3000:])
    runs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert sorted((x["queue"], x["processors"]) for x in runs) == [
        ("kafka", 1), ("kafka", 2), ("nats", 1), ("nats", 2)], r.stderr
    for x in runs:
        # 250 events/s per processor at most; at least one POST of 50 in the window.
        assert 0 < x["events_per_s"] <= 260 * x["processors"] + 50, x
        assert not x["drained"] and x["sink_errors"] == 0 and x["preloaded"] >= 3000, x
    assert re.search(r"^\| 1 \| 2,000 \| [0-9,]+ \| 1\.00 \| [0-9,]+ \| 1\.00 \|", r.stdout,
                     re.M), r.stdout
    assert re.search(r"^\| 2 \| - \| [0-9,]+ \| [0-9.]+ \| [0-9,]+ \|", r.stdout, re.M), r.stdout


if __name__ == "__main__":
    main(globals())
