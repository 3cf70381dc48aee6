"""Issue 14, findings 1 and 6: the internal routes take what a hostile client
sends no further than the public ones. POST /enqueue (processor) decodes
protobuf in bounded time and applies ingest's validation (one shared
ep_event_validate); POST /analytics/merge refuses forged deltas. Each refusal
is a 4xx with a JSON error naming what and where, and changes nothing."""

import struct

from eptest import Eventpipe, get_json, main, request

PB = {"Content-Type": "application/x-protobuf"}
OCTETS = {"Content-Type": "application/octet-stream"}


# ------------------------------------------------------------ protobuf by hand

def varint(v):
    v &= (1 << 64) - 1  # int64 fields: two's complement, as protobuf writes them
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def f_len(num, data):
    data = data.encode() if isinstance(data, str) else data
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_int(num, v):
    return varint(num << 3) + varint(v)


def message(source="s", event_type="t", meta=(), **ints):
    """A DataMessage: source 3, event_type 6, metadata 5, timestamp_ms 8, attempts 10."""
    m = b""
    if source:
        m += f_len(3, source)
    for k, v in meta:
        m += f_len(5, f_len(1, k) + f_len(2, v))
    if event_type:
        m += f_len(6, event_type)
    for name, num in (("timestamp", 2), ("timestamp_ms", 8), ("attempts", 10)):
        if name in ints:
            m += f_int(num, ints[name])
    return m


def batch(*msgs):
    return b"".join(f_len(1, m) for m in msgs)


def enqueued(ep):
    return get_json(ep.processor, "/stats")["queue"]["enqueued"]


def test_enqueue_validates_like_ingest():
    with Eventpipe("processor") as ep:
        # A well-formed batch still goes through: the split-mode path works.
        r = request(ep.processor, "POST", "/enqueue", batch(message(), message("web", "click")),
                    headers=PB)
        assert r.status == 202 and r.json()["accepted"] == 2, r
        base = enqueued(ep)
        assert base == 2, base

        many = [("k%d" % i, "v") for i in range(1000)]
        cases = [
            ("no source", batch(message(), message(source="")), 400,
             "events[1].source", "is required"),
            ("1000 keys", batch(message(meta=many)), 400,
             "events[0].metadata", "too many metadata entries"),
            ("100 KB source", batch(message(source="a" * 100 * 1024)), 400,
             "events[0].source", "longer than"),
            ("negative timestamp", batch(message(timestamp_ms=-1)), 400,
             "events[0].timestamp", "out of range"),
            ("negative seconds", batch(message(timestamp=-1)), 400,
             "events[0].timestamp", "out of range"),
            ("attempts 2^32-1", batch(message(attempts=2**32 - 1)), 400,
             "events[0].attempts", "larger than"),
            ("duplicate key", batch(message(meta=[("k", "1"), ("k", "2")])), 400,
             "events[0].metadata.k", "duplicate"),
            ("1 MiB of 0a 00", b"\x0a\x00" * (512 * 1024), 413,
             None, "too many events in one batch"),
            # The pathological body of finding 1: empty entries and number keys
            # naming none of them; stops at the key limit, at once.
            ("empty entries and number keys",
             f_len(1, f_len(3, "s") + b"\x2a\x00" * 150000 + b"\x5a\x01x" * 100000), 400,
             "events[0].metadata", "too many metadata entries"),
        ]
        for what, body, status, field, msg in cases:
            r = request(ep.processor, "POST", "/enqueue", body, headers=PB, timeout=30)
            assert r.status == status, (what, r)
            err = r.json()
            assert msg in err["error"], (what, err)
            assert err.get("field") == field, (what, err)
            # Nothing of a refused body is queued, not even the good event before the bad one.
            assert enqueued(ep) == base, (what, get_json(ep.processor, "/stats")["queue"])

        # The JSON body of /enqueue gets the same rules (it always had them).
        r = request(ep.processor, "POST", "/enqueue", {"data": "x"})
        assert r.status == 400 and r.json().get("field") == "source", r
        assert enqueued(ep) == base
        # /health answered throughout: nothing above took the processor away.
        assert request(ep.processor, "GET", "/health").status == 200
        assert ep.stop() == 0


# ------------------------------------------------------------ analytics deltas

def delta(seq, total, sources=(), counts_twice=False, sender=0xf0f0):
    """An "EPAD" v1 delta: counts section (total, with_user, batches, last_us), sources."""
    out = b"EPAD\x01" + struct.pack("<Q", sender) + varint(seq)
    counts = varint(total) + varint(0) + varint(1 if total else 0) + varint(0)
    out += b"\x01" + varint(len(counts)) + counts
    if counts_twice:
        out += b"\x01" + varint(len(counts)) + counts
    if sources:
        body = varint(len(sources))
        for i, (name, n) in enumerate(sources):
            body += struct.pack("<Q", 0x1234 + i) + varint(n) + varint(len(name)) + name.encode()
        body += varint(0)
        out += b"\x03" + varint(len(body)) + body
    return out + b"\x00\x00"


def summary(an):
    s = get_json(an.analytics, "/analytics/summary")
    return s["total_events"], s["events_by_source"], s["processing"]["deltas_merged"]


def test_merge_refuses_forged_deltas():
    with Eventpipe("analytics") as an:
        r = request(an.analytics, "POST", "/analytics/merge", delta(1, 5, [("web", 5)]),
                    headers=OCTETS)
        assert r.status == 200 and r.json()["merged"] is True, r
        before = summary(an)
        assert before == (5, {"web": 5}, 1), before

        cases = [
            ("total +10^15", delta(2, 10**15), "counts.total"),
            ("fake source 10^12", delta(3, 1, [("fake", 10**12)]), "sources"),
            ("source and total 10^12", delta(4, 10**12, [("fake", 10**12)]), "counts.total"),
            ("total 2^64-1", delta(5, 2**64 - 1), "counts.total"),
            ("2^63 twice", delta(6, 2**63, counts_twice=True), "counts"),
        ]
        for what, body, field in cases:
            r = request(an.analytics, "POST", "/analytics/merge", body, headers=OCTETS)
            assert r.status == 400, (what, r)
            err = r.json()
            assert err["error"] and err.get("field") == field, (what, err)
            assert summary(an) == before, (what, summary(an))

        # A body larger than any delta a processor writes (16 MiB was accepted before).
        r = request(an.analytics, "POST", "/analytics/merge", delta(7, 1) + b"\0" * (3 << 20),
                    headers=OCTETS, timeout=30)
        assert r.status == 413, r
        assert summary(an) == before
        assert an.stop() == 0


if __name__ == "__main__":
    main(globals())
