"""Every compose file under deploy/compose passes `docker-compose config` (Debian
12's docker-compose 1.29), alone and each queue stack with the monitoring file,
with the defaults and with every image swapped by its variable; each stack has
the roles as separate services, every service a healthcheck, every dependency
`condition: service_healthy`, the right QUEUE_TYPE; the compose Prometheus config
passes `promtool check config`; the Grafana provisioning it mounts exists. Kafka
and Grafana cannot be pulled here: these checks are all they get."""

import os
import shutil
import subprocess
import tempfile

from dockertest import COMPOSE_DIR, ROOT, STACKS, compose_config, compose_file, main
import yaml

ROLES = {"gateway", "ingest", "processor", "analytics"}
BROKERS = {"memory": set(), "disk": set(), "nats": {"nats"}, "kafka": {"kafka"},
           "composite": {"nats", "kafka"}, "nats-cluster": {"nats1", "nats2", "nats3"}}
MONITORING = os.path.join(COMPOSE_DIR, "docker-compose.monitoring.yml")


def check_stack(stack, cfg):
    services = cfg["services"]
    assert set(services) >= ROLES | BROKERS[stack], (stack, sorted(services))
    for name, svc in services.items():
        assert "healthcheck" in svc and svc["healthcheck"]["test"], (stack, name)
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), (stack, name, deps)
        for dep, how in deps.items():
            assert how == {"condition": "service_healthy"}, (stack, name, dep, how)
            assert dep in services, (stack, name, dep)
        if name in ROLES:
            assert svc["command"] == ["eventpipe", name], (stack, name, svc["command"])
            assert svc["healthcheck"]["test"][:4] == ["CMD", "eventpipe", "healthcheck", name]
            assert svc["environment"]["QUEUE_TYPE"] == stack.split("-")[0], (stack, name)
            assert svc["environment"]["INTERNAL_TOKEN"], (stack, name)
            # SIGTERM drains within SHUTDOWN_TIMEOUT (10s) before compose would SIGKILL.
            assert svc["stop_grace_period"] == "20s", (stack, name)
    # Each role waits for what it needs: nothing starts before its broker is healthy.
    for b in BROKERS[stack]:
        for role in ("ingest", "processor", "analytics"):
            assert b in services[role]["depends_on"], (stack, role, b)
    assert "ingest" in services["gateway"]["depends_on"], stack


def test_every_file_passes_config():
    files = sorted(f for f in os.listdir(COMPOSE_DIR) if f.startswith("docker-compose."))
    assert files == sorted(["docker-compose.%s.yml" % s for s in STACKS] +
                           ["docker-compose.monitoring.yml"]), files
    for stack in STACKS:
        with open(compose_file(stack)) as f:
            assert yaml.safe_load(f)["version"] == "2.4", stack
        check_stack(stack, compose_config([compose_file(stack)]))
        full = compose_config([compose_file(stack), MONITORING])
        check_stack(stack, full)
        assert {"prometheus", "grafana"} <= set(full["services"]), stack
    mon = compose_config([MONITORING])
    assert set(mon["services"]) == {"prometheus", "grafana"}


def test_images_and_settings_come_from_the_environment():
    env = dict(os.environ, EVENTPIPE_IMAGE="registry.example/eventpipe:1.2",
               NATS_IMAGE="local/nats:x", KAFKA_IMAGE="local/kafka:y",
               PROMETHEUS_IMAGE="local/prom:z", GRAFANA_IMAGE="local/grafana:w",
               INTERNAL_TOKEN="tok-123", COMPOSITE_STRATEGY="best-effort",
               COMPOSITE_PROVIDERS="nats")
    from dockertest import ENV
    env.update({k: v for k, v in ENV.items() if k.startswith("DOCKER")})
    cfg = compose_config([compose_file("composite"), MONITORING], env=env)
    s = cfg["services"]
    for role in ROLES:
        assert s[role]["image"] == "registry.example/eventpipe:1.2"
        assert s[role]["environment"]["INTERNAL_TOKEN"] == "tok-123"
        assert s[role]["environment"]["COMPOSITE_STRATEGY"] == "best-effort"
        assert s[role]["environment"]["COMPOSITE_PROVIDERS"] == "nats"
    assert (s["nats"]["image"], s["kafka"]["image"]) == ("local/nats:x", "local/kafka:y")
    assert (s["prometheus"]["image"], s["grafana"]["image"]) == ("local/prom:z",
                                                                 "local/grafana:w")


def test_monitoring_mounts_and_prometheus_config():
    cfg = compose_config([compose_file("nats"), MONITORING])
    for svc in ("prometheus", "grafana"):
        for v in cfg["services"][svc]["volumes"]:
            src = v["source"] if isinstance(v, dict) else v.split(":")[0]
            if src.startswith("/"):  # a bind mount of a file of deploy/ (else a volume)
                assert os.path.exists(src), (svc, src)
                assert os.path.realpath(src).startswith(os.path.join(ROOT, "deploy")), src
    # The compose scrape config with the shipped alert rules: promtool accepts both.
    d = tempfile.mkdtemp(prefix="ep-prom-")
    try:
        shutil.copy(os.path.join(COMPOSE_DIR, "prometheus.yml"), d)
        shutil.copy(os.path.join(ROOT, "deploy", "prometheus", "alerts.yml"), d)
        p = subprocess.run([shutil.which("promtool") or "/usr/bin/promtool", "check", "config",
                            os.path.join(d, "prometheus.yml")], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)
    with open(os.path.join(COMPOSE_DIR, "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    assert targets == {"gateway:8080", "ingest:8081", "processor:8082", "analytics:8083"}
    with open(os.path.join(COMPOSE_DIR, "grafana-datasource.yml")) as f:
        ds = yaml.safe_load(f)["datasources"][0]
    assert ds["url"] == "http://prometheus:9090" and ds["uid"] == "prometheus", ds


if __name__ == "__main__":
    main(globals())
