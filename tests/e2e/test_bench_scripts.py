"""The benchmark scripts (issue 20, item 11a): `make bench` (bench/http_bench.sh)
starts `eventpipe run` on free ports for every role, whatever the caller's
environment says, so a taken port such as 8083 does not break it."""

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


if __name__ == "__main__":
    main(globals())
