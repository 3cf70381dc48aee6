"""The client-id dedup table filled ten times over (issue 14 finding 5): a repeat
of a recent id is still answered `"duplicate":true`, `/stats` and `/metrics` show
the evictions and the effective window, and the eviction warning is logged once."""

import json

from eptest import Eventpipe, get_json, main, request, wait_for

NDJSON = {"Content-Type": "application/x-ndjson"}


def batch(ids):
    return "".join(json.dumps({"id": i, "source": "dedup", "data": "x"}) + "\n" for i in ids)


def test_full_table_still_flags_repeats():
    env = {"DEDUP_CAPACITY": "1000", "QUEUE_SIZE": "50000"}
    with Eventpipe("run", env=env) as ep:
        ids = ["full-%d" % i for i in range(10000)]
        for k in range(0, len(ids), 2000):
            r = request(ep.ingest, "POST", "/events/batch", batch(ids[k:k + 2000]),
                        headers=NDJSON, timeout=60)
            assert r.status == 202 and r.json()["accepted"] == 2000, r

        # The newest ids, one alone and then a batch of 100: all duplicates.
        r = request(ep.ingest, "POST", "/events", {"id": ids[-1], "source": "dedup", "data": "x"})
        assert r.status == 202 and r.json().get("duplicate") is True, r
        r = request(ep.api, "POST", "/api/v1/events/batch", batch(ids[-100:]), headers=NDJSON)
        res = r.json()
        assert r.status == 202 and res["duplicates"] == 100 and res["accepted"] == 0, \
            {k: res[k] for k in res if k != "results"}

        st = get_json(ep.ingest, "/stats")
        assert st["duplicates"] == 101, st
        d = st["dedup"]
        assert d["capacity"] == 1024 and d["window_s"] == 300, d  # 64 shards of 16
        assert d["size"] == 1024, d
        # At least every id past the capacity; more as a batch's reservations (2000 pending
        # ids) are evicted too and remembered again when their events are acknowledged.
        assert d["evicted"] >= 10000 - 1024, d
        assert 0 <= d["effective_window_s"] < 300, d

        text = request(ep.ingest, "GET", "/metrics").body.decode()
        got = {}
        for line in text.splitlines():
            if line.startswith("ep_dedup_"):
                name, value = line.split()
                got[name] = float(value)
        assert got["ep_dedup_capacity"] == 1024, got
        assert got["ep_dedup_evicted_total"] == d["evicted"], got
        assert 0 <= got["ep_dedup_effective_window_seconds"] < 300, got
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 10000,
                 timeout=60, what="10000 processed")
        assert ep.stop() == 0
        log = ep.log_text()
        assert log.count("DEDUP_CAPACITY=1024 ids reached") == 1, log[-2000:]


def test_stats_before_the_table_fills():
    with Eventpipe("run", env={"DEDUP_WINDOW": "60"}) as ep:
        r = request(ep.ingest, "POST", "/events", {"id": "one", "source": "s", "data": "x"})
        assert r.status == 202, r
        d = get_json(ep.ingest, "/stats")["dedup"]
        assert d == {"capacity": 1000000, "size": 1, "evicted": 0, "window_s": 60,
                     "effective_window_s": 60}, d
        assert ep.stop() == 0
        assert "ids reached" not in ep.log_text()


if __name__ == "__main__":
    main(globals())
