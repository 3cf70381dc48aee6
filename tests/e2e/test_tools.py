"""The user tools: `eventpipe send` (generate-data and the seed 004 example
client) and `eventpipe status` (the status aggregate as a table)."""

import subprocess

from eptest import EP_BIN, Eventpipe, free_port, get_json, main, wait_for


def run(*args, timeout=60):
    return subprocess.run([EP_BIN] + list(args), capture_output=True, text=True, timeout=timeout)


def test_send_generates_and_counts():
    with Eventpipe("run", env={"QUEUE_SIZE": "20000"}) as ep:
        url = "http://127.0.0.1:%d" % ep.api
        r = run("send", "--url", url, "--count", "3000", "--batch", "100", "--users", "200",
                "--seed", "7", "--quiet")
        assert r.returncode == 0, r
        assert "3000 accepted, 0 failed" in r.stdout, r.stdout
        r = run("send", "--url", url, "--count", "200", "--rate", "2000", "--quiet")
        assert r.returncode == 0 and "200 accepted" in r.stdout, r
        r = run("send", "--url", "http://127.0.0.1:%d" % ep.ingest, "--path", "/events",
                "--event", '{"id":"event_123","user_id":"user_456","event_type":"page_view",'
                '"properties":{"page":"/dashboard","duration":"45"},"timestamp":1640995200,'
                '"source":"web-app"}')
        assert r.returncode == 0 and "1 accepted" in r.stdout, r
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 3201,
                 what="3201 processed")
        r = run("send", "--url", url, "--event", '{"source":5}')
        assert r.returncode == 1 and "HTTP 400" in r.stdout, r
        r = run("send", "--bogus")
        assert r.returncode == 2, r
        assert ep.stop() == 0


def test_status_table_and_exit_code():
    with Eventpipe("run") as ep:
        r = run("status", "--url", "http://127.0.0.1:%d" % ep.api)
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["ROLE", "HEALTH", "DETAIL"], lines
        assert any(l.startswith("ingest") and " up " in l for l in lines), lines
        assert any(l.startswith("processor") and "queue=0/1000" in l for l in lines), lines
        assert ep.stop() == 0
    ports = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    with Eventpipe("gateway", ports=ports) as gw:
        r = run("status", "--url", "http://127.0.0.1:%d" % ports["api"])
        assert r.returncode == 1 and "DOWN" in r.stdout, r
        assert gw.stop() == 0
    r = run("status", "--url", "http://127.0.0.1:%d" % free_port())
    assert r.returncode == 1 and r.stderr, r


if __name__ == "__main__":
    main(globals())
