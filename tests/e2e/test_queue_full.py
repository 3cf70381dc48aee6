"""Queue full -> 503 with Retry-After and the event is not kept; every event
that got a 2xx is processed exactly once (distinct ids).

The worker is stalled for real, and from its first write: its output is a
FIFO that the test fills with filler lines before the start and does not read
until the queue has overflowed, so the worker blocks on the first batch it
writes whatever the timing (a FIFO with room let it write ~300 events first,
and the test raced with it)."""

import errno
import json
import os
import select
import tempfile
import threading

from eptest import Eventpipe, get_json, main, request


FILLER = b"#" * 63 + b"\n"  # divides the pipe's pages: the pipe ends up exactly full


def fill_fifo(path):
    """Fills the FIFO's pipe buffer with filler lines (the read end must be open)."""
    wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                os.write(wfd, FILLER)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return
                raise
    finally:
        os.close(wfd)


def test_queue_full_then_everything_acknowledged_is_processed():
    d = tempfile.mkdtemp(prefix="ep-fifo-")
    fifo = os.path.join(d, "sink.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fill_fifo(fifo)
    env = {"QUEUE_SIZE": "10", "PROCESSOR_WORKERS": "1", "PROCESSOR_BATCH": "4",
           "PROCESSOR_SINK": "file:" + fifo, "SHUTDOWN_TIMEOUT": "60"}
    with Eventpipe("run", env=env) as ep:
        ok_ids, full = [], 0
        for i in range(5000):
            eid = "qf-%d" % i
            r = request(ep.api, "POST", "/api/v1/ingest", {"id": eid, "source": "qf", "data": "x"})
            if r.status == 202:
                ok_ids.append(eid)
            else:
                assert r.status == 503, r
                assert r.headers.get("retry-after") == "1", r.headers
                assert "full" in r.json()["error"], r
                full += 1
                if full >= 20:
                    break
        assert full >= 20, "the queue never filled"
        stats = get_json(ep.processor, "/stats")
        assert stats["queue"]["size"] == 10, stats
        assert stats["queue"]["rejected_full"] >= 20, stats

        # Unblock the worker: read the FIFO until every acknowledged event came out.
        seen = []
        buf = b""
        done = threading.Event()

        def reader():
            nonlocal buf
            while not done.is_set():
                r, _, _ = select.select([rfd], [], [], 0.1)
                if r:
                    chunk = os.read(rfd, 65536)
                    if chunk:
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        seen.extend(json.loads(l)["id"] for l in lines
                                    if l and not l.startswith(b"#"))

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        # Graceful stop drains the queue through the (now unblocked) worker.
        assert ep.stop(timeout=90) == 0, ep.log_text()[-2000:]
        done.set()
        t.join()
        os.close(rfd)
        assert len(seen) == len(set(seen)), "duplicates in output"
        assert set(seen) == set(ok_ids), (len(seen), len(ok_ids))


if __name__ == "__main__":
    main(globals())
