#!/usr/bin/python3
"""A compose stack rendered for host networking (issue 17), shared by the make targets
(scripts/dev.sh) and the container tests (tests/docker/dockertest.py).

The private engine of scripts/docker.sh runs with --bridge=none (this machine's network
is never touched), so a stack runs there as `docker-compose config` renders it with
every service on the host's network: published ports dropped, `network_mode: host`, and
the service names mapped to 127.0.0.1 in each container's /etc/hosts, so that the
files' own URLs (http://ingest:8081, nats://nats:4222) work unchanged.

  compose_host.py render OUT [--without SERVICE]... FILE...
      writes the rendered stack (JSON, which docker-compose reads) to OUT and prints
      "SERVICE IMAGE" for each service it keeps
"""

import json
import os
import subprocess
import sys

import yaml  # python3-yaml, a dependency of Debian's docker-compose

COMPOSE = "/usr/bin/docker-compose"


def compose_config(files, env=None, run=None):
    """The merged configuration docker-compose renders from files (variables from env)."""
    args = [COMPOSE]
    for f in files:
        args += ["-f", f]
    args.append("config")
    if run is not None:
        return yaml.safe_load(run(args, env=env).stdout)
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        sys.exit("docker-compose config: exit %d\n%s" % (p.returncode, p.stderr))
    return yaml.safe_load(p.stdout)


def without(config, services):
    """config minus services (and the other services' depends_on them)."""
    for name in services:
        config["services"].pop(name, None)
    for svc in config["services"].values():
        dep = svc.get("depends_on")
        if isinstance(dep, dict):
            for name in services:
                dep.pop(name, None)
        elif isinstance(dep, list):
            svc["depends_on"] = [d for d in dep if d not in services]
        if dep is not None and not svc["depends_on"]:
            svc.pop("depends_on")
    return config


def host_network(config):
    """config (as compose_config returns it) with every service on the host's network."""
    names = sorted(config["services"])
    for svc in config["services"].values():
        svc.pop("ports", None)
        svc.pop("networks", None)
        svc["network_mode"] = "host"
        svc["extra_hosts"] = ["%s:127.0.0.1" % n for n in names]
    config.pop("networks", None)
    config["version"] = "2.4"
    return config


def main(argv):
    if len(argv) < 3 or argv[0] != "render":
        sys.exit(__doc__.split("\n\n")[-1].rstrip())
    out, rest, drop = argv[1], argv[2:], []
    while len(rest) >= 2 and rest[0] == "--without":
        drop.append(rest[1])
        rest = rest[2:]
    if not rest:
        sys.exit("compose_host.py render: no compose file")
    config = host_network(without(compose_config(rest, env=dict(os.environ)), drop))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(config, f, indent=1)
    os.replace(out + ".tmp", out)
    for name, svc in sorted(config["services"].items()):
        print(name, svc.get("image", ""))


if __name__ == "__main__":
    main(sys.argv[1:])
