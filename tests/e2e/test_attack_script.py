"""The hostile-load script (issue 14, `make attack`): bench/attack.py runs every
attack against a fresh `eventpipe run` and measures. Small and short here
(50 connections, 2 s each); whether the server PASSes depends on the server,
so this checks only that every attack ran and was measured: a row per attack
with the server's peak RSS and the normal client's latency."""

import json
import os
import subprocess
import sys

from eptest import EP_BIN, main

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCRIPT = os.path.join(ROOT, "bench", "attack.py")


def attack_names():
    r = subprocess.run([sys.executable, SCRIPT, "--list"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def test_attack_script_measures_every_attack():
    names = attack_names()
    assert len(names) >= 7, names
    r = subprocess.run([sys.executable, SCRIPT, "--binary", EP_BIN, "--duration", "2",
                        "--conns", "50", "--dedup-budget", "2", "--dedup-probe-timeout", "10",
                        "--json"],
                       capture_output=True, text=True, timeout=240)
    # 0: every attack passed, 1: one failed; 2 or a traceback: the script broke.
    assert r.returncode in (0, 1), (r.returncode, r.stderr[-3000:])
    rows = json.loads(r.stdout)
    assert [row["attack"] for row in rows] == names, (names, rows)
    for row in rows:
        what = (row["attack"], row, r.stderr[-2000:])
        assert row["error"] is None, what
        assert row["server_alive"], what  # a crash under attack (or a sanitizer report)
        assert row["peak_rss_mb"] > 0 and row["rss_samples"] > 0, what
        assert row["peak_open"] >= 1, what
        normal = row["normal"]
        assert normal is not None and normal["requests"] > 0, what
        assert normal["worst_ms"] > 0, what
        assert row["verdict"] in ("PASS", "FAIL"), what
    by = {row["attack"]: row for row in rows}
    assert "duplicate_flagged" in by["dedup-fill"]["info"], by["dedup-fill"]
    merge = by["merge-forgery"]["info"]
    for case in ("huge-total", "fake-source", "wraparound", "16MiB-body"):
        assert merge[case].startswith(("accepted", "rejected")), merge


if __name__ == "__main__":
    main(globals())
