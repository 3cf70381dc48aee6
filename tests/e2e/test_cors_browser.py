"""CORS in a real browser (issue 15, item 5): headless Chromium (Debian's
package) opens a page served by a small Python HTTP server on another
127.0.0.1 port, whose script fetch()es a JSON event to eventpipe (a
preflighted request) and then sends one the way a form would (no-cors,
text/plain: no preflight), and writes the outcome into the page. When the
page's origin is in CORS_ALLOWED_ORIGINS both are accepted and the script
reads the answer; when it is not, the fetch is blocked and the form-like POST
refused, and /stats shows that exactly the accepted events were processed.
Also: the dashboard runs under its Content-Security-Policy without a single
violation, and a page of another origin cannot frame it."""

import http.server
import re
import shutil
import subprocess
import tempfile
import threading

from eptest import Eventpipe, free_port, get_json, main, request, seed_event, wait_for
from test_dashboard import CHROMIUM, FLAGS

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>another origin</title></head>
<body><pre id="out">waiting</pre>
<script>
"use strict";
var q = new URLSearchParams(location.search), api = "http://127.0.0.1:" + q.get("api");
var lines = [];
function out(s) { lines.push(s); document.getElementById("out").textContent = lines.join("|"); }
fetch(api + "/api/v1/ingest", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: q.get("id") + "-fetch", source: "browser", data: "x"})})
  .then(function (r) {
    return r.json().then(function (j) {
      out("fetch:" + r.status + ":" + j.status + ":" + j.messageId + ":" +
          r.headers.get("Content-Type"));
    });
  })
  .catch(function (e) { out("fetch:blocked:" + e.name); })
  .then(function () {
    return fetch(api + "/api/v1/ingest", {method: "POST", mode: "no-cors",
                 headers: {"Content-Type": "text/plain"},
                 body: JSON.stringify({id: q.get("id") + "-form", source: "browser", data: "y"})})
      .then(function (r) { out("form:" + r.type); })
      .catch(function (e) { out("form:error:" + e.name); });
  })
  .then(function () { out("done"); });
</script></body></html>
"""

FRAME = """<!doctype html>
<html><head><meta charset="utf-8"><title>framing</title></head>
<body><iframe src="http://127.0.0.1:%d/" width="800" height="600"></iframe></body></html>
"""


class PageServer:
    """A tiny web server of another origin: GET / answers PAGE, GET /frame FRAME
    framing the dashboard of eventpipe's port api_port (set once it runs)."""

    def __init__(self):
        server = self
        self.api_port = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server interface
                pages = {"/": PAGE, "/frame": FRAME % server.api_port}
                body = pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self):
        return "http://127.0.0.1:%d" % self.port

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        return False


def chromium(url, budget_ms=5000):
    """Renders url in headless Chromium with a fresh profile: (DOM, console log lines)."""
    profile = tempfile.mkdtemp(prefix="ep-chromium-")
    try:
        p = subprocess.run([CHROMIUM] + FLAGS +
                           ["--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
                            "--virtual-time-budget=%d" % budget_ms, "--dump-dom", url],
                           capture_output=True, timeout=120)
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 0, err[-3000:]
        return p.stdout.decode(errors="replace"), [l for l in err.splitlines() if "CONSOLE" in l]
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def outcome(dom):
    m = re.search(r'<pre id="out">([^<]*)</pre>', dom)
    assert m, dom[-2000:]
    return m.group(1).split("|")


def gateway_answers(ep, method, status):
    """http_requests_total of the gateway's ingest route for method and status."""
    r = request(ep.api, "GET", "/metrics")
    m = re.search(r'http_requests_total\{role="gateway",route="/api/v1/ingest",method="%s",'
                  r'status="%d"\} (\d+)' % (method, status), r.body.decode())
    return int(m.group(1)) if m else 0


def assert_processed(ep, n):
    wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] >= n, timeout=30,
             what="%d processed" % n)
    assert get_json(ep.ingest, "/stats")["TotalSent"] == n
    st = get_json(ep.processor, "/stats")
    assert st["pool"]["processed"] == n and st["queue"]["enqueued"] == n, st


def test_listed_origin_is_accepted():
    with PageServer() as page:
        env = {"CORS_ALLOWED_ORIGINS": "https://elsewhere.test, " + page.origin}
        with Eventpipe("run", env=env) as ep:
            dom, _ = chromium("%s/?api=%d&id=listed" % (page.origin, ep.api))
            got = outcome(dom)
            assert got == ["fetch:202:accepted:listed-fetch:application/json", "form:opaque",
                           "done"], got
            assert gateway_answers(ep, "OPTIONS", 204) == 1
            assert gateway_answers(ep, "POST", 202) == 2
            assert_processed(ep, 2)
            assert ep.stop() == 0


def test_unlisted_origin_is_blocked():
    with PageServer() as page:
        # Listed: the same host on another port, which is another origin.
        env = {"CORS_ALLOWED_ORIGINS": "http://127.0.0.1:%d" % free_port()}
        with Eventpipe("run", env=env) as ep:
            dom, _ = chromium("%s/?api=%d&id=unlisted" % (page.origin, ep.api))
            got = outcome(dom)
            assert got == ["fetch:blocked:TypeError", "form:opaque", "done"], got
            # The browser asked first and stopped; the form-like POST went out and was refused.
            assert gateway_answers(ep, "OPTIONS", 403) == 1
            assert gateway_answers(ep, "POST", 403) == 1
            assert gateway_answers(ep, "POST", 202) == 0
            assert_processed(ep, 0)
            assert ep.stop() == 0


def test_dashboard_runs_under_its_csp_and_cannot_be_framed():
    with PageServer() as page:
        with Eventpipe("run") as ep:
            page.api_port = ep.api
            for i in range(5):
                assert request(ep.api, "POST", "/api/v1/ingest", seed_event(i)).status == 202
            assert request(ep.api, "POST", "/api/v1/events/user", {"data": "u"}).status == 202
            assert_processed(ep, 6)
            # Rendered with data (the roles and types tables, the chart): no CSP violation.
            dom, console = chromium("http://127.0.0.1:%d/" % ep.api, 3000)
            assert re.search(r'id="ingested"[^>]*>6<', dom), dom[-3000:]
            assert "user_created" in dom
            bad = [l for l in console if "Content Security Policy" in l or "Refused" in l]
            assert not bad, bad
            # Framed by a page of another origin: refused by frame-ancestors 'none'.
            dom, console = chromium(page.origin + "/frame", 3000)
            assert any("frame-ancestors" in l for l in console), console
            assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
