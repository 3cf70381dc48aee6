"""TLS on every listener (issue 15, item 1), with certificates made by `openssl`
at test time and `curl` as the client: 202 over HTTPS on every role's port and
on the hops between split roles (gateway -> ingest -> processor), plain HTTP to a
TLS port never gets a 2xx, mutual TLS refuses a client without a certificate,
SIGHUP serves a new certificate without dropping an open keep-alive connection
(and keeps the old one when the new file is bad), a bad certificate or key stops
the start with exit 2 naming the setting. `send`, `status` and `bench` speak
https too. In every case the processor's /stats shows exactly the 2xx events."""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

from eptest import EP_BIN, Eventpipe, free_port, main, seed_event, wait_for
from test_gateway_truth import big_answer_batch


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_ca(d, name):
    key, pem = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", pem, "-days", "2", "-subj", "/CN=eventpipe test " + name)
    return pem, key


def make_cert(d, name, ca, san, eku):
    key, csr, pem = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".pem"))
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" % eku)
        if san:
            f.write("subjectAltName=%s\n" % san)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            key, "-out", csr, "-subj", "/CN=" + name)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out",
            pem, "-days", "2", "-extfile", ext)
    return pem, key


_certs = None


def certs():
    """Two CAs; a server certificate of each (127.0.0.1 and localhost; it also
    serves as the roles' client certificate on mutual-TLS hops); a client's."""
    global _certs
    if _certs is None:
        d = tempfile.mkdtemp(prefix="ep-tls-")
        atexit.register(shutil.rmtree, d, True)
        ca1, ca2 = make_ca(d, "ca1"), make_ca(d, "ca2")
        san = "IP:127.0.0.1,DNS:localhost"
        _certs = {
            "dir": d, "ca1": ca1[0], "ca2": ca2[0],
            "srv1": make_cert(d, "server1", ca1, san, "serverAuth,clientAuth"),
            "srv2": make_cert(d, "server2", ca2, san, "serverAuth,clientAuth"),
            "client": make_cert(d, "client", ca1, None, "clientAuth"),
        }
    return _certs


def curl(url, *args, data=None):
    """(HTTP status, body, curl's exit code); status 0 when no answer came."""
    cmd = ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"] + list(args)
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary",
                data if isinstance(data, str) else json.dumps(data)]
    p = subprocess.run(cmd + [url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    out = p.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    return int(code or 0), body, p.returncode


def tls_env(c, ports, srv="srv1", **extra):
    env = {
        "TLS_CERT_FILE": c[srv][0], "TLS_KEY_FILE": c[srv][1], "TLS_CA_FILE": c["ca1"],
        "INGEST_URL": "https://127.0.0.1:%d" % ports["ingest"],
        "PROCESSOR_URL": "https://127.0.0.1:%d" % ports["processor"],
        "ANALYTICS_URL": "https://127.0.0.1:%d" % ports["analytics"],
    }
    env.update(extra)
    return env


def ports():
    return {"api": free_port(), "ingest": free_port(), "processor": free_port(),
            "analytics": free_port()}


def wait_https(ep, port, *curl_args):
    def up():
        if ep.proc.poll() is not None:
            raise AssertionError("%s exited with %s:\n%s" % (ep.cmd, ep.proc.returncode,
                                                              ep.log_text()[-3000:]))
        return curl("https://127.0.0.1:%d/health" % port, *curl_args)[0] == 200
    wait_for(up, timeout=20, what="https /health on %d" % port)


def processed(port, *curl_args):
    status, body, _ = curl("https://127.0.0.1:%d/stats" % port, *curl_args)
    assert status == 200, (status, body)
    return json.loads(body)["pool"]["processed"]


def wait_processed(port, n, *curl_args):
    wait_for(lambda: processed(port, *curl_args) == n, timeout=30, what="%d processed" % n)
    # Nothing more arrives later (a refused request must not be processed after all).
    assert processed(port, *curl_args) == n


def plain_http_gets_no_2xx(port):
    """Plain HTTP to a TLS port: the connection closes (or gets an error), never a 2xx."""
    body = json.dumps(seed_event(99)).encode()
    req = (b"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
           b"\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert not got.startswith(b"HTTP/1.1 2") and not got.startswith(b"HTTP/1.0 2"), got
    status, _, _ = curl("http://127.0.0.1:%d/api/v1/ingest" % port, data=seed_event(98))
    assert not 200 <= status < 300, status


def test_run_every_port_https_and_plain_refused():
    c = certs()
    p = ports()
    ca = ("--cacert", c["ca1"])
    with Eventpipe("run", ports=p, env=tls_env(c, p), wait=False) as ep:
        for port in (p["api"], p["ingest"], p["processor"], p["analytics"]):
            wait_https(ep, port, *ca)
        ok = 0
        # The gateway's port (its hop to ingest is https too) and ingest's own.
        for port in (p["api"], p["ingest"]):
            for path in ("/api/v1/ingest", "/api/v1/events"):
                status, body, _ = curl("https://127.0.0.1:%d%s" % (port, path), *ca,
                                       data=seed_event(ok))
                assert status == 202, (port, path, status, body)
                ok += 1
        # Expect: 100-continue over TLS: the interim answer comes (curl would wait 30 s for
        # it, past its 10 s limit), then the 202.
        status, body, _ = curl("https://127.0.0.1:%d/api/v1/ingest" % p["ingest"], *ca,
                               "-H", "Expect: 100-continue", "--expect100-timeout", "30",
                               data=seed_event(ok))
        assert status == 202, (status, body)
        ok += 1
        # By name too (the certificate's DNS entry), and every port over TLS only.
        status, body, _ = curl("https://localhost:%d/api/v1/ingest" % p["api"], *ca,
                               data=seed_event(ok))
        assert status == 202, (status, body)
        ok += 1
        for port in (p["api"], p["ingest"], p["processor"], p["analytics"]):
            plain_http_gets_no_2xx(port)
            # Not verified against the right CA: no answer at all.
            status, _, rc = curl("https://127.0.0.1:%d/health" % port, "--cacert", c["ca2"])
            assert status == 0 and rc != 0, (port, status, rc)
        wait_processed(p["processor"], ok, *ca)
        status, body, _ = curl("https://127.0.0.1:%d/metrics" % p["api"], *ca)
        assert 'reason="tls_handshake"' in body
        assert ep.stop() == 0


def test_split_roles_https_hops_and_tools():
    c = certs()
    p = ports()
    ca = ("--cacert", c["ca1"])
    env = tls_env(c, p)
    with Eventpipe("analytics", ports=p, env=env, wait=False) as ana, \
            Eventpipe("processor", ports=p, env=env, wait=False) as proc:
        wait_https(ana, p["analytics"], *ca)
        wait_https(proc, p["processor"], *ca)
        with Eventpipe("ingest", ports=p, env=env, wait=False) as ing:
            wait_https(ing, p["ingest"], *ca)
            with Eventpipe("gateway", ports=p, env=env, wait=False) as gw:
                wait_https(gw, p["api"], *ca)
                # Ready only once ingest's https probe of the processor came back.
                wait_for(lambda: curl("https://127.0.0.1:%d/ready" % p["api"], *ca)[0] == 200,
                         timeout=20, what="gateway /ready over https")
                ok = 0
                for i in range(5):  # gateway -> ingest -> processor, every hop https
                    status, body, _ = curl("https://127.0.0.1:%d/api/v1/ingest" % p["api"], *ca,
                                           data=seed_event(i))
                    assert status == 202, (status, body)
                    ok += 1
                for i in range(3):  # ingest -> processor
                    status, body, _ = curl("https://127.0.0.1:%d/api/v1/events" % p["ingest"],
                                           *ca, data=seed_event(i))
                    assert status == 202, (status, body)
                    ok += 1
                plain_http_gets_no_2xx(p["api"])
                plain_http_gets_no_2xx(p["ingest"])
                # eventpipe send and status over https, verified with --cacert.
                r = subprocess.run([EP_BIN, "send", "--url", "https://127.0.0.1:%d" % p["api"],
                                    "--cacert", c["ca1"], "--count", "20", "--quiet"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60,
                                   env={k: v for k, v in os.environ.items()
                                        if k != "TLS_CA_FILE"})
                assert r.returncode == 0, r.stdout
                ok += 20
                r = subprocess.run([EP_BIN, "send", "--url", "https://127.0.0.1:%d" % p["api"],
                                    "--cacert", c["ca2"], "--count", "3", "--quiet"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
                assert r.returncode == 1, r.stdout  # the wrong CA: nothing accepted
                r = subprocess.run([EP_BIN, "status", "--url", "https://127.0.0.1:%d" % p["api"],
                                    "--cacert", c["ca1"]], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=60)
                assert r.returncode == 0, r.stdout
                assert b"processor   up" in r.stdout, r.stdout
                # eventpipe bench's OpenSSL path.
                r = subprocess.run([EP_BIN, "bench", "--url",
                                    "https://127.0.0.1:%d/api/v1/ingest" % p["ingest"],
                                    "--cacert", c["ca1"], "-c", "4", "-n", "200", "-d", "60",
                                    "--json", "--quiet"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=120)
                rep = json.loads(r.stdout)
                assert r.returncode == 0 and rep["ok"] == 200 and rep["socket_errors"] == 0, rep
                ok += 200
                r = subprocess.run([EP_BIN, "bench", "--url",
                                    "https://127.0.0.1:%d/api/v1/ingest" % p["ingest"],
                                    "--cacert", c["ca2"], "-c", "2", "-n", "5", "-d", "2",
                                    "--json", "--quiet"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=60)
                rep = json.loads(r.stdout)
                assert r.returncode == 1 and rep["ok"] == 0, rep
                assert b"certificate verify failed" in r.stderr or b"unable to get local issuer" \
                    in r.stderr, r.stderr
                wait_processed(p["processor"], ok, *ca)
                # processor -> analytics: the deltas arrive over https as well.
                wait_for(lambda: json.loads(curl("https://127.0.0.1:%d/analytics/summary"
                                                 % p["analytics"], *ca)[1])["total_events"] == ok,
                         timeout=30, what="analytics total over https")
                assert gw.stop() == 0
            assert ing.stop() == 0
        assert proc.stop() == 0
        assert ana.stop() == 0


def test_mutual_tls():
    c = certs()
    p = ports()
    ca = ("--cacert", c["ca1"])
    client = ("--cert", c["client"][0], "--key", c["client"][1])
    with Eventpipe("run", ports=p, env=tls_env(c, p, TLS_CLIENT_CA_FILE=c["ca1"]),
                   wait=False) as ep:
        wait_https(ep, p["api"], *(ca + client))
        wait_https(ep, p["processor"], *(ca + client))
        ok = 0
        # The gateway -> ingest hop presents TLS_CERT_FILE.
        for port in (p["api"], p["ingest"]):
            status, body, _ = curl("https://127.0.0.1:%d/api/v1/ingest" % port,
                                   *(ca + client), data=seed_event(ok))
            assert status == 202, (status, body)
            ok += 1
        for port in (p["api"], p["ingest"], p["processor"]):
            # No client certificate: refused in the handshake, no answer.
            status, body, rc = curl("https://127.0.0.1:%d/api/v1/ingest" % port, *ca,
                                    data=seed_event(50))
            assert status == 0 and rc != 0, (port, status, body)
            # A certificate from a CA the server does not trust: refused too.
            status, body, rc = curl("https://127.0.0.1:%d/api/v1/ingest" % port, *ca,
                                    "--cert", c["srv2"][0], "--key", c["srv2"][1],
                                    data=seed_event(51))
            assert status == 0 and rc != 0, (port, status, body)
        wait_processed(p["processor"], ok, *(ca + client))
        assert ep.stop() == 0


def test_sighup_reloads_certificate_keeping_connections():
    c = certs()
    p = ports()
    d = tempfile.mkdtemp(prefix="ep-tls-reload-")
    atexit.register(shutil.rmtree, d, True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    shutil.copy(c["srv1"][0], cert)
    shutil.copy(c["srv1"][1], key)
    env = tls_env(c, p, TLS_CERT_FILE=cert, TLS_KEY_FILE=key)
    with Eventpipe("run", ports=p, env=env, wait=False) as ep:
        wait_https(ep, p["ingest"], "--cacert", c["ca1"])
        ok = 0
        # A keep-alive connection made with the first certificate.
        ctx1 = ssl.create_default_context(cafile=c["ca1"])
        conn = http.client.HTTPSConnection("127.0.0.1", p["ingest"], context=ctx1, timeout=10)

        def post_keepalive(i):
            conn.request("POST", "/api/v1/ingest", json.dumps(seed_event(i)),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            return r.status

        assert post_keepalive(0) == 202
        ok += 1
        sock = conn.sock
        # New files (another CA), then SIGHUP.
        shutil.copy(c["srv2"][0], cert)
        shutil.copy(c["srv2"][1], key)
        ep.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: reloaded" in ep.log_text(), timeout=10, what="reload logged")
        status, body, _ = curl("https://127.0.0.1:%d/api/v1/ingest" % p["ingest"],
                               "--cacert", c["ca2"], data=seed_event(1))
        assert status == 202, (status, body)
        ok += 1
        status, _, rc = curl("https://127.0.0.1:%d/health" % p["ingest"], "--cacert", c["ca1"])
        assert status == 0 and rc != 0, "new connections still get the old certificate"
        # Every listener took it.
        for port in (p["api"], p["processor"], p["analytics"]):
            assert curl("https://127.0.0.1:%d/health" % port, "--cacert", c["ca2"])[0] == 200
        # Idle, the connection's OpenSSL buffers are freed (HTTP_MEMORY_LIMIT counts the SSL
        # object only: under 40 KiB for the whole connection)...
        def ingest_held():
            body = curl("https://127.0.0.1:%d/metrics" % p["api"], "--cacert", c["ca2"])[1]
            for line in body.splitlines():
                if line.startswith('ep_http_memory_held_bytes{server="ingest"}'):
                    return float(line.split()[-1])
            raise AssertionError("no ep_http_memory_held_bytes for ingest")
        wait_for(lambda: ingest_held() < 40 * 1024, timeout=15, what="idle TLS buffers freed")
        # ...and the open connection was not dropped and keeps its session.
        assert post_keepalive(2) == 202
        ok += 1
        assert conn.sock is sock
        assert "server1" in str(sock.getpeercert()["subject"])
        # A bad new file: the current certificate stays, and the log says why.
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        ep.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "the certificate stays as it was" in ep.log_text(), timeout=10,
                 what="failed reload logged")
        assert "TLS_CERT_FILE: %s" % cert in ep.log_text()
        status, body, _ = curl("https://127.0.0.1:%d/api/v1/ingest" % p["ingest"],
                               "--cacert", c["ca2"], data=seed_event(3))
        assert status == 202, (status, body)
        ok += 1
        assert post_keepalive(4) == 202
        ok += 1
        conn.close()
        wait_processed(p["processor"], ok, "--cacert", c["ca2"])
        assert ep.stop() == 0


def test_handshake_must_finish_within_header_timeout():
    c = certs()
    p = ports()
    ca = ("--cacert", c["ca1"])
    with Eventpipe("run", ports=p, env=tls_env(c, p, HTTP_HEADER_TIMEOUT="1"), wait=False) as ep:
        wait_https(ep, p["ingest"], *ca)
        # A client that connects and never starts its handshake is closed, not kept for
        # HTTP_IDLE_TIMEOUT (30 s), and counted.
        with socket.create_connection(("127.0.0.1", p["ingest"]), timeout=20) as s:
            t = time.monotonic()
            try:
                got = s.recv(100)
            except ConnectionResetError:
                got = b""
            assert got == b"" and time.monotonic() - t < 15, got

        def failed():
            body = curl("https://127.0.0.1:%d/metrics" % p["api"], *ca)[1]
            for line in body.splitlines():
                if line.startswith('ep_http_connections_closed_total{server="ingest",'
                                   'reason="tls_handshake"}'):
                    return float(line.split()[-1])
            return 0
        assert failed() >= 1
        status, body, _ = curl("https://127.0.0.1:%d/api/v1/ingest" % p["ingest"], *ca,
                               data=seed_event(0))
        assert status == 202, (status, body)
        wait_processed(p["processor"], 1, *ca)
        assert ep.stop() == 0


def test_write_timeout_cuts_a_tls_client_that_does_not_read():
    """SERVER_WRITE_TIMEOUT holds over TLS as over plain HTTP: an answer the
    client does not read is cut once it has been written for that long (before
    issue 19 the TLS write path never started that clock: only
    HTTP_SEND_TIMEOUT, here 5 minutes, would have ended it)."""
    c = certs()
    p = ports()
    ca = ("--cacert", c["ca1"])
    env = tls_env(c, p, SERVER_WRITE_TIMEOUT="1s", HTTP_SEND_TIMEOUT="5m",
                  HTTP_IDLE_TIMEOUT="5m")
    with Eventpipe("run", ports=p, env=env, wait=False) as ep:
        wait_https(ep, p["ingest"], *ca)
        # 30000 refused lines and one valid event: a small request, an answer over 16 MiB.
        body = big_answer_batch(30000)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # our side holds little
        raw.settimeout(60)
        raw.connect(("127.0.0.1", p["ingest"]))
        s = ssl.create_default_context(cafile=c["ca1"]).wrap_socket(
            raw, server_hostname="127.0.0.1")
        s.sendall(b"POST /events/batch HTTP/1.1\r\nHost: t\r\n"
                  b"Content-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)

        def cut():
            metrics = curl("https://127.0.0.1:%d/metrics" % p["processor"], *ca)[1]
            return re.search(r'ep_http_connections_closed_total\{server="ingest",'
                             r'reason="send_timeout"\} [1-9]', metrics)
        wait_for(cut, timeout=60, what="the ingest server cutting the unread TLS answer")
        s.close()
        # The 202 was given for the one valid event: it, and only it, is processed.
        wait_processed(p["processor"], 1, *ca)
        assert ep.stop() == 0


def start_fails(env_extra):
    p = ports()
    env = dict(os.environ)
    env.update({"API_PORT": str(p["api"]), "INGEST_PORT": str(p["ingest"]),
                "PROCESSOR_PORT": str(p["processor"]), "ANALYTICS_PORT": str(p["analytics"]),
                "BIND_ADDR": "127.0.0.1"})
    env.update(env_extra)
    r = subprocess.run([EP_BIN, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    return r.returncode, r.stderr.decode(errors="replace")


def test_bad_tls_settings_exit_2():
    c = certs()
    d = tempfile.mkdtemp(prefix="ep-tls-bad-")
    atexit.register(shutil.rmtree, d, True)
    junk = os.path.join(d, "junk.pem")
    with open(junk, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    missing = os.path.join(d, "missing.pem")
    cases = [
        ({"TLS_CERT_FILE": missing, "TLS_KEY_FILE": c["srv1"][1]},
         "TLS_CERT_FILE: %s: " % missing, "No such file"),
        ({"TLS_CERT_FILE": junk, "TLS_KEY_FILE": c["srv1"][1]},
         "TLS_CERT_FILE: %s: " % junk, "OpenSSL"),
        ({"TLS_CERT_FILE": c["srv1"][0], "TLS_KEY_FILE": junk},
         "TLS_KEY_FILE: %s: " % junk, "OpenSSL"),
        ({"TLS_CERT_FILE": c["srv1"][0], "TLS_KEY_FILE": c["srv2"][1]},
         "TLS_KEY_FILE: %s: " % c["srv2"][1], "does not belong"),
        ({"TLS_CERT_FILE": c["srv1"][0]}, "TLS_KEY_FILE: must be set", ""),
        ({"TLS_KEY_FILE": c["srv1"][1]}, "TLS_CERT_FILE: must be set", ""),
        ({"TLS_CLIENT_CA_FILE": c["ca1"]}, "TLS_CLIENT_CA_FILE: ", "TLS_CERT_FILE"),
        ({"TLS_CERT_FILE": c["srv1"][0], "TLS_KEY_FILE": c["srv1"][1],
          "TLS_CLIENT_CA_FILE": junk}, "TLS_CLIENT_CA_FILE: %s: " % junk, ""),
        ({"TLS_CA_FILE": missing}, "TLS_CA_FILE: %s: " % missing, "No such file"),
    ]
    for env, want, why in cases:
        rc, err = start_fails(env)
        assert rc == 2, (env, rc, err)
        assert want in err and why in err, (env, err)


if __name__ == "__main__":
    main(globals())
