"""The shipped Prometheus configs (issue 20, item 3): a real Prometheus with
deploy/prometheus/prometheus.yml against `eventpipe run`, and with
prometheus-split.yml against the four role processes, sees every event once:
the Grafana dashboards' event panels evaluate to what /stats says, not a
multiple of it. Both configs pass `promtool check config`.

The configs are used as shipped; only what must differ on a shared test machine
is rewritten: each default port (localhost:8080-8083) becomes the free port of
the same role, and the 15 s intervals become 1 s."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from eptest import Eventpipe, free_port, get_json, main, request, seed_event, wait_for

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PROM_DIR = os.path.join(ROOT, "deploy", "prometheus")
DASHBOARDS = os.path.join(ROOT, "deploy", "grafana", "dashboards")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

# The default port of each role (README, design.md section 1) -> the test's key.
DEFAULT_PORTS = {8080: "api", 8081: "ingest", 8082: "processor", 8083: "analytics"}


def shipped_config(name, ports, tmp):
    """deploy/prometheus/<name> written to tmp with its targets moved to the
    test's ports and 1 s intervals; returns (path, the default ports it scrapes)."""
    with open(os.path.join(PROM_DIR, name)) as f:
        text = f.read()
    targets = [int(p) for p in re.findall(r'"localhost:(\d+)"', text)]
    assert targets, "%s scrapes nothing" % name
    assert all(p in DEFAULT_PORTS for p in targets), (name, targets)
    text = re.sub(r'"localhost:(\d+)"',
                  lambda m: '"127.0.0.1:%d"' % ports[DEFAULT_PORTS[int(m.group(1))]], text)
    text, n = re.subn(r"^(\s*(?:scrape|evaluation)_interval:) 15s$", r"\1 1s", text, flags=re.M)
    assert n == 2, "%s: expected the two 15s intervals" % name
    with open(os.path.join(tmp, name), "w") as f:
        f.write(text)
    shutil.copy(os.path.join(PROM_DIR, "alerts.yml"), tmp)  # rule_files: alerts.yml
    return os.path.join(tmp, name), targets


class Prometheus:
    """/usr/bin/prometheus on a free port with the given config file."""

    def __init__(self, cfg, tmp):
        self.port = free_port()
        self.log = open(os.path.join(tmp, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.tmp = tmp

    def query(self, q):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port,
                                                      urllib.parse.urlencode({"query": q}))
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", (q, body)
        return body["data"]["result"]

    def scalar(self, q):
        res = self.query(q)
        assert len(res) == 1, (q, res)
        return float(res[0]["value"][1])

    def wait_scraped_after(self, t, n_targets):
        """Every target was scraped (and is up) after unix time t."""
        def fresh():
            res = self.query('timestamp(up{job=~"eventpipe.*"}) > %f' % t)
            ups = self.query('up{job=~"eventpipe.*"} == 1')
            return len(res) == n_targets and len(ups) == n_targets
        wait_for(fresh, timeout=60, interval=0.5,
                 what="%d targets scraped by Prometheus after the events" % n_targets)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if exc[0] is not None:
            with open(os.path.join(self.tmp, "prometheus.log"), "rb") as f:
                print("---- prometheus log ----\n" + f.read().decode(errors="replace")[-3000:])
        return False


def dashboard_exprs():
    out = []
    for name in sorted(os.listdir(DASHBOARDS)):
        with open(os.path.join(DASHBOARDS, name)) as f:
            for p in json.load(f)["panels"]:
                out.extend((name, p.get("title"), t["expr"]) for t in p.get("targets", []))
    return out


def check_event_panels(prom, truth):
    """Every dashboard expression over an event counter, with rate(x[w]) read as
    x (the total the rate is taken of), evaluates to the /stats total."""
    checked = set()
    for board, title, expr in dashboard_exprs():
        total = re.sub(r"rate\(([a-zA-Z_:][a-zA-Z0-9_:]*)\[\w+\]\)", r"\1", expr)
        m = re.match(r"^sum\(([a-zA-Z_:][a-zA-Z0-9_:]*)\)$", total)
        if m and m.group(1) in truth:
            got = prom.scalar(total)
            assert got == truth[m.group(1)], "%s %r: %s = %s, /stats says %s" % (
                board, title, expr, got, truth[m.group(1)])
            checked.add(expr)
        elif total == "sum by (status) (messages_processed_total)":
            by = {r["metric"].get("status"): float(r["value"][1]) for r in prom.query(total)}
            assert by.get("success") == truth["events_processed_total"], (board, title, by)
            assert by.get("error", 0) == 0, (board, title, by)
            checked.add(expr)
    for must in ("sum(events_processed_total)", "sum(rate(events_processed_total[1m]))",
                 "sum(producer_events_published_total)",
                 "sum(rate(producer_events_published_total[1m]))",
                 "sum by (status) (rate(messages_processed_total[1m]))"):
        assert must in checked, "dashboard expression %r not found or not checked" % must
    return checked


def stats_truth(ingest_port, processor_port):
    ing = get_json(ingest_port, "/stats")
    pool = get_json(processor_port, "/stats")["pool"]
    return {"events_processed_total": pool["processed"],
            "producer_events_published_total": ing["TotalSent"],
            "ep_ingest_events_received_total": ing["TotalReceived"],
            "producer_events_failed_total": ing["TotalFailed"],
            "ep_ingest_duplicates_total": ing["duplicates"],
            "ep_dead_lettered_total": pool["dead_lettered"]}


def send_and_check(cfg_name, ports, n, ingest_port, processor_port):
    tmp = tempfile.mkdtemp(prefix="ep-prom-")
    try:
        cfg, targets = shipped_config(cfg_name, ports, tmp)
        with Prometheus(cfg, tmp) as prom:
            for i in range(n):
                r = request(ports["api"], "POST", "/api/v1/ingest", seed_event(i))
                assert r.status == 202, r
            wait_for(lambda: stats_truth(ingest_port, processor_port)
                     ["events_processed_total"] == n, timeout=30, what="%d processed" % n)
            truth = stats_truth(ingest_port, processor_port)
            assert truth["producer_events_published_total"] == n, truth
            prom.wait_scraped_after(time.time(), len(targets))
            checked = check_event_panels(prom, truth)
        return targets, checked
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_shipped_config_counts_run_once():
    n = 17
    with Eventpipe("run") as ep:
        targets, checked = send_and_check("prometheus.yml", ep.ports, n, ep.ingest,
                                          ep.processor)
        assert ep.stop() == 0
    # One process, one target: its four ports serve the same registry.
    assert len(targets) == 1, targets
    assert len(checked) >= 8, checked


def test_split_config_one_job_per_role():
    n = 13
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing, \
            Eventpipe("gateway", ports=p) as gw, Eventpipe("analytics", ports=p) as an:
        targets, checked = send_and_check("prometheus-split.yml", p, n, p["ingest"],
                                          p["processor"])
        for e in (gw, ing, proc, an):
            assert e.stop() == 0
    assert sorted(targets) == sorted(DEFAULT_PORTS), targets
    assert len(checked) >= 8, checked


def test_promtool_check_config():
    for name in ("prometheus.yml", "prometheus-split.yml"):
        p = subprocess.run([PROMTOOL, "check", "config", os.path.join(PROM_DIR, name)],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, name + ": " + p.stdout.decode() + p.stderr.decode()


if __name__ == "__main__":
    main(globals())
