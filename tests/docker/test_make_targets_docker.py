"""The seeds' docker make targets (issue 17, scripts/dev.sh) on the private engine of the
docker fixture, as a user runs them: `make docker-build` (cheap once the image's layers
exist), `make docker-up QUEUE_TYPE=memory` renders the memory stack for host networking
(scripts/compose_host.py) and returns once every service is healthy; events posted
through the gateway's port are processed (the processor's /stats); `make docker-logs`
shows every role's log lines; `make docker-down` leaves no container of the project and
the engine (which the fixture, not a make target, started) running; the machine's
network interfaces are unchanged. Prints the time docker-up took."""

import subprocess

from dockertest import (ENV, ROOT, docker, figure, get_json, health, interfaces, main, now,
                        ports_free, request, wait_for)

PROJECT = "eptest-make"            # COMPOSE_PROJECT_NAME: apart from a user's own stack
TAG = "eventpipe:make-test"        # EVENTPIPE_IMAGE: `make docker-build` tags it
ROLES = ("gateway", "ingest", "processor", "analytics")
EVENTS = 100


def make(target, timeout=600, check=True):
    env = dict(ENV)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    env.update({"COMPOSE_PROJECT_NAME": PROJECT, "EVENTPIPE_IMAGE": TAG,
                "QUEUE_TYPE": "memory"})
    p = subprocess.run(["make", "--no-print-directory", "-C", ROOT, target], env=env,
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, "make %s: exit %d\n%s\n%s" % (
            target, p.returncode, p.stdout[-4000:], p.stderr[-4000:])
    return p


def containers():
    return docker("ps", "-aq", "--filter",
                  "label=com.docker.compose.project=" + PROJECT).stdout.split()


def service(cid):
    return docker("inspect", "-f", '{{index .Config.Labels "com.docker.compose.service"}}',
                  cid).stdout.strip()


def test_make_docker_build_up_logs_down():
    ports_free([8080, 8081, 8082, 8083])
    links = interfaces()
    assert not containers(), "containers of project %s left from before" % PROJECT
    make("docker-build", timeout=3600)
    docker("image", "inspect", TAG)
    try:
        t0 = now()
        make("docker-up", timeout=900)
        figure("make docker-up (memory) seconds", "%.1f" % (now() - t0))
        # docker-up returned: the four roles are up and healthy already.
        ids = containers()
        assert sorted(service(c) for c in ids) == sorted(ROLES), ids
        for c in ids:
            assert health(c) == "healthy", (service(c), health(c))
        for i in range(EVENTS):
            r = request(8080, "POST", "/api/v1/ingest",
                        {"id": "make-%d" % i, "source": "make-targets", "data": "e%d" % i})
            assert r.status == 202, r
        wait_for(lambda: get_json(8082, "/stats")["pool"]["processed"] == EVENTS,
                 timeout=60, what="%d events processed" % EVENTS)
        logs = make("docker-logs").stdout.splitlines()
        for role in ROLES:
            lines = [ln for ln in logs if ln.startswith(role) and "|" in ln]
            assert any('"msg"' in ln for ln in lines), (role, logs[-40:])
    finally:
        down = make("docker-down", timeout=600, check=False)
        left = containers()
        if left:
            docker("rm", "-f", *left, check=False)
        docker("rmi", TAG, check=False)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not left, "make docker-down left containers: %s" % left
    # The fixture's engine stays: only an engine a make target started is stopped.
    docker("version")
    assert interfaces() == links, "the engine changed this machine's interfaces"


if __name__ == "__main__":
    main(globals())
