#!/usr/bin/env python3
"""The seeds' make targets (issue 17): every one exists and `make help` lists it; the
ones that need no Docker engine do what their seed says, against the real binary on
free loopback ports (run-local, health, ready, metrics, lag, generate-data, example,
test-services, switch-queue, logs, stop, demo); tidy says why it does nothing; bad
input (an unknown queue type) is refused with a message."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import eptest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_TARGETS = """docker-build docker-up docker-down docker-logs docker-up-full docker-run
compose-up run-local switch-queue demo health health-check ready metrics lag urls logs stop
create-topics list-topics kafka-console generate-data example setup help lint fmt
test-coverage test-integration test-performance test-services tidy""".split()


def make(args, env=None, cwd=ROOT, timeout=300):
    e = dict(os.environ)
    e.pop("MAKEFLAGS", None)
    e.pop("MAKELEVEL", None)
    e.update(env or {})
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def test_every_seed_target_exists_and_is_listed():
    help_text = make(["help"]).stdout
    for t in SEED_TARGETS:
        r = make(["-n", t, "QUEUE=nats"])
        assert r.returncode == 0, f"make -n {t}: {r.stderr}"
        assert "No rule to make target" not in r.stderr, t
        assert t in help_text, f"make help does not list {t}"


def test_tidy_says_why():
    r = make(["tidy"])
    assert r.returncode == 0, r.stderr
    assert "go mod tidy" in r.stdout and "Debian packages" in r.stdout, r.stdout


def sandbox():
    """A copy of the Makefile and scripts whose build/eventpipe is the binary under test,
    so .env and the run-local files stay out of the source tree."""
    d = tempfile.mkdtemp(prefix="ep-make-")
    shutil.copy(os.path.join(ROOT, "Makefile"), d)
    shutil.copytree(os.path.join(ROOT, "scripts"), os.path.join(d, "scripts"))
    os.makedirs(os.path.join(d, "build"))
    os.symlink(os.path.abspath(eptest.EP_BIN), os.path.join(d, "build", "eventpipe"))
    return d


def free_ports():
    """Every listener on a free port: the gRPC defaults (50051-50053) may be taken on a
    shared machine, and `eventpipe run` refuses to start when one is."""
    return {k: str(eptest.free_port()) for k in
            ("API_PORT", "INGEST_PORT", "PROCESSOR_PORT", "ANALYTICS_PORT",
             "GRPC_PRODUCER_PORT", "GRPC_CONSUMER_PORT", "GRPC_ANALYTICS_PORT")}


def dev(d, target, env, timeout=120):
    """scripts/dev.sh through make, skipping the build step (the binary is given)."""
    e = dict(os.environ)
    e.update(env)
    return subprocess.run(["bash", os.path.join(d, "scripts", "dev.sh"), target], cwd=d, env=e,
                          capture_output=True, text=True, timeout=timeout)


def test_switch_queue_refuses_unknown_and_writes_env():
    d = sandbox()
    try:
        r = dev(d, "switch-queue", {"QUEUE": "redis"})
        assert r.returncode != 0 and "not one of" in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(d, ".env"))
        r = dev(d, "switch-queue", {"QUEUE": "disk"})
        assert r.returncode == 0, r.stderr
        assert "QUEUE_TYPE=disk" in open(os.path.join(d, ".env")).read()
        r = dev(d, "switch-queue", {"QUEUE": "nats"})
        env = open(os.path.join(d, ".env")).read()
        assert "QUEUE_TYPE=nats" in env and "QUEUE_TYPE=disk" not in env, env
        r = dev(d, "docker-up", {"QUEUE_TYPE": "rabbitmq", "DOCKER": "/bin/true"})
        assert r.returncode != 0 and "QUEUE_TYPE: 'rabbitmq'" in r.stderr, r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_run_local_roles_and_the_targets_that_talk_to_them():
    d = sandbox()
    ports = free_ports()
    env = dict(ports, HOST="127.0.0.1", QUEUE_TYPE="memory", BUILD="build")
    try:
        r = dev(d, "run-local", env)
        assert r.returncode == 0, r.stdout + r.stderr
        pids = {}
        for role in ("gateway", "ingest", "processor", "analytics"):
            pids[role] = int(open(os.path.join(d, "build", "run-local", role + ".pid")).read())
            os.kill(pids[role], 0)  # four separate processes
        assert len(set(pids.values())) == 4
        for t in ("health", "ready", "health-check"):
            r = dev(d, t, env)
            assert r.returncode == 0, f"{t}: {r.stdout}{r.stderr}"
            assert r.stdout.count(":" + ports["API_PORT"]) >= 1
        r = dev(d, "metrics", env)
        assert r.returncode == 0 and "http_requests_total" in r.stdout, r.stderr
        r = dev(d, "lag", env)
        assert r.returncode == 0, r.stderr
        r = dev(d, "generate-data", dict(env, COUNT="200"))
        assert r.returncode == 0, r.stdout + r.stderr
        r = dev(d, "example", env)
        assert r.returncode == 0 and '"accepted"' in r.stdout and "user_created" in r.stdout, \
            r.stdout + r.stderr
        r = dev(d, "test-services", env)
        assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
        stats = eptest.get_json(int(ports["PROCESSOR_PORT"]), "/stats")
        assert stats["pool"]["processed"] >= 200 + 5 + 1, stats
        r = dev(d, "logs", env)
        assert r.returncode == 0 and "gateway.log" in r.stdout, r.stderr
        r = dev(d, "run-local", env)
        assert r.returncode != 0 and "already running" in r.stderr, r.stderr
    finally:
        r = dev(d, "stop", env)
        shutil.rmtree(d, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    for role, pid in pids.items():
        eptest.wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                        open(f"/proc/{pid}/stat").read().split()[2] == "Z",
                        timeout=30, what=f"{role} stopped")
    r2 = dev(d if os.path.isdir(d) else tempfile.mkdtemp(), "health", env)
    assert r2.returncode != 0, "health passed with every role stopped"


def test_demo():
    d = sandbox()
    ports = free_ports()
    try:
        r = dev(d, "demo", dict(ports, COUNT="300"), timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "processed" in r.stdout and '"total' in r.stdout, r.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_demo_says_why_when_a_port_is_taken():
    d = sandbox()
    ports = free_ports()
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    ports["GRPC_PRODUCER_PORT"] = str(taken.getsockname()[1])
    try:
        t0 = time.monotonic()
        r = dev(d, "demo", dict(ports, COUNT="10"), timeout=120)
        # It stops as soon as `eventpipe run` exits, not at the 60 s deadline.
        assert r.returncode != 0 and time.monotonic() - t0 < 30, r.stdout + r.stderr
        assert "Address already in use" in r.stderr and "did not start" in r.stderr, r.stderr
    finally:
        taken.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    eptest.main(globals())
