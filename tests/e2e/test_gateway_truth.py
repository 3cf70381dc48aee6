"""Split mode answers tell the truth (issue 14, findings 7 and 8).

- A 503 given when the event may already have been kept says so ("maybe_kept")
  and names the id the event was (or would be) kept under, assigned before the
  hop by the gateway (X-Message-Id); a retry with that id is de-duplicated.
- A batch answer larger than 16 MiB passes the gateway whole (it was a 503).
- A long Content-Type is passed whole: the same answer in `run` and split mode.
- A JSON array over BATCH_MAX_EVENTS is 413, as NDJSON is.

The downstreams that never answer are Python servers that read the request,
record it and keep the connection open: the gateway's timeout is the only clock,
nothing depends on how fast the machine is."""

import gzip
import json
import socket
import threading

from eptest import (Eventpipe, free_port, get_json, main, raw_exchange, request, seed_event,
                    wait_for)

TIMEOUT_MS = "800"  # UPSTREAM_TIMEOUT_MS of the hop that never gets an answer


def uuid_add(base, i):
    """ep_id_uuid_add: base with i added to its last 48 bits."""
    low = (int(base[24:], 16) + i) % (1 << 48)
    return base[:24].lower() + "%012x" % low


def read_request(conn):
    """One HTTP/1.1 request with a Content-Length body: (head lines, headers, body) or None."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return lines[0], headers, body


class Downstream:
    """A listening socket that records requests. answer(req) returns bytes to send
    back, or None to keep the connection open without an answer until the peer
    closes it."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.cv = threading.Condition()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                req = read_request(conn)
                if req is None:
                    return
                with self.cv:
                    self.requests.append(req)
                    self.cv.notify_all()
                out = self.answer(req)
                if out is None:
                    while conn.recv(65536):  # hold until the peer gives up
                        pass
                    return
                conn.sendall(out)

    def wait_requests(self, n, path_prefix=""):
        def got():
            with self.cv:
                return [r for r in self.requests if r[0].split(" ")[1].startswith(path_prefix)]
        return wait_for(lambda: got() if len(got()) >= n else None, timeout=30,
                        what="%d requests to %s" % (n, path_prefix))

    def close(self):
        self.sock.close()


def silent(req):
    return None


def ready_only(req):
    """A processor that is ready but never answers /enqueue."""
    if req[0].startswith("GET "):
        body = b'{"ready":true}\n'
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(body)) + body
    return None


def test_gateway_503_names_the_ids_when_ingest_never_answers():
    ds = Downstream(silent)
    env = {"INGEST_URL": ds.url, "UPSTREAM_TIMEOUT_MS": TIMEOUT_MS}
    with Eventpipe("gateway", env=env) as gw:
        # One event without an id: the 503 names the id the gateway sent along.
        r = request(gw.api, "POST", "/api/v1/ingest", seed_event(1), timeout=30)
        assert r.status == 503 and r.headers.get("retry-after"), r
        res = r.json()
        sent = ds.wait_requests(1)[0]
        assert sent[0].startswith("POST /ingest "), sent[0]
        assert res["maybe_kept"] is True, res
        assert res["messageId"] == sent[1]["x-message-id"], (res, sent[1])
        assert "timed out" in res["error"], res

        # The client's own id is the one named.
        ev = dict(seed_event(2), id="client-id-2")
        r = request(gw.api, "POST", "/api/v1/events", ev, timeout=30)
        assert r.status == 503 and r.json()["maybe_kept"] is True, r
        assert r.json()["messageId"] == "client-id-2", r

        # A batch: each event's id, the derived ones as ingest derives them.
        lines = [json.dumps(seed_event(0)), json.dumps(dict(seed_event(1), id="own-1")),
                 json.dumps(seed_event(2))]
        body = gzip.compress(("\n".join(lines) + "\n").encode())
        r = request(gw.api, "POST", "/api/v1/events/batch", body, timeout=30,
                    headers={"Content-Type": "application/x-ndjson",
                             "Content-Encoding": "gzip"})
        assert r.status == 503, r
        res = r.json()
        sent = ds.wait_requests(1, "/events/batch")[0]
        assert sent[1]["content-encoding"] == "gzip", sent[1]
        base = sent[1]["x-message-id"]
        assert res["maybe_kept"] is True, res
        assert [x["id"] for x in res["results"]] == [base, "own-1", uuid_add(base, 2)], res
        assert [x["line"] for x in res["results"]] == [1, 2, 3], res
        assert gw.stop() == 0
    ds.close()

    # Nothing listens: the request never left, so nothing can have been kept.
    with Eventpipe("gateway", env={"INGEST_URL": "http://127.0.0.1:%d" % free_port()}) as gw:
        r = request(gw.api, "POST", "/api/v1/ingest", seed_event(1), timeout=30)
        assert r.status == 503 and r.json()["maybe_kept"] is False, r
        assert gw.stop() == 0


def test_ingest_503_names_the_id_when_the_processor_never_answers():
    ds = Downstream(ready_only)
    env = {"PROCESSOR_URL": ds.url, "UPSTREAM_TIMEOUT_MS": TIMEOUT_MS}
    with Eventpipe("ingest", env=env) as ing:
        wait_for(lambda: request(ing.ingest, "GET", "/ready").status == 200, timeout=15,
                 what="ingest ready")
        r = request(ing.ingest, "POST", "/ingest", seed_event(1), timeout=30)
        assert r.status == 503, r
        res = r.json()
        assert res["maybe_kept"] is True, res
        sent = ds.wait_requests(1, "/enqueue")[0]
        # The id in the 503 is the one inside the DataBatch the processor got.
        assert res["messageId"].encode() in sent[2], (res, sent[2][:200])

        # A batch whose events all met the timeout: 503, each one named, maybe kept.
        body = "\n".join(json.dumps(dict(seed_event(i), id="b-%d" % i)) for i in range(3))
        r = request(ing.ingest, "POST", "/events/batch", body, timeout=30)
        assert r.status == 503, r
        res = r.json()
        assert res["failed"] == 3 and res["maybe_kept"] is True, res
        assert [(x["id"], x["maybe_kept"]) for x in res["results"]] == \
            [("b-%d" % i, True) for i in range(3)], res
        assert ing.stop() == 0
    ds.close()


class HoldFirst:
    """Between gateway and ingest: relays every request to ingest, but keeps the
    answer to the first POST of each path to itself (the gateway times out)."""

    def __init__(self, ingest_port):
        self.ingest_port = ingest_port
        self.held = {}
        self.answered = threading.Event()
        self.ds = Downstream(self.answer)

    def answer(self, req):
        line, headers, body = req
        method, path = line.split(" ")[:2]
        head = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n" % (
            method, path, len(body))
        for k in ("content-type", "content-encoding", "x-message-id"):
            if k in headers:
                head += "%s: %s\r\n" % (k, headers[k])
        out = raw_exchange(self.ingest_port, head.encode() + b"\r\n" + body, timeout=30)
        if method == "POST" and path not in self.held:
            self.held[path] = out
            self.answered.set()
            return None
        return out


def test_retry_after_a_maybe_kept_503_is_deduplicated():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing:
        hold = HoldFirst(p["ingest"])
        # Long enough for the relayed retries on a busy machine; the held answers
        # end by this timeout whatever the machine's speed.
        env = {"INGEST_URL": hold.ds.url, "UPSTREAM_TIMEOUT_MS": "8000"}
        with Eventpipe("gateway", ports=p, env=env) as gw:
            wait_for(lambda: request(p["ingest"], "GET", "/ready").status == 200, timeout=15,
                     what="ingest ready")
            r = request(gw.api, "POST", "/api/v1/ingest", seed_event(1), timeout=30)
            assert r.status == 503, r
            res = r.json()
            assert res["maybe_kept"] is True, res
            # It was kept: ingest's own answer (that the gateway never saw) says so.
            wait_for(lambda: "/ingest" in hold.held, timeout=30, what="ingest answered")
            kept = json.loads(hold.held["/ingest"].split(b"\r\n\r\n", 1)[1])
            assert kept["messageId"] == res["messageId"], (kept, res)

            # The client retries with the id from the 503: acknowledged, not stored twice.
            r = request(gw.api, "POST", "/api/v1/ingest",
                        dict(seed_event(1), id=res["messageId"]), timeout=30)
            assert r.status == 202 and r.json().get("duplicate") is True, r

            # A batch: retried with the ids of its 503, nothing is stored twice.
            lines = [seed_event(10), dict(seed_event(11), id="own-11"), seed_event(12)]
            body = "\n".join(json.dumps(x) for x in lines)
            r = request(gw.api, "POST", "/api/v1/events/batch", body, timeout=30)
            assert r.status == 503, r
            ids = [x["id"] for x in r.json()["results"]]
            wait_for(lambda: "/events/batch" in hold.held, timeout=30, what="batch answered")
            retry = "\n".join(json.dumps(dict(x, id=i)) for x, i in zip(lines, ids))
            r = request(gw.api, "POST", "/api/v1/events/batch", retry, timeout=30)
            assert r.status == 202, r
            assert r.json()["duplicates"] == 3 and r.json()["accepted"] == 0, r

            wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == 4,
                     timeout=30, what="4 processed")
            assert get_json(p["processor"], "/stats")["queue"]["enqueued"] == 4
            assert get_json(p["ingest"], "/stats")["duplicates"] == 4
            assert gw.stop() == 0
        hold.ds.close()
        assert ing.stop() == 0
        assert proc.stop() == 0


def test_numbered_ids_of_a_partly_kept_batch_are_remembered_each():
    """A batch with the gateway's X-Message-Id where the queue kept only part: the
    kept events are remembered one by one, the others can be stored by a retry.
    The processor is a Python server that keeps the first /enqueue (202) and
    refuses every later one (503): exactly one forwarded chunk is kept."""
    first = threading.Lock()

    def one_then_full(req):
        if req[0].startswith("GET "):
            return ready_only(req)
        code = b"202 Accepted" if first.acquire(blocking=False) else b"503 Unavailable"
        body = b'{"accepted":1}\n'
        return (b"HTTP/1.1 " + code + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)) + body

    ds = Downstream(one_then_full)
    base = "01a24253-bfb6-841f-af9b-be4474000000"
    with Eventpipe("ingest", env={"PROCESSOR_URL": ds.url}) as ing:
        wait_for(lambda: request(ing.ingest, "GET", "/ready").status == 200, timeout=15,
                 what="ingest ready")
        r = request(ing.ingest, "POST", "/events/batch", json.dumps(seed_event(1)),
                    headers={"X-Message-Id": "01a24253-bfb6-741f-af9b-be4474000000"})
        assert r.status == 400 and r.json()["field"] == "X-Message-Id", r
        lines = [seed_event(i) for i in range(1000)]
        body = "\n".join(json.dumps(x) for x in lines)
        r = request(ing.ingest, "POST", "/events/batch", body, timeout=60,
                    headers={"X-Message-Id": base})
        res = r.json()
        kept = {x["index"] for x in res["results"] if "messageId" in x}
        ids = [x.get("messageId") or x.get("id") for x in res["results"]]
        assert ids == [uuid_add(base, i) for i in range(1000)], ids[:3]
        assert 0 < len(kept) < 1000 and res["accepted"] == len(kept), res["accepted"]
        assert res["maybe_kept"] is False, res["maybe_kept"]  # 503 there: refused, not kept
        # The retry of every event with its id: the kept ones are repeats, the others
        # are new (and refused again).
        retry = "\n".join(json.dumps(dict(x, id=i)) for x, i in zip(lines, ids))
        r = request(ing.ingest, "POST", "/events/batch", retry, timeout=60)
        res = r.json()
        assert res["duplicates"] == len(kept) and res["accepted"] == 0, \
            {k: res[k] for k in res if k != "results"}
        assert [x.get("duplicate", False) for x in res["results"]] == \
            [i in kept for i in range(1000)]
        assert ing.stop() == 0
    ds.close()


def big_answer_batch(n_invalid):
    """n_invalid lines whose per-event error names a 90-character field that the
    answer escapes (\\u0001 each), then one valid event: an answer over 16 MiB."""
    key = "\\u0001" * 90
    bad = '{"source":"s","data":"d","metadata":{"%s":{}}}' % key
    body = "\n".join([bad] * n_invalid + [json.dumps(dict(seed_event(1), id="the-one"))])
    return gzip.compress(body.encode())


def test_batch_answer_over_16_mib_passes_the_gateway():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    # 18 MB cross the hop: time enough for a sanitizer build on a busy machine.
    slow = {"UPSTREAM_TIMEOUT_MS": "120000"}
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing, \
            Eventpipe("gateway", ports=p, env=slow) as gw:
        wait_for(lambda: request(p["api"], "GET", "/ready").status == 200, timeout=15,
                 what="gateway ready")
        r = request(gw.api, "POST", "/api/v1/events/batch", big_answer_batch(30000),
                    headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
                    timeout=300)
        assert len(r.body) > 16 * 1024 * 1024, (r.status, len(r.body), r.body[:300])
        assert r.status == 202, (r.status, r.body[:300])
        res = r.json()
        assert res["accepted"] == 1 and res["rejected"] == 30000, {k: res[k] for k in res
                                                                   if k != "results"}
        assert res["results"][-1]["messageId"] == "the-one", res["results"][-1]
        wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == 1,
                 timeout=30, what="1 processed")
        for e in (gw, ing, proc):
            assert e.stop() == 0


LONG_OK_CT = "application/vnd.example-" + "a" * 300 + "+json"
LONG_BAD_CT = "text/html; " + "x=" + "b" * 400


def content_type_answers(api):
    out = []
    for ct in (LONG_OK_CT, LONG_BAD_CT):
        for path, body in (("/api/v1/ingest", json.dumps(seed_event(1))),
                           ("/api/v1/events/batch", json.dumps([seed_event(2)]))):
            r = request(api, "POST", path, body, headers={"Content-Type": ct}, timeout=30)
            out.append((path, ct[:20], r.status, "error" in r.json()))
    return out


def test_long_content_type_same_answer_in_run_and_split():
    with Eventpipe("run") as ep:
        run = content_type_answers(ep.api)
        assert ep.stop() == 0
    assert [x[2] for x in run] == [202, 202, 415, 415], run

    p = {"api": free_port(), "ingest": free_port(), "processor": free_port()}
    with Eventpipe("processor", ports=p) as proc, Eventpipe("ingest", ports=p) as ing, \
            Eventpipe("gateway", ports=p) as gw:
        wait_for(lambda: request(p["api"], "GET", "/ready").status == 200, timeout=15,
                 what="gateway ready")
        split = content_type_answers(gw.api)
        for e in (gw, ing, proc):
            assert e.stop() == 0
    assert split == run, (split, run)


def test_json_array_over_batch_max_events_is_413():
    over = json.dumps([seed_event(i) for i in range(6)])
    at = json.dumps([seed_event(i) for i in range(5)])
    nd = "\n".join(json.dumps(seed_event(i)) for i in range(6))
    env = {"BATCH_MAX_EVENTS": "5"}
    with Eventpipe("run", env=env) as ep:
        for body in (over, over[:-1] + ",{]", nd):
            r = request(ep.api, "POST", "/api/v1/events/batch", body)
            assert r.status == 413, r
            assert "BATCH_MAX_EVENTS" in r.json()["error"], r
        r = request(ep.api, "POST", "/api/v1/events/batch", at)
        assert r.status == 202 and r.json()["accepted"] == 5, r
        # Nothing of a refused batch was kept.
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 5,
                 timeout=30, what="5 processed")
        assert get_json(ep.processor, "/stats")["queue"]["enqueued"] == 5
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
