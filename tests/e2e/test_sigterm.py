"""SIGTERM during load: every event that got a 2xx is processed before the
process exits, and it exits 0."""

import os
import signal
import tempfile
import time

from eptest import Eventpipe, Load, free_port, main, read_sink, wait_for


def run_case(cmd_env, port_key):
    sink = os.path.join(tempfile.mkdtemp(prefix="ep-sig-"), "out.ndjson")
    env = {"PROCESSOR_SINK": "file:" + sink, "SHUTDOWN_TIMEOUT": "20"}
    env.update(cmd_env)
    with Eventpipe("run", env=env) as ep:
        load = Load(ep.ports[port_key], path="/api/v1/ingest" if port_key == "api" else "/ingest",
                    threads=6).start()
        time.sleep(1.5)  # load for a while...
        # ...and enough of it acknowledged (a loaded machine may have answered few so far).
        wait_for(lambda: len(load.ok_ids) > 100, timeout=60, what="100 events acknowledged")
        t0 = time.time()
        rc = ep.stop(signal.SIGTERM, timeout=60)
        took = time.time() - t0
        load.stop()
        assert rc == 0, ep.log_text()[-2000:]
        assert took < 20 + 10, took  # SHUTDOWN_TIMEOUT, with a margin for the exit itself
        assert len(load.ok_ids) > 100, load.statuses
        got = [l["id"] for l in read_sink(sink)]
        assert len(got) == len(set(got)), "duplicates"
        missing = set(load.ok_ids) - set(got)
        assert not missing, "%d acknowledged events were not processed" % len(missing)
        # Nothing is processed that was refused: an event kept without a 2xx can only be
        # one whose answer never reached the client (its connection failed mid-request).
        unacked = set(got) - set(load.ok_ids)
        assert len(unacked) <= load.errors, (len(unacked), load.errors, load.statuses)
        assert "shutting down" in ep.log_text()


def test_sigterm_during_load_gateway():
    run_case({}, "api")


def test_sigterm_during_load_with_slow_workers():
    # A small queue and one worker: the queue is full when the signal comes.
    run_case({"QUEUE_SIZE": "200", "PROCESSOR_WORKERS": "1", "PROCESSOR_BATCH": "1"}, "ingest")


if __name__ == "__main__":
    main(globals())
