"""Log lines cannot be forged by a client (issue 14, finding 8): the access log
(ACCESS_LOG_SAMPLE=1) writes the percent-decoded request path, and a path
holding %0a, an ANSI escape (%1b[31m), DEL, C1 controls, bytes that are not
UTF-8 or a decoded NUL must still give one line per request, with those bytes
escaped: \\xNN in LOG_FORMAT=text (a backslash doubled, so an escape cannot be
faked), \\u00NN in LOG_FORMAT=json, every line of which parses."""

import json

from eptest import Eventpipe, main, raw_exchange, wait_for

FORGED = b"2026-01-01T00:00:00.000Z info  [access] gateway GET /forged 200 0.1ms"

# Raw request targets: percent-encoded controls, raw and encoded invalid UTF-8,
# a valid multi-byte character (kept), a C1 control (U+009B, the 8-bit CSI).
PATH_A = (b"/a%0a" + FORGED.replace(b" ", b"%20") + b"%0d%1b[31mred%7f%ff%c3%28"
          b"%e2%82%ac%c2%9bz\xfe")
# A decoded NUL ends the path (400); what comes before it is logged.
PATH_B = b"/b%1b%00c"
# A backslash in the path: must not read as one of our escapes.
PATH_C = b"/c%5cx0a"


def raw_get(port, target):
    data = raw_exchange(
        port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=10)
    return int(data.split(b" ", 2)[1])


def log_bytes(ep):
    with open(ep.log_path, "rb") as f:
        return f.read()


def run(fmt):
    with Eventpipe("run", env={"ACCESS_LOG_SAMPLE": "1", "LOG_FORMAT": fmt}) as ep:
        statuses = [raw_get(ep.api, t) for t in (PATH_A, PATH_B, PATH_C)]
        assert statuses == [404, 400, 404], statuses

        def access_lines():
            return [ln for ln in log_bytes(ep).split(b"\n") if b"access" in ln
                    and (b"/a" in ln or b"/b" in ln or b"/c" in ln)]

        wait_for(lambda: len(access_lines()) >= 3, what="three access log lines")
        log = log_bytes(ep)
        assert ep.stop() == 0
    return log


def test_text_access_log_escapes_client_bytes():
    log = run("text")
    # Nothing a terminal would act on, and no line a client wrote.
    for b in log:
        assert b >= 0x20 and b != 0x7f or b == 0x0a, "raw byte 0x%02x in the log" % b
    lines = log.split(b"\n")
    assert not any(ln.startswith(b"2026-01-01T00:00:00.000Z") for ln in lines), log
    want_a = (b"[access] gateway GET /a\\x0a" + FORGED +
              b"\\x0d\\x1b[31mred\\x7f\\xff\\xc3(\xe2\x82\xac\\xc2\\x9bz\\xfe 404 ")
    want_b = b"[access] gateway GET /b\\x1b 400 "
    want_c = b"[access] gateway GET /c\\\\x0a 404 "
    for want in (want_a, want_b, want_c):
        got = [ln for ln in lines if want in ln]
        assert len(got) == 1, (want, log[-3000:])
    log.decode("utf-8")  # what is left is well-formed UTF-8


def test_json_access_log_escapes_client_bytes():
    log = run("json")
    msgs = []
    for ln in log.split(b"\n"):
        if not ln:
            continue
        for b in ln:
            assert b >= 0x20 and b != 0x7f, "raw byte 0x%02x in %r" % (b, ln)
        rec = json.loads(ln.decode("utf-8"))  # strict: fails on bytes that are not UTF-8
        if rec["component"] == "access":
            msgs.append(rec["msg"])
    want_a = ("gateway GET /a\n" + FORGED.decode() +
              "\r\x1b[31mred\x7f\u00ff\u00c3(\u20ac\u009bz\u00fe 404 ")
    want_b = "gateway GET /b\x1b 400 "
    want_c = "gateway GET /c\\x0a 404 "
    for want in (want_a, want_b, want_c):
        assert sum(1 for m in msgs if m.startswith(want)) == 1, (want, msgs)


if __name__ == "__main__":
    main(globals())
