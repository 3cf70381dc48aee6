"""Bad input gets a clear 4xx with a JSON error and changes nothing: after the
whole table, the number of processed events equals the number of 2xx answers."""

import socket
import time

from eptest import Eventpipe, get_json, main, parse_raw, raw_exchange, read_all, request, wait_for

GOOD = '{"source":"s","data":"ok"}'

# (name, method, path, body, headers, expected status, expected field or None)
CASES = [
    ("empty body", "POST", "/api/v1/ingest", "", {}, 400, None),
    ("whitespace body", "POST", "/api/v1/ingest", "  \n", {}, 400, None),
    ("truncated JSON", "POST", "/api/v1/ingest", '{"source":"s","data":"x', {}, 400, None),
    ("top-level array", "POST", "/api/v1/ingest", '[{"source":"s","data":"x"}]', {}, 400, None),
    ("top-level null", "POST", "/api/v1/ingest", "null", {}, 400, None),
    ("top-level string", "POST", "/api/v1/ingest", '"hello"', {}, 400, None),
    ("trailing garbage", "POST", "/api/v1/ingest", GOOD + " x", {}, 400, None),
    ("source is a number", "POST", "/api/v1/ingest", '{"source":5,"data":"x"}', {}, 400,
     "source"),
    ("source missing", "POST", "/api/v1/ingest", '{"data":"x"}', {}, 400, "source"),
    ("data is an object", "POST", "/api/v1/ingest", '{"source":"s","data":{"a":1}}', {}, 400,
     "data"),
    ("metadata is a string", "POST", "/api/v1/ingest", '{"source":"s","data":"x","metadata":"m"}',
     {}, 400, "metadata"),
    ("metadata value is an object", "POST", "/api/v1/ingest",
     '{"source":"s","data":"x","metadata":{"k":{"n":1}}}', {}, 400, "metadata.k"),
    ("invalid UTF-8", "POST", "/api/v1/ingest", b'{"source":"s\xff\xfe","data":"x"}', {}, 400,
     None),
    ("deep nesting", "POST", "/api/v1/ingest",
     '{"source":"s","data":"x","metadata":' + "[" * 5000 + "]" * 5000 + "}", {}, 400, None),
    ("bad timestamp", "POST", "/api/v1/ingest", '{"source":"s","data":"x","timestamp":"soon"}',
     {}, 400, "timestamp"),
    ("wrong content type", "POST", "/api/v1/ingest", GOOD, {"Content-Type": "application/xml"},
     415, None),
    ("wrong method", "GET", "/api/v1/ingest", None, {}, 405, None),
    ("wrong method on ingest", "PUT", "/ingest", GOOD, {}, 405, None),
    ("unknown path", "GET", "/nope", None, {}, 404, None),
    ("unknown path POST", "POST", "/api/v2/ingest", GOOD, {}, 404, None),
    ("5 MB body", "POST", "/api/v1/ingest", b"{" + b" " * (5 * 1024 * 1024) + b"}", {}, 413,
     None),
    ("huge header", "POST", "/api/v1/ingest", GOOD, {"X-Big": "a" * 20000}, 431, None),
    ("bad enqueue JSON", "POST", "/enqueue", "{", {}, 400, None),
    ("bad enqueue protobuf", "POST", "/enqueue", b"\xff\xff\xff",
     {"Content-Type": "application/x-protobuf"}, 400, None),
]


def port_for(ep, path):
    return ep.processor if path == "/enqueue" else ep.api


def big_body_request(port, size):
    """Sends headers announcing a big body and a first piece of it, then reads the
    answer: the server refuses from the headers, without reading 5 MB."""
    return parse_raw(raw_exchange(
        port, b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n{" % size + b" " * 65536, timeout=30,
        until=lambda out: b"\r\n\r\n" in out and out.rstrip().endswith(b"}")))


def test_bad_input_table():
    with Eventpipe("run") as ep:
        ok = 0
        for name, method, path, body, headers, want, field in CASES:
            if name == "5 MB body":
                r = big_body_request(ep.api, len(body))
            else:
                r = request(port_for(ep, path), method, path, body, headers)
            assert r.status == want, (name, r)
            assert r.headers.get("content-type", "").startswith("application/json"), (name, r)
            err = r.json()
            assert isinstance(err.get("error"), str) and err["error"], (name, err)
            if field is not None:
                assert err.get("field") == field, (name, err)
            if want == 405:
                assert r.headers.get("allow"), (name, r.headers)
            # Interleave good events: what counts is that only these are kept.
            r = request(ep.api, "POST", "/api/v1/ingest", GOOD)
            assert r.status == 202, (name, r)
            ok += 1
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == ok,
                 timeout=30, what="processed == number of 2xx")
        time.sleep(0.3)
        stats = get_json(ep.processor, "/stats")
        assert stats["pool"]["processed"] == ok and stats["queue"]["enqueued"] == ok, stats
        ing = get_json(ep.ingest, "/stats")
        assert ing["TotalSent"] == ok, ing
        assert ep.stop() == 0


def raw(port, data, read_timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if out.count(b"HTTP/1.1") >= data.count(b"HTTP/1.1") and out.endswith(b"}\n"):
                break
    except socket.timeout:
        pass
    s.close()
    return out


def test_pipelining_keepalive_and_chunked():
    with Eventpipe("run") as ep:
        body = b'{"source":"pipe","data":"x"}'
        one = (b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        out = raw(ep.api, one * 3)
        assert out.count(b"HTTP/1.1 202") == 3, out
        chunked = (b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   b"a\r\n" + body[:10] + b"\r\n" + b"%x\r\n" % (len(body) - 10) + body[10:] +
                   b"\r\n0\r\n\r\n")
        out = raw(ep.api, chunked)
        assert out.startswith(b"HTTP/1.1 202"), out
        # A chunked body over the limit: the connection is closed, nothing is kept.
        big = b"%x\r\n" % (2 * 1024 * 1024) + b"a" * (2 * 1024 * 1024) + b"\r\n0\r\n\r\n"
        try:
            out = raw(ep.api, b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + big)
        except (ConnectionResetError, BrokenPipeError):
            out = b""
        assert b" 202 " not in out, out
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 4,
                 timeout=30, what="4 processed")
        assert ep.stop() == 0


def test_slow_client_is_timed_out():
    with Eventpipe("run", env={"HTTP_IDLE_TIMEOUT": "1"}) as ep:
        s = socket.create_connection(("127.0.0.1", ep.api), timeout=60)
        s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        t0 = time.time()
        data = read_all(s)
        # A 408 after the 1 s pause (HTTP_IDLE_TIMEOUT), not the default 30 s (margin for a
        # loaded machine), then closed.
        assert data.startswith(b"HTTP/1.1 408 ") and b"HTTP_IDLE_TIMEOUT" in data, data
        assert time.time() - t0 < 15, time.time() - t0
        s.close()
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
