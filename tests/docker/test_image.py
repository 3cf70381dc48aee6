"""The image at run time (issue 17): a non-root user; the HEALTHCHECK (`eventpipe
healthcheck`) turns healthy; events posted through the container are processed
(/stats); `docker stop` (SIGTERM to eventpipe as PID 1) drains and exits 0 well
within the shutdown timeout; the disk queue works in the VOLUME as that user.
Containers use the host's network on free ports. Prints the time to healthy."""

import json

from dockertest import (IMAGE, docker, figure, get_json, health, inspect, interfaces, main,
                        now, request, wait_for)
from eptest import free_port

SHUTDOWN_S = 10  # SHUTDOWN_TIMEOUT's default


def start(name, env=None, volume=None, args=None):
    # every listener on a free port: the host's 50051-50053 may be taken on a shared machine
    ports = {k: free_port() for k in ("API_PORT", "INGEST_PORT", "PROCESSOR_PORT",
                                      "ANALYTICS_PORT", "GRPC_PRODUCER_PORT",
                                      "GRPC_CONSUMER_PORT", "GRPC_ANALYTICS_PORT")}
    e = {k: str(v) for k, v in ports.items()}
    e.update({"INGEST_URL": "http://localhost:%d" % ports["INGEST_PORT"],
              "PROCESSOR_URL": "http://localhost:%d" % ports["PROCESSOR_PORT"],
              "ANALYTICS_URL": "http://localhost:%d" % ports["ANALYTICS_PORT"]})
    e.update(env or {})
    docker("rm", "-f", name, check=False)
    cmd = ["run", "-d", "--name", name, "--network", "host"]
    if volume:
        cmd += ["-v", "%s:/var/lib/eventpipe" % volume]
    for k, v in e.items():
        cmd += ["-e", "%s=%s" % (k, v)]
    docker(*(cmd + [IMAGE] + list(args or [])))
    return ports


def wait_healthy(name, timeout=120):
    def ok():
        h = health(name)
        if h == "unhealthy" or inspect(name, "{{.State.Running}}") != "true":
            raise AssertionError("%s: %s\n%s" % (name, h, logs(name)))
        return h == "healthy"
    wait_for(ok, timeout=timeout, interval=0.2, what="%s healthy" % name)


def logs(name):
    p = docker("logs", name, check=False)
    return (p.stdout + p.stderr)[-4000:]


def post_events(port, n, prefix):
    ok = 0
    for i in range(n):
        r = request(port, "POST", "/api/v1/ingest",
                    {"id": "%s-%d" % (prefix, i), "source": "docker-test", "data": "d%d" % i})
        assert r.status == 202, r
        ok += 1
    return ok


def test_non_root_healthy_processes_and_stops_cleanly():
    links = interfaces()
    cfg = json.loads(docker("image", "inspect", IMAGE).stdout)[0]["Config"]
    assert cfg["User"] not in ("", "root", "0", "0:0"), cfg["User"]
    assert cfg["Cmd"] == ["eventpipe", "run"], cfg["Cmd"]
    assert cfg["Healthcheck"]["Test"][:3] == ["CMD", "eventpipe", "healthcheck"], cfg
    for port in ("8080/tcp", "8081/tcp", "8082/tcp", "8083/tcp"):
        assert port in cfg["ExposedPorts"], cfg["ExposedPorts"]
    assert "/var/lib/eventpipe" in cfg["Volumes"], cfg["Volumes"]

    name = "ep-test-run"
    t0 = now()
    ports = start(name)
    try:
        wait_healthy(name)
        figure("eventpipe run container: seconds to healthy", "%.1f" % (now() - t0))
        uid = docker("exec", name, "id", "-u").stdout.strip()
        assert uid != "0", uid
        pid1 = docker("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert pid1[:2] == ["eventpipe", "run"], pid1  # SIGTERM goes straight to eventpipe

        n = post_events(ports["API_PORT"], 300, "img")
        wait_for(lambda: get_json(ports["PROCESSOR_PORT"], "/stats")["pool"]["processed"] == n,
                 timeout=60, what="%d processed" % n)
        # Events still arriving while docker stop comes: the drain handles them.
        post_events(ports["API_PORT"], 50, "late")
        t0 = now()
        docker("stop", "-t", str(SHUTDOWN_S * 3), name, timeout=120)
        took = now() - t0
        figure("docker stop seconds", "%.2f" % took)
        assert inspect(name, "{{.State.ExitCode}}") == "0", logs(name)
        assert inspect(name, "{{.State.OOMKilled}}") == "false"
        assert took < SHUTDOWN_S, "docker stop took %.1f s" % took
        log = logs(name)
        assert "received SIGTERM" in log and "] stopped" in log, log
        assert "processed=350" in log, log  # the summary line written while stopping
    finally:
        docker("rm", "-f", name, check=False)
    assert interfaces() == links, "the engine changed this machine's interfaces"


def test_one_role_is_healthy_with_the_image_healthcheck():
    # `eventpipe healthcheck` without a role checks PID 1's role: the processor's port
    # here, where nothing listens on the gateway port.
    name = "ep-test-processor"
    try:
        ports = start(name, args=["eventpipe", "processor"])
        wait_healthy(name)
        r = docker("exec", name, "eventpipe", "healthcheck")
        assert r.stdout.strip() == "http://localhost:%d/health: 200" % ports["PROCESSOR_PORT"], r
        assert docker("exec", name, "eventpipe", "healthcheck", "gateway",
                      check=False).returncode == 1
        docker("stop", "-t", "30", name, timeout=120)
        assert inspect(name, "{{.State.ExitCode}}") == "0", logs(name)
    finally:
        docker("rm", "-f", name, check=False)


def test_disk_queue_in_the_volume_as_non_root():
    # A named volume on /var/lib/eventpipe (QUEUE_DIR=/var/lib/eventpipe/queue) takes
    # the image directory's owner, so the non-root user can write the log there.
    name, vol = "ep-test-disk", "ep-test-disk-data"
    docker("rm", "-f", name, check=False)
    docker("volume", "rm", "-f", vol, check=False)
    try:
        ports = start(name, env={"QUEUE_TYPE": "disk"}, volume=vol)
        wait_healthy(name)
        n = post_events(ports["API_PORT"], 100, "disk")
        wait_for(lambda: get_json(ports["PROCESSOR_PORT"], "/stats")["pool"]["processed"] == n,
                 timeout=60, what="%d processed from the disk queue" % n)
        files = docker("exec", name, "ls", "/var/lib/eventpipe/queue").stdout.split()
        assert files, "nothing in QUEUE_DIR"
        docker("stop", "-t", "30", name, timeout=120)
        assert inspect(name, "{{.State.ExitCode}}") == "0", logs(name)
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", vol, check=False)


if __name__ == "__main__":
    main(globals())
