"""Issue 15, items 2-4, with curl as the client: API keys on the ingesting
routes (401 with WWW-Authenticate without or with a wrong key; 202 with either
header form, with a key from API_KEYS and from API_KEYS_FILE, plain or stored
as a SHA-256), reading routes behind keys on request, the role-to-role routes
(/enqueue, /analytics/merge) refused without INTERNAL_TOKEN and with an API
key, loopback-only while it is unset, split roles working end to end with the
token, and event rate limits per key and per client address (429 with
Retry-After and RateLimit-*, another key or address still served). Per-key
metrics carry names, never keys. In every case /stats shows exactly the
events that got a 2xx."""

import hashlib
import json
import os
import socket
import subprocess
import tempfile

from eptest import Eventpipe, free_port, get_json, main, request, wait_for

ALICE = "alice-key-0123456789"           # API_KEYS_FILE, plain
BOB = "bob-key-0123456789abc"            # API_KEYS_FILE, stored as its SHA-256
CAROL = "carol-key-0123456789"           # API_KEYS (named key1)
TOKEN = "internal-token-0123456789abcdef"
EVENT = '{"source":"t","data":"x"}'


def curl(port, path, data=None, headers=(), method=None, iface=None, host="127.0.0.1"):
    """One request with curl; returns (status, {lower-case header: value}, body)."""
    d = tempfile.mkdtemp(prefix="ep-curl-")
    hdr, body = os.path.join(d, "h"), os.path.join(d, "b")
    cmd = ["curl", "-s", "-S", "--max-time", "20", "-D", hdr, "-o", body, "-w", "%{http_code}"]
    if iface:
        cmd += ["--interface", iface]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", data]
    if method:
        cmd += ["-X", method]
    cmd.append("http://%s:%d%s" % (host, port, path))
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, (cmd, out.stderr)
    hs = {}
    with open(hdr) as f:
        for line in f.read().splitlines()[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hs[k.strip().lower()] = v.strip()
    with open(body, "rb") as f:
        b = f.read()
    return int(out.stdout), hs, b


def key_file(lines):
    fd, path = tempfile.mkstemp(prefix="ep-keys-")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def keys_env(**extra):
    path = key_file([
        "# test keys",
        "alice %s" % ALICE,
        "bob   sha256:%s   # hashed" % hashlib.sha256(BOB.encode()).hexdigest(),
    ])
    env = {"API_KEYS_FILE": path, "API_KEYS": CAROL}
    env.update(extra)
    return env


def ingest_stats(port):
    return get_json(port, "/stats")


def assert_kept(ep, n, port=None, headers=None):
    """Exactly n events acknowledged by ingest, and (eventually) n processed."""
    port = port or ep.ingest
    r = request(port, "GET", "/stats", headers=headers)
    assert r.status == 200, r
    s = r.json()
    assert s["TotalReceived"] == n and s["TotalSent"] == n, (n, s)
    ppath = ep.processor
    wait_for(lambda: request(ppath, "GET", "/stats", headers=headers).json()["pool"]["processed"]
             == n, timeout=30, what="%d processed" % n)


def metrics(port):
    return request(port, "GET", "/metrics").body.decode()


def sample(text, name, labels):
    want = "%s{%s} " % (name, labels)
    for line in text.splitlines():
        if line.startswith(want):
            return float(line[len(want):])
    raise AssertionError("no %s{%s} in /metrics" % (name, labels))


AUTH = lambda k: "Authorization: Bearer %s" % k  # noqa: E731
XKEY = lambda k: "X-API-Key: %s" % k  # noqa: E731


# ------------------------------------------------------------------ API keys

def test_keys_on_ingesting_routes():
    with Eventpipe("run", env=keys_env()) as ep:
        # Missing and wrong keys: 401 JSON with WWW-Authenticate, nothing kept.
        for hs in ([], [AUTH("wrong-key-0123456789")], [XKEY("wrong-key-0123456789")],
                   [AUTH(ALICE[:-1])], ["Authorization: Basic YWxpY2U6eA=="],
                   [AUTH(hashlib.sha256(BOB.encode()).hexdigest())]):
            st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, hs)
            assert st == 401, (hs, st, b)
            assert h.get("www-authenticate") == 'Bearer realm="eventpipe"', h
            assert "error" in json.loads(b), b
        st, h, b = curl(ep.ingest, "/events/batch", '[%s,%s]' % (EVENT, EVENT))
        assert st == 401, b
        # Each header form, each kind of key, each ingesting port.
        kept = 0
        for port, path, hs in ((ep.api, "/api/v1/ingest", [AUTH(ALICE)]),
                               (ep.api, "/api/v1/ingest", [XKEY(ALICE)]),
                               (ep.api, "/api/v1/ingest", [XKEY(BOB)]),
                               (ep.api, "/api/v1/ingest", ["authorization: bearer " + BOB]),
                               (ep.api, "/api/v1/events/user", [AUTH(CAROL)]),
                               (ep.ingest, "/events", [XKEY(CAROL)]),
                               (ep.ingest, "/events/async", [AUTH(ALICE)])):
            body = '{"data":"u"}' if path.endswith("/user") else EVENT
            st, h, b = curl(port, path, body, hs)
            assert st == 202, (port, path, hs, st, b)
            kept += 1
        st, h, b = curl(ep.api, "/api/v1/events/batch", "[%s,%s,%s]" % (EVENT, EVENT, EVENT),
                        [AUTH(BOB)])
        assert st == 202 and json.loads(b)["accepted"] == 3, b
        kept += 3
        # An invalid event with a good key is still the client's 400: nothing kept.
        st, h, b = curl(ep.api, "/api/v1/ingest", '{"source":', [AUTH(ALICE)])
        assert st == 400, b
        # Open without a key: health, readiness, metrics, the page, and reads by default.
        for port, path in ((ep.api, "/health"), (ep.ingest, "/ready"), (ep.processor, "/metrics"),
                           (ep.api, "/"), (ep.ingest, "/stats"), (ep.api, "/api/v1/status")):
            st, h, b = curl(port, path)
            assert st == 200, (path, st, b)
        assert_kept(ep, kept)
        # Per-key metrics: names, never keys.
        m = metrics(ep.api)
        assert sample(m, "ep_api_key_events_total", 'key="alice"') == 3
        assert sample(m, "ep_api_key_events_total", 'key="bob"') == 5
        assert sample(m, "ep_api_key_events_total", 'key="key1"') == 2
        assert sample(m, "ep_api_key_requests_total", 'key="bob",result="accepted"') == 3
        assert sample(m, "ep_auth_refused_total", 'reason="missing_key"') == 3
        assert sample(m, "ep_auth_refused_total", 'reason="invalid_key"') == 4
        for secret in (ALICE, BOB, CAROL, hashlib.sha256(BOB.encode()).hexdigest()):
            assert secret not in m
        assert ep.stop() == 0


def test_reads_behind_keys():
    with Eventpipe("run", env=keys_env(API_KEYS_PROTECT_READS="true")) as ep:
        for port, path in ((ep.ingest, "/stats"), (ep.processor, "/stats"),
                           (ep.processor, "/lag"), (ep.api, "/api/v1/status"),
                           (ep.api, "/api/v1/events/stats"), (ep.analytics, "/analytics/summary")):
            st, h, b = curl(port, path)
            assert st == 401 and h.get("www-authenticate"), (path, st, b)
            st, h, b = curl(port, path, headers=[XKEY(ALICE)])
            assert st == 200, (path, st, b)
        for port, path in ((ep.api, "/health"), (ep.ingest, "/ready"), (ep.api, "/metrics"),
                           (ep.api, "/")):
            assert curl(port, path)[0] == 200, path
        st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, [AUTH(BOB)])
        assert st == 202, b
        # The tools send a key when given one.
        binary = os.environ.get("EP_BIN", "build/eventpipe")
        url = "http://127.0.0.1:%d" % ep.api
        tool = lambda *a: subprocess.run([binary] + list(a), capture_output=True, text=True,  # noqa
                                         timeout=60, check=False)
        assert tool("status", "--url", url).returncode == 1
        out = tool("status", "--url", url, "--api-key", ALICE)
        assert out.returncode == 0, out
        assert tool("send", "--url", url, "--count", "3", "--quiet").returncode == 1
        out = tool("send", "--url", url, "--count", "3", "--quiet", "--api-key", CAROL)
        assert out.returncode == 0, out
        assert_kept(ep, 4, headers={"X-API-Key": BOB})
        assert ep.stop() == 0


def free_ports():
    return {k: str(free_port()) for k in ("API_PORT", "INGEST_PORT", "PROCESSOR_PORT",
                                           "ANALYTICS_PORT")}


def test_bad_key_settings_exit_2():
    cases = [
        (["alice short"], "API_KEYS_FILE: %s:1: the key is 5 characters long"),
        (["# c", "alice %s" % ALICE, "alice %s" % BOB], "API_KEYS_FILE: %s:3: the name 'alice'"),
        (["bob sha256:abc"], "API_KEYS_FILE: %s:1: a sha256: key needs exactly 64 hex digits"),
        (["alice %s rate=fast" % ALICE], "API_KEYS_FILE: %s:1: rate must be a whole number"),
    ]
    for lines, want in cases:
        path = key_file(lines)
        env = dict(os.environ, API_KEYS_FILE=path, **free_ports())
        out = subprocess.run([os.environ.get("EP_BIN", "build/eventpipe"), "run"], env=env,
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 2, (lines, out.returncode, out.stderr)
        assert (want % path) in out.stderr, (want % path, out.stderr)
    for env, want in (({"API_KEYS": "tiny"}, "API_KEYS: key 1: the key is 4 characters"),
                      ({"INTERNAL_TOKEN": "short"}, "INTERNAL_TOKEN: 5 characters"),
                      ({"API_KEYS_FILE": "/nonexistent/keys"}, "API_KEYS_FILE: cannot open"),
                      ({"RATE_LIMIT_EVENTS_PER_SEC": "-1"}, "RATE_LIMIT_EVENTS_PER_SEC: -1 is"),
                      ({"API_KEYS_PROTECT_READS": "yes"}, "API_KEYS_PROTECT_READS: 'yes'")):
        out = subprocess.run([os.environ.get("EP_BIN", "build/eventpipe"), "run"],
                             env=dict(os.environ, **env, **free_ports()), capture_output=True,
                             text=True, timeout=30, check=False)
        assert out.returncode == 2 and want in out.stderr, (env, out.returncode, out.stderr)


# ------------------------------------------------------------------ internal routes

def test_internal_routes_need_the_token():
    with Eventpipe("run", env=keys_env(INTERNAL_TOKEN=TOKEN)) as ep:
        ep.wait_log("need INTERNAL_TOKEN")
        for port, path, body in ((ep.processor, "/enqueue", EVENT),
                                 (ep.analytics, "/analytics/merge", "EPAD")):
            for hs in ([], [AUTH(ALICE)], [XKEY(ALICE)], [AUTH("not-the-token-0123456789")]):
                st, h, b = curl(port, path, body, hs)
                assert st == 401, (path, hs, st, b)
                assert "INTERNAL_TOKEN" in json.loads(b)["error"], b
        # The token opens them (merge then judges the body: 400, nothing merged).
        st, h, b = curl(ep.processor, "/enqueue", EVENT, [AUTH(TOKEN)])
        assert st == 202, b
        st, h, b = curl(ep.analytics, "/analytics/merge", "EPAD", [AUTH(TOKEN)])
        assert st == 400, b
        # The token is not an API key.
        st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, [AUTH(TOKEN)])
        assert st == 401, b
        m = metrics(ep.api)
        assert sample(m, "ep_api_key_requests_total", 'key="alice",result="unauthorized"') == 4
        assert sample(m, "ep_auth_refused_total", 'reason="missing_token"') == 4
        assert TOKEN not in m
        # Ingest kept nothing; the processor processed the one enqueued event.
        s = ingest_stats(ep.ingest)
        assert s["TotalReceived"] == 0 and s["TotalSent"] == 0, s
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 1,
                 what="1 processed")
        assert ep.stop() == 0


def other_local_address():
    """A local address that is not loopback (hostname -I), or None."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5,
                             check=False).stdout.split()
    except OSError:
        return None
    for a in out:
        if ":" not in a and not a.startswith("127."):
            try:
                with socket.socket() as s:
                    s.bind((a, 0))
                return a
            except OSError:
                continue
    return None


def test_internal_routes_loopback_only_without_token():
    addr = other_local_address()
    env = {"BIND_ADDR": "0.0.0.0"} if addr else {}
    with Eventpipe("run", env=env) as ep:
        ep.wait_log("answer loopback clients only")
        st, h, b = curl(ep.processor, "/enqueue", EVENT)
        assert st == 202, b
        if addr is None:
            print("note: no non-loopback local address; the refusal is covered by test_auth")
        else:
            for port, path, body in ((ep.processor, "/enqueue", EVENT),
                                     (ep.analytics, "/analytics/merge", "EPAD")):
                st, h, b = curl(port, path, body, host=addr, iface=addr)
                assert st == 403, (path, st, b)
                assert "loopback" in json.loads(b)["error"], b
            # The public routes still answer that address.
            st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, host=addr, iface=addr)
            assert st == 202, b
        s = ingest_stats(ep.ingest)
        n = 1 if addr else 0
        assert s["TotalSent"] == n, s
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == n + 1,
                 what="processed")
        assert ep.stop() == 0


def test_split_roles_with_token_and_keys():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    env = keys_env(INTERNAL_TOKEN=TOKEN, ANALYTICS_PUSH_INTERVAL_MS="100")
    with Eventpipe("analytics", ports=p, env=env) as an, \
            Eventpipe("processor", ports=p, env=env) as proc, \
            Eventpipe("ingest", ports=p, env=env) as ing, \
            Eventpipe("gateway", ports=p, env=env) as gw:
        wait_for(lambda: request(p["api"], "GET", "/ready").status == 200, timeout=15,
                 what="gateway ready")
        st, h, b = curl(p["api"], "/api/v1/ingest", EVENT)
        assert st == 401 and h.get("www-authenticate") == 'Bearer realm="eventpipe"', (st, h, b)
        st, h, b = curl(p["api"], "/api/v1/ingest", EVENT, [AUTH("wrong-key-0123456789")])
        assert st == 401 and h.get("www-authenticate"), (st, h, b)
        for hs in ([AUTH(ALICE)], [XKEY(BOB)], [AUTH(CAROL)]):
            st, h, b = curl(p["api"], "/api/v1/ingest", EVENT, hs)
            assert st == 202, (hs, st, b)
        st, h, b = curl(p["api"], "/api/v1/events/batch", "[%s,%s]" % (EVENT, EVENT), [XKEY(ALICE)])
        assert st == 202 and json.loads(b)["accepted"] == 2, b
        # Events charged once: at ingest, the place that counts them.
        m = metrics(p["ingest"])
        assert sample(m, "ep_api_key_events_total", 'key="alice"') == 3
        # Ingest's hop to /enqueue and the processor's pushes to /analytics/merge carry the token.
        wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == 5,
                 timeout=30, what="5 processed")
        wait_for(lambda: get_json(p["analytics"], "/analytics/summary")["total_events"] == 5,
                 timeout=30, what="5 in analytics")
        s = get_json(p["ingest"], "/stats")
        assert s["TotalSent"] == 5 and s["TotalReceived"] == 5, s
        status = get_json(p["api"], "/api/v1/status")
        assert all(status[r]["healthy"] for r in ("ingest", "processor", "analytics")), status
        # Nobody else reaches the processor around ingest.
        assert curl(p["processor"], "/enqueue", EVENT, [AUTH(ALICE)])[0] == 401
        for e in (gw, ing, proc, an):
            assert e.stop() == 0


def test_split_roles_with_different_tokens():
    """A processor that refuses ingest's token is ingest's 503 (nothing kept), not the
    client's 400, and the log says what to fix."""
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    with Eventpipe("processor", ports=p, env={"INTERNAL_TOKEN": TOKEN}) as proc, \
            Eventpipe("ingest", ports=p, env={"INTERNAL_TOKEN": TOKEN[::-1]}) as ing:
        wait_for(lambda: request(p["ingest"], "GET", "/ready").status == 200, timeout=15,
                 what="ingest ready")
        st, h, b = curl(p["ingest"], "/ingest", EVENT)
        assert st == 503 and h.get("retry-after"), (st, b)
        assert json.loads(b)["maybe_kept"] is False, b
        st, h, b = curl(p["ingest"], "/events/batch", batch(2))
        assert st == 503, (st, b)
        s = get_json(p["ingest"], "/stats")
        assert s["TotalSent"] == 0 and s["TotalFailed"] == 3, s
        assert get_json(p["processor"], "/stats")["queue"]["enqueued"] == 0
        m = metrics(p["processor"])
        assert sample(m, "ep_auth_refused_total", 'reason="invalid_token"') >= 2
        for e in (ing, proc):
            assert e.stop() == 0


# ------------------------------------------------------------------ rate limits

def batch(n):
    return "[" + ",".join([EVENT] * n) + "]"


def test_rate_limit_per_key():
    path = key_file(["alice %s" % ALICE, "bob %s rate=1 burst=3" % BOB])
    # 1 event/s with a burst of 50: refilling 50 takes 50 s, longer than any test step.
    env = {"API_KEYS_FILE": path, "RATE_LIMIT_EVENTS_PER_SEC": "1", "RATE_LIMIT_BURST": "50"}
    with Eventpipe("run", env=env) as ep:
        kept = 0
        st, h, b = curl(ep.api, "/api/v1/events/batch", batch(50), [AUTH(ALICE)])
        assert st == 202 and json.loads(b)["accepted"] == 50, b  # a batch of 50 costs 50
        assert h["ratelimit-limit"] == "50" and h["ratelimit-remaining"] == "0", h
        kept += 50
        st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, [AUTH(ALICE)])
        assert st == 429, (st, b)
        assert int(h["retry-after"]) >= 1 and h["ratelimit-limit"] == "50", h
        assert h["ratelimit-remaining"] == "0" and int(h["ratelimit-reset"]) >= 1, h
        assert "rate limit" in json.loads(b)["error"], b
        st, h, b = curl(ep.ingest, "/events/batch", batch(10), [XKEY(ALICE)])
        assert st == 429, b
        # Another key is served meanwhile: its own bucket (from the file: burst 3).
        for _ in range(3):
            st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, [XKEY(BOB)])
            assert st == 202 and h["ratelimit-limit"] == "3", (st, h, b)
            kept += 1
        st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, [XKEY(BOB)])
        assert st == 429, b
        # More than the burst at once can never pass: 413, not a 429 to retry.
        st, h, b = curl(ep.api, "/api/v1/events/batch", batch(4), [XKEY(BOB)])
        assert st == 413 and "burst" in json.loads(b)["error"], b
        assert_kept(ep, kept)
        m = metrics(ep.api)
        assert sample(m, "ep_api_key_requests_total", 'key="alice",result="rate_limited"') == 2
        assert sample(m, "ep_api_key_requests_total", 'key="bob",result="rate_limited"') == 2
        assert sample(m, "ep_api_key_events_total", 'key="alice"') == 50
        assert ep.stop() == 0


def test_rate_limit_per_address_and_through_the_gateway():
    env = {"RATE_LIMIT_EVENTS_PER_SEC": "1", "RATE_LIMIT_BURST": "20"}
    with Eventpipe("run", env=env) as ep:
        st, h, b = curl(ep.api, "/api/v1/events/batch", batch(20))
        assert st == 202, b
        st, h, b = curl(ep.api, "/api/v1/ingest", EVENT)
        assert st == 429 and int(h["retry-after"]) >= 1, (st, h, b)
        st, h, b = curl(ep.ingest, "/ingest", EVENT)  # the same address on another port
        assert st == 429, b
        st, h, b = curl(ep.api, "/api/v1/ingest", EVENT, iface="127.0.0.2")
        assert st == 202 and h["ratelimit-remaining"] == "19", (st, h, b)
        assert_kept(ep, 21)
        assert ep.stop() == 0
    # Split: the gateway passes the client's address on, so clients do not share its bucket.
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    env = dict(env, INTERNAL_TOKEN=TOKEN)
    with Eventpipe("processor", ports=p, env=env) as proc, \
            Eventpipe("ingest", ports=p, env=env) as ing, \
            Eventpipe("gateway", ports=p, env=env) as gw:
        wait_for(lambda: request(p["api"], "GET", "/ready").status == 200, timeout=15,
                 what="gateway ready")
        st, h, b = curl(p["api"], "/api/v1/events/batch", batch(20))
        assert st == 202, b
        st, h, b = curl(p["api"], "/api/v1/ingest", EVENT)
        assert st == 429 and h.get("retry-after") and h.get("ratelimit-limit") == "20", (st, h, b)
        st, h, b = curl(p["api"], "/api/v1/ingest", EVENT, iface="127.0.0.2")
        assert st == 202, (st, h, b)
        s = get_json(p["ingest"], "/stats")
        assert s["TotalSent"] == 21 and s["TotalReceived"] == 21, s
        wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == 21,
                 timeout=30, what="21 processed")
        for e in (gw, ing, proc):
            assert e.stop() == 0


if __name__ == "__main__":
    main(globals())
