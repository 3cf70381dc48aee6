"""Observability end to end (issue 5): /metrics on every role's port passes
`promtool check metrics`, counters are exact, a real Prometheus server scrapes
`eventpipe run` and answers queries over its HTTP API, the alert rules pass
`promtool check rules`, every metric name used in deploy/ is exported, and
/ready answers 503 with the reason while a needed downstream is down."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from eptest import Eventpipe, free_port, main, request, seed_event, wait_for

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEPLOY = os.path.join(ROOT, "deploy")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def scrape(port):
    r = request(port, "GET", "/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return r.body.decode()


def promtool_check(text, what):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, "%s: promtool check metrics: %s%s" % (
        what, p.stdout.decode(), p.stderr.decode())


def samples(text):
    """{(name, frozenset(labels)): value} of the exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(text, name, **labels):
    want = set(labels.items())
    total, found = 0.0, False
    for (n, ls), v in samples(text).items():
        if n == name and want <= set(ls):
            total += v
            found = True
    assert found, "no sample %s%r" % (name, labels)
    return total


def family_names(text):
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def exported_names(text):
    """Every name a query may use: families plus _bucket/_sum/_count of histograms."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"^# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_promtool_on_every_role_run_mode():
    with Eventpipe("run") as ep:
        request(ep.api, "POST", "/api/v1/ingest", seed_event(1))
        request(ep.api, "GET", "/no/such/path")
        for port in (ep.api, ep.ingest, ep.processor, ep.ports["analytics"]):
            text = scrape(port)
            promtool_check(text, "run :%d" % port)
        # Raw paths never become labels: the unknown path is "unmatched".
        assert 'route="/no/such/path"' not in text
        assert value(text, "http_requests_total", route="unmatched", status="404") == 1
        assert ep.stop() == 0


def test_promtool_on_separate_roles_and_ready_reasons():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing, \
            Eventpipe("gateway", ports=p) as gw, Eventpipe("analytics", ports=p) as an:
        assert request(p["api"], "POST", "/api/v1/ingest", seed_event(2)).status == 202
        for role, port in (("gateway", p["api"]), ("ingest", p["ingest"]),
                           ("processor", p["processor"]), ("analytics", p["analytics"])):
            text = scrape(port)
            promtool_check(text, role)
            assert value(text, "system_health_status", role=role) == 1, role
            assert request(port, "GET", "/ready").status == 200, role
        # The gateway proxied the event, ingest published it, the processor processed it.
        wait_for(lambda: value(scrape(p["processor"]), "events_processed_total") == 1,
                 what="processed on the processor")
        assert value(scrape(p["api"]), "http_requests_total", role="gateway",
                     route="/api/v1/ingest", status="202") == 1
        assert value(scrape(p["ingest"]), "producer_events_published_total") == 1
        # /health is liveness only; /ready says why not while the processor is down.
        # Ingest notices at its first failed hand-off or its next probe of the processor.
        proc.stop()
        assert request(p["api"], "POST", "/api/v1/ingest", seed_event(3)).status == 503
        for port in (p["ingest"], p["api"]):
            assert request(port, "GET", "/health").status == 200
            r = wait_for(lambda: (lambda r: r if r.status == 503 else None)(
                request(port, "GET", "/ready")), what="/ready 503 on %d" % port)
            assert "processor" in r.json()["error"], r
        for e in (gw, ing, an):
            assert e.stop() == 0


def test_exact_counts_after_n_ingests():
    n = 25
    with Eventpipe("run") as ep:
        for i in range(n):
            r = request(ep.api, "POST", "/api/v1/ingest", seed_event(i))
            assert r.status == 202, r
        wait_for(lambda: value(scrape(ep.api), "events_processed_total") == n,
                 what="%d processed" % n)
        time.sleep(0.3)  # nothing more may arrive: the counters must stay exact
        text = scrape(ep.api)
        assert value(text, "http_requests_total", route="/api/v1/ingest", status="202") == n
        assert value(text, "events_processed_total") == n
        assert value(text, "messages_processed_total", status="success") == n
        assert value(text, "producer_events_published_total") == n
        assert value(text, "producer_publish_duration_seconds_count") == n
        assert value(text, "event_processing_duration_seconds_count") == n
        assert value(text, "http_request_duration_seconds_count", role="gateway",
                     route="/api/v1/ingest") == n
        assert value(text, "queue_capacity", queue="memory") == 1000
        assert value(text, "process_resident_memory_bytes") > 0
        assert value(text, "process_open_fds") > 0
        assert ep.stop() == 0


def test_metrics_disabled():
    with Eventpipe("run", env={"METRICS_ENABLED": "false"}) as ep:
        assert request(ep.api, "GET", "/metrics").status == 404
        assert request(ep.api, "POST", "/api/v1/ingest", seed_event(0)).status == 202
        assert ep.stop() == 0


def test_sampled_access_log():
    with Eventpipe("run", env={"ACCESS_LOG_SAMPLE": "1"}) as ep:
        request(ep.api, "POST", "/api/v1/ingest", seed_event(0))
        log = ep.log_text()
        assert ep.stop() == 0
    assert re.search(r"\[access\] gateway POST /api/v1/ingest 202 ", log), log[-2000:]
    with Eventpipe("run") as ep:  # default 0: no access lines at all
        for i in range(20):
            request(ep.api, "POST", "/api/v1/ingest", seed_event(i))
        assert ep.stop() == 0
        assert "[access]" not in ep.log_text()


def prom_query(port, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_real_prometheus_scrapes_run():
    n = 12
    tmp = tempfile.mkdtemp(prefix="ep-prom-")
    with Eventpipe("run") as ep:
        prom_port = free_port()
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: eventpipe\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % ep.api)
        log = open(os.path.join(tmp, "prometheus.log"), "wb")
        prom = subprocess.Popen([PROMETHEUS, "--config.file=" + cfg,
                                 "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                                 "--web.listen-address=127.0.0.1:%d" % prom_port],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            for i in range(n):
                assert request(ep.api, "POST", "/api/v1/ingest", seed_event(i)).status == 202

            def scraped():
                a = prom_query(prom_port, 'sum(http_requests_total{job="eventpipe",'
                               'route="/api/v1/ingest",status="202"})')
                b = prom_query(prom_port, 'events_processed_total{job="eventpipe"}')
                return (a and b and float(a[0]["value"][1]) == n and
                        float(b[0]["value"][1]) == n)
            wait_for(scraped, timeout=30, interval=0.5, what="Prometheus sees %d events" % n)
            up = prom_query(prom_port, 'up{job="eventpipe"}')
            assert up and up[0]["value"][1] == "1", up
        finally:
            prom.terminate()
            prom.wait(timeout=20)
            log.close()
            shutil.rmtree(tmp, ignore_errors=True)
        assert ep.stop() == 0


def test_promtool_check_rules():
    p = subprocess.run([PROMTOOL, "check", "rules", os.path.join(DEPLOY, "prometheus",
                                                                 "alerts.yml")],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    p = subprocess.run([PROMTOOL, "check", "config", os.path.join(DEPLOY, "prometheus",
                                                                  "prometheus.yml")],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "max", "min",
    "avg", "count", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
    "max_over_time", "min_over_time", "avg_over_time", "abs", "clamp_min", "topk", "bool",
    "le", "offset", "vector", "time",
}


def deploy_queries():
    """(file, PromQL expression) of every alert rule and dashboard target in deploy/."""
    out = []
    with open(os.path.join(DEPLOY, "prometheus", "alerts.yml")) as f:
        text = f.read()
    # expr: one line, or a | block indented under it.
    for m in re.finditer(r"^(\s*)expr:\s*(\|)?(.*)\n((?:\1\s+.*\n)*)", text, re.M):
        out.append(("alerts.yml", (m.group(3) + "\n" + (m.group(4) if m.group(2) else ""))))
    ddir = os.path.join(DEPLOY, "grafana", "dashboards")
    for name in sorted(os.listdir(ddir)):
        with open(os.path.join(ddir, name)) as f:
            d = json.load(f)
        for p in d["panels"]:
            for t in p.get("targets", []):
                out.append((name, t["expr"]))
    return out


def metric_names(expr):
    expr = re.sub(r'\{[^}]*\}', " ", expr)           # label matchers
    expr = re.sub(r'"[^"]*"', " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)           # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    names = set()
    for tok in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if tok not in PROMQL_WORDS and not re.match(r"^\d", tok):
            names.add(tok)
    return names


def test_every_deploy_metric_is_exported():
    queries = deploy_queries()
    assert len(queries) >= 30, queries
    with Eventpipe("run") as ep:
        exported = exported_names(scrape(ep.api))
        assert ep.stop() == 0
    exported.add("up")  # Prometheus' own per-target series
    missing = {}
    used = set()
    for where, q in queries:
        for name in metric_names(q):
            used.add(name)
            if name not in exported:
                missing.setdefault(name, []).append(where)
    assert not missing, "used in deploy/ but not exported: %r" % missing
    # The seeds' names are all there.
    for name in ("http_requests_total", "http_request_duration_seconds", "queue_size",
                 "worker_pool_active", "messages_processed_total", "system_health_status",
                 "producer_events_published_total", "producer_events_failed_total",
                 "producer_publish_duration_seconds", "producer_batch_size",
                 "events_processed_total", "event_processing_duration_seconds",
                 "kafka_consumer_lag_total", "errors_total", "service_uptime_seconds",
                 "process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds", "queue_capacity"):
        assert name in exported, name
    assert len(used) >= 15, used


if __name__ == "__main__":
    main(globals())
