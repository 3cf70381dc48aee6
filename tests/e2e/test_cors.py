"""CORS and security headers (issue 15, item 5), with curl as the client:
CORS_ALLOWED_ORIGINS validation (exit 2), preflight OPTIONS from an allowed and
a refused origin on every role's port, the CORS headers of ordinary answers,
requests from other web origins refused (403) with nothing kept, and
X-Content-Type-Options: nosniff / Cache-Control: no-store on 2xx, 4xx, 5xx and
the server's own refusals (404, 405, 413, 431, a malformed request, the
per-client connection limit); the dashboard's CSP, framing and referrer
headers. In every case /stats shows that exactly the 2xx events were
processed."""

import json
import os
import socket
import subprocess

from eptest import EP_BIN, Eventpipe, free_port, get_json, main, raw_exchange, wait_for

ALLOWED = "http://app.test:8000"
OTHER = "https://app.test"  # another scheme and port: another origin
REFUSED = "https://evil.test"
EVENT = json.dumps({"source": "cors", "data": "x"})


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def one(self, name):
        """The only value of a header (None when absent); two of them fail."""
        v = self.headers.get(name.lower(), [])
        assert len(v) <= 1, (name, v)
        return v[0] if v else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:200])


def curl(port, method, path, headers=(), data=None):
    """One request with curl; the final answer (1xx skipped)."""
    cmd = ["curl", "-s", "-i", "--max-time", "20", "-X", method,
           "http://127.0.0.1:%d%s" % (port, path)]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["--data-binary", "@-"]
    p = subprocess.run(cmd, input=data.encode() if isinstance(data, str) else data,
                       capture_output=True, timeout=40)
    assert p.returncode == 0, (cmd, p.returncode, p.stderr)
    out = p.stdout
    while True:
        head, _, out = out.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status >= 200:
            break
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return Answer(status, hdrs, out)


def post_event(port, path="/api/v1/ingest", origin=None, ctype="application/json", extra=()):
    h = ["Content-Type: " + ctype] + list(extra)
    if origin:
        h.append("Origin: " + origin)
    return curl(port, "POST", path, h, EVENT)


def preflight(port, path, origin, method="POST"):
    return curl(port, "OPTIONS", path, ["Origin: " + origin,
                                        "Access-Control-Request-Method: " + method,
                                        "Access-Control-Request-Headers: content-type,x-api-key"])


def no_cors_headers(a):
    return not [k for k in a.headers if k.startswith("access-control-")]


def assert_secure(a, what):
    assert a.one("X-Content-Type-Options") == "nosniff", (what, a)
    assert a.one("Cache-Control") == "no-store", (what, a)


def assert_processed(ep, n):
    """Exactly n events processed, and no more arrive."""
    wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] >= n, timeout=30,
             what="%d processed" % n)
    ing = get_json(ep.ingest, "/stats")
    assert ing["TotalSent"] == n, ing
    st = get_json(ep.processor, "/stats")
    assert st["pool"]["processed"] == n and st["queue"]["enqueued"] == n, st


def start_fails(env):
    e = dict(env)
    e.update({"API_PORT": str(free_port()), "INGEST_PORT": str(free_port()),
              "PROCESSOR_PORT": str(free_port()), "ANALYTICS_PORT": str(free_port()),
              "BIND_ADDR": "127.0.0.1"})
    full = dict(os.environ)
    full.update(e)
    p = subprocess.run([EP_BIN, "run"], env=full, capture_output=True, timeout=30)
    return p.returncode, p.stderr.decode(errors="replace") + p.stdout.decode(errors="replace")


def test_malformed_setting_exits_2():
    for bad, words in [("https://app.test/", "no path"), ("app.test", "no scheme"),
                       ("https://*.app.test", "wildcards"), ("http://a.test:99999", "65535"),
                       ("http://a.test,,http://b.test", "empty entry"),
                       ("*,http://a.test", "'*'"), ("null", "'null'")]:
        rc, out = start_fails({"CORS_ALLOWED_ORIGINS": bad})
        assert rc == 2, (bad, rc, out)
        assert "CORS_ALLOWED_ORIGINS:" in out and words in out, (bad, out)
    p = subprocess.run([EP_BIN, "run", "--help"], capture_output=True, timeout=30)
    assert b"CORS_ALLOWED_ORIGINS" in p.stdout + p.stderr


def test_preflight_allowed_and_refused_on_every_port():
    origins = "%s, HTTPS://APP.test:443" % ALLOWED  # the second is https://app.test
    with Eventpipe("run", env={"CORS_ALLOWED_ORIGINS": origins}) as ep:
        for port, path, methods in [(ep.api, "/api/v1/ingest", "POST"),
                                    (ep.api, "/api/v1/status", "GET, HEAD"),
                                    (ep.ingest, "/events/batch", "POST"),
                                    (ep.processor, "/stats", "GET, HEAD"),
                                    (ep.analytics, "/analytics/summary", "GET, HEAD")]:
            for origin in (ALLOWED, OTHER):
                a = preflight(port, path, origin)
                assert a.status == 204, (path, origin, a)
                assert a.one("Access-Control-Allow-Origin") == origin, a
                assert a.one("Access-Control-Allow-Methods") == methods, a
                hdrs = [h.strip().lower() for h in
                        a.one("Access-Control-Allow-Headers").split(",")]
                for h in ("content-type", "content-encoding", "authorization", "x-api-key"):
                    assert h in hdrs, (h, a)
                assert int(a.one("Access-Control-Max-Age")) > 0, a
                assert a.one("Vary") == "Origin", a
                assert a.body == b"", a
                assert_secure(a, "preflight")
            for origin in (REFUSED, "http://app.test:8001", "null"):
                a = preflight(port, path, origin)
                assert a.status == 403 and no_cors_headers(a), (path, origin, a)
                assert "CORS_ALLOWED_ORIGINS" in a.json()["error"], a
                assert_secure(a, "refused preflight")
        # An unknown path is still 404; an OPTIONS that is no preflight keeps its 405.
        a = preflight(ep.api, "/nope", ALLOWED)
        assert a.status == 404 and a.one("Access-Control-Allow-Origin") == ALLOWED, a
        a = curl(ep.api, "OPTIONS", "/api/v1/ingest")
        assert a.status == 405 and a.one("Allow") == "POST" and no_cors_headers(a), a
        assert_processed(ep, 0)
        assert ep.stop() == 0


def test_cross_origin_requests_and_what_is_kept():
    with Eventpipe("run", env={"CORS_ALLOWED_ORIGINS": ALLOWED}) as ep:
        ok = 0
        # From the allowed origin: served, with the CORS headers a page needs.
        for path, port in (("/api/v1/ingest", ep.api), ("/ingest", ep.ingest)):
            a = post_event(port, path, origin=ALLOWED)
            assert a.status == 202, a
            ok += 1
            assert a.one("Access-Control-Allow-Origin") == ALLOWED, a
            assert a.one("Vary") == "Origin", a
            exposed = [h.strip() for h in a.one("Access-Control-Expose-Headers").split(",")]
            for h in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
                assert h in exposed, (h, a)
            assert a.one("Access-Control-Allow-Credentials") is None, a
            assert_secure(a, "202")
        # An error answer to the allowed origin can be read by its page too.
        a = curl(ep.api, "POST", "/api/v1/ingest", ["Origin: " + ALLOWED,
                                                    "Content-Type: application/json"], "{")
        assert a.status == 400 and a.one("Access-Control-Allow-Origin") == ALLOWED, a
        # From another origin: refused before any handler, also the kinds of POST a
        # browser sends without a preflight (text/plain, form), on every port.
        for ctype in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
            for path, port in (("/api/v1/ingest", ep.api), ("/ingest", ep.ingest),
                               ("/events/batch", ep.ingest)):
                a = post_event(port, path, origin=REFUSED, ctype=ctype)
                assert a.status == 403 and no_cors_headers(a), (path, ctype, a)
                assert a.one("Vary") == "Origin", a
                assert_secure(a, "403")
        a = curl(ep.processor, "GET", "/stats", ["Origin: " + REFUSED])
        assert a.status == 403, a
        # Without Origin (curl, other servers) nothing changes; nor from the
        # server's own origin (the dashboard's requests).
        a = post_event(ep.api)
        assert a.status == 202 and no_cors_headers(a), a
        a = post_event(ep.api, origin="http://127.0.0.1:%d" % ep.api)
        assert a.status == 202 and no_cors_headers(a), a
        ok += 2
        assert_processed(ep, ok)
        assert ep.stop() == 0


def test_default_is_no_cross_origin_access_and_star_is_any():
    with Eventpipe("run") as ep:
        a = preflight(ep.api, "/api/v1/ingest", ALLOWED)
        assert a.status == 403 and no_cors_headers(a), a
        a = post_event(ep.api, origin=ALLOWED, ctype="text/plain")
        assert a.status == 403 and no_cors_headers(a) and a.one("Vary") is None, a
        a = post_event(ep.api)
        assert a.status == 202 and no_cors_headers(a) and a.one("Vary") is None, a
        assert_processed(ep, 1)
        assert ep.stop() == 0
    with Eventpipe("run", env={"CORS_ALLOWED_ORIGINS": "*"}) as ep:
        a = preflight(ep.api, "/api/v1/ingest", REFUSED)
        assert a.status == 204 and a.one("Access-Control-Allow-Origin") == "*", a
        a = post_event(ep.api, origin=REFUSED)
        assert a.status == 202 and a.one("Access-Control-Allow-Origin") == "*", a
        assert_processed(ep, 1)
        assert ep.stop() == 0


def raw_headers(out):
    head = out.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(head[0].split()[1]), [h.lower() for h in head[1:]]


def test_security_headers_on_every_answer():
    env = {"HTTP_MAX_BODY": "2048", "HTTP_MAX_HEADER": "4096",
           "HTTP_MAX_CONNECTIONS_PER_CLIENT": "2"}
    with Eventpipe("run", env=env) as ep:
        checks = [
            (curl(ep.api, "POST", "/api/v1/ingest", ["Content-Type: application/json"], EVENT),
             202),
            (curl(ep.api, "GET", "/health"), 200),
            (curl(ep.ingest, "GET", "/metrics"), 200),
            (curl(ep.processor, "GET", "/stats"), 200),
            (curl(ep.analytics, "GET", "/analytics/summary"), 200),
            (curl(ep.api, "POST", "/api/v1/ingest", ["Content-Type: application/json"], "{"), 400),
            (curl(ep.api, "GET", "/nope"), 404),
            (curl(ep.api, "GET", "/api/v1/ingest"), 405),
            (curl(ep.api, "POST", "/api/v1/ingest", ["Content-Type: application/json"],
                  "x" * 5000), 413),
            (curl(ep.api, "POST", "/api/v1/ingest", ["Content-Type: image/png"], EVENT), 415),
            (curl(ep.api, "GET", "/health", ["X-Big: " + "a" * 6000]), 431),
        ]
        for a, status in checks:
            assert a.status == status, (status, a)
            assert_secure(a, status)
        # A request the parser refuses, and the per-client connection limit's 503
        # (written by the server before any request is read).
        status, hdrs = raw_headers(raw_exchange(ep.api, b"BROKEN\r\n\r\n"))
        assert status == 400 and "x-content-type-options: nosniff" in hdrs, hdrs
        assert "cache-control: no-store" in hdrs, hdrs
        held = [socket.create_connection(("127.0.0.1", ep.api), timeout=10) for _ in range(2)]
        try:
            out = raw_exchange(ep.api, b"")
        finally:
            for s in held:
                s.close()
        status, hdrs = raw_headers(out)
        assert status == 503 and "x-content-type-options: nosniff" in hdrs, out
        assert "cache-control: no-store" in hdrs, out
        assert_processed(ep, 1)
        assert ep.stop() == 0
    # A 5xx from a handler: the gateway alone, its ingest down.
    gw_ports = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    with Eventpipe("gateway", ports=gw_ports) as gw:
        a = curl(gw.api, "POST", "/api/v1/ingest", ["Content-Type: application/json"], EVENT)
        assert a.status == 503 and a.one("Retry-After") is not None, a
        assert_secure(a, 503)
        assert gw.stop() == 0


def test_dashboard_headers():
    with Eventpipe("run") as ep:
        a = curl(ep.api, "GET", "/")
        assert a.status == 200 and a.one("Content-Type").startswith("text/html"), a
        csp = a.one("Content-Security-Policy")
        assert csp, a
        rules = dict((r.strip().split(" ", 1) + [""])[:2] for r in csp.split(";"))
        assert rules["frame-ancestors"] == "'none'", csp
        assert rules["default-src"] == "'none'", csp
        for d in ("script-src", "style-src", "connect-src"):
            assert rules[d] == "'self'", (d, csp)
        assert "unsafe" not in csp, csp
        assert a.one("X-Frame-Options") == "DENY", a
        assert a.one("Referrer-Policy") == "no-referrer", a
        assert a.one("X-Content-Type-Options") == "nosniff", a
        assert a.one("Cache-Control") == "no-cache", a  # the handler's, not a second one
        page = a.body.decode()
        assert "<script>" not in page and "<style>" not in page and "style=" not in page
        for path, ctype in (("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css")):
            a = curl(ep.api, "GET", path)
            assert a.status == 200 and a.one("Content-Type").startswith(ctype), a
            assert a.one("X-Content-Type-Options") == "nosniff", a
            assert ("href=\"%s\"" % path in page) or ("src=\"%s\"" % path in page), path
        # API answers are never stored, the dashboard's data included.
        a = curl(ep.api, "GET", "/api/v1/dashboard")
        assert a.status == 200 and a.one("Cache-Control") == "no-store", a
        assert_processed(ep, 0)
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
