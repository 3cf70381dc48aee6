"""Helpers for the container tests (ctest -L docker, `make test-docker`): the
private Docker engine of scripts/docker.sh, docker and docker-compose commands,
and the compose stacks rendered for host networking (scripts/compose_host.py, which
`make docker-up` uses as well: the engine runs with --bridge=none)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import yaml  # python3-yaml, a dependency of Debian's docker-compose

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import compose_host  # noqa: E402  (the rendering `make docker-up` uses too)
from compose_host import COMPOSE, host_network  # noqa: E402,F401
from eptest import get_json, main, request, wait_for  # noqa: E402,F401

DOCKER = "/usr/bin/docker"  # Debian's client; another may come first in PATH
COMPOSE_DIR = os.path.join(ROOT, "deploy", "compose")
STACKS = ("memory", "disk", "nats", "kafka", "composite", "nats-cluster")
IMAGE = os.environ.get("EP_TEST_IMAGE", "eventpipe:test")
NATS_IMAGE = "eventpipe-local/nats-server:debian12"
PROMETHEUS_IMAGE = "eventpipe-local/prometheus:debian12"


def engine_env():
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "docker.sh"), "env"],
                         check=True, capture_output=True, text=True).stdout
    env = dict(os.environ)
    for word in out.split():
        if "=" in word:
            k, v = word.split("=", 1)
            env[k] = v
    return env


ENV = engine_env()


def run(cmd, check=True, timeout=600, env=None, **kw):
    p = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout,
                       **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s\n%s" % (" ".join(cmd), p.returncode,
                                                      p.stdout[-3000:], p.stderr[-3000:]))
    return p


def docker(*args, **kw):
    return run([DOCKER] + list(args), **kw)


def inspect(container, fmt):
    return docker("inspect", "-f", fmt, container).stdout.strip()


def health(container):
    return inspect(container, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")


def compose_file(stack):
    return os.path.join(COMPOSE_DIR, "docker-compose.%s.yml" % stack)


def compose_config(files, env=None):
    """The merged configuration docker-compose renders from files."""
    return compose_host.compose_config(files, env=env, run=run)


def ports_free(ports):
    busy = []
    for p in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", p))
            except OSError:
                busy.append(p)
    if busy:
        # Say who holds them (seen once in a run under load, gone a few minutes later).
        held = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        who = [line for line in held.splitlines()
               if any(line.split()[3].endswith(":%d" % p) for p in busy if len(line.split()) > 3)]
        raise AssertionError("ports the stack needs are taken on this machine: %s\n%s" %
                             (busy, "\n".join(who) or held))


def interfaces():
    return sorted(os.listdir("/sys/class/net"))


class Stack:
    """A compose stack rendered for host networking, run as project `name`."""

    def __init__(self, files, name, env=None, tweak=None):
        """env: variables the files interpolate; tweak(config) may change the rendering."""
        self.env = dict(ENV)
        self.env.update(env or {})
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="ep-compose-")
        self.path = os.path.join(self.dir, "docker-compose.yml")
        config = host_network(compose_config(files, env=self.env))
        if tweak:
            tweak(config)
        with open(self.path, "w") as f:
            json.dump(config, f, indent=1)

    def compose(self, *args, **kw):
        return run([COMPOSE, "-p", self.name, "-f", self.path] + list(args), env=self.env,
                   **kw)

    def container(self, service):
        out = self.compose("ps", "-q", service).stdout.split()
        assert len(out) == 1, (service, out)
        return out[0]

    def up(self, *services, timeout=300):
        """Starts the services (all by default) and waits until each is healthy."""
        self.compose("up", "-d", "--no-build", *services, timeout=timeout)
        wanted = services or tuple(yaml.safe_load(open(self.path))["services"])

        def all_healthy():
            states = {s: health(self.container(s)) for s in wanted}
            if any(v == "unhealthy" for v in states.values()):
                raise AssertionError("unhealthy: %s\n%s" % (states, self.logs()))
            return all(v == "healthy" for v in states.values())
        wait_for(all_healthy, timeout=timeout, interval=0.5, what="every service healthy")

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout[-6000:]

    def down(self):
        self.compose("down", "-v", "--timeout", "30", check=False, timeout=300)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            sys.stderr.write("---- compose logs ----\n%s\n" % self.logs())
        self.down()


def wait_http_ok(port, path, timeout=60):
    def ok():
        return request(port, "GET", path, timeout=5).status == 200
    wait_for(ok, timeout=timeout, interval=0.2, what="GET :%d%s answering 200" % (port, path))


def figure(name, value):
    """A measured figure, printed for docs/deployment.md."""
    print("FIGURE %s: %s" % (name, value), flush=True)


def now():
    return time.monotonic()
