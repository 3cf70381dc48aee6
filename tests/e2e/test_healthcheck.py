"""`eventpipe healthcheck` (the container image's HEALTHCHECK, issue 17): GET
/health or /ready of one role on this host, with the ports, address and TLS
settings of the environment; exit 0 on a 200, 1 otherwise, 2 on a usage error."""

import subprocess

from eptest import EP_BIN, Eventpipe, free_port, main
from test_tls import certs, ports, tls_env, wait_https


def check(env, *args):
    return subprocess.run([EP_BIN, "healthcheck"] + list(args), env=env, capture_output=True,
                          text=True, timeout=30)


def test_every_role_of_run_and_split_roles():
    with Eventpipe("run") as ep:
        for role, port in (("run", ep.api), ("gateway", ep.api), ("ingest", ep.ingest),
                           ("processor", ep.processor), ("analytics", ep.analytics)):
            args = [] if role == "run" else [role]
            r = check(ep.env, *args)
            assert r.returncode == 0, (role, r)
            assert r.stdout.strip() == "http://127.0.0.1:%d/health: 200" % port, (role, r)
            r = check(ep.env, *(args + ["--ready"]))
            assert r.returncode == 0 and "/ready: 200" in r.stdout, (role, r)
        env = dict(ep.env)
        assert ep.stop() == 0
    r = check(env)
    assert r.returncode == 1, r
    assert "http://127.0.0.1:%d/health" % ep.api in r.stderr, r

    # A processor alone: its own port answers, the gateway's does not.
    with Eventpipe("processor") as proc:
        assert check(proc.env, "processor").returncode == 0
        r = check(proc.env, "gateway")
        assert r.returncode == 1 and str(proc.ports["api"]) in r.stderr, r
        assert proc.stop() == 0


def test_not_ready_is_unhealthy_only_for_ready():
    # NATS on a port where nothing listens: alive, not ready (503).
    env = {"QUEUE_TYPE": "nats", "NATS_URL": "nats://127.0.0.1:%d" % free_port()}
    with Eventpipe("ingest", env=env) as ing:
        assert check(ing.env, "ingest").returncode == 0
        r = check(ing.env, "ingest", "--ready")
        assert r.returncode == 1 and "status 503" in r.stderr, r
        assert ing.stop() == 0


def test_wildcard_address_and_tls():
    # BIND_ADDR 0.0.0.0 is reached on localhost; with TLS over https, verified
    # against TLS_CA_FILE (the certificate names localhost).
    c = certs()
    p = ports()
    env = tls_env(c, p, BIND_ADDR="0.0.0.0")
    with Eventpipe("run", ports=p, env=env, wait=False) as ep:
        wait_https(ep, p["api"], "--cacert", c["ca1"])
        r = check(ep.env)
        assert r.returncode == 0, r
        assert r.stdout.strip() == "https://localhost:%d/health: 200" % p["api"], r
        # A CA that did not sign the server's certificate: not healthy.
        bad = dict(ep.env, TLS_CA_FILE=c["ca2"])
        assert check(bad, "processor").returncode == 1
        assert ep.stop() == 0


def test_usage_and_bad_settings():
    r = check(None, "nope")
    assert r.returncode == 2 and "unknown role 'nope'" in r.stderr, r
    r = check(None, "run", "--bogus")
    assert r.returncode == 2, r
    r = check(None, "--help")
    assert r.returncode == 0 and "Usage: eventpipe healthcheck" in r.stdout, r
    # A setting the server would refuse: unhealthy, and the message names it.
    r = check({"API_PORT": "http"})
    assert r.returncode == 1 and "API_PORT" in r.stderr, r


if __name__ == "__main__":
    main(globals())
