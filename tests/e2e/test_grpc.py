"""The gRPC API (issue 16) driven by an independent client: Debian's
python3-grpcio, with the messages compiled by `protoc` from the project's own
proto/ at test time (python output in a temp dir; the stubs are
grpc.Channel.unary_unary / stream_stream with the generated messages).

Every RPC of ProducerService, IngestService (unary and the stream),
ConsumerService and AnalyticsService; each error code (INVALID_ARGUMENT naming
the field, UNAUTHENTICATED, RESOURCE_EXHAUSTED for a full queue and for a
message over GRPC_MAX_MESSAGE_SIZE, UNAVAILABLE with the processor down,
DEADLINE_EXCEEDED with a stalled processor, UNIMPLEMENTED); grpc.health.v1
Check and Watch; server reflection; gzip; keepalive PINGs on a raw HTTP/2
connection; GOAWAY and exit 0 on SIGTERM. Events sent over gRPC are processed
and counted by the processor's /stats, GetConsumerStats, /analytics/summary
and GetAnalyticsSummary exactly like REST events."""

import os
import sys

from eptest import debian_module  # noqa: E402

grpc = debian_module("grpc")  # python3-grpcio

import importlib.util
import json
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

from eptest import Eventpipe, free_port, get_json, main, request, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(ROOT, "proto")
GEN = tempfile.mkdtemp(prefix="ep-grpc-pb-")


def _compile():
    files = ["eventpipe.proto", "eventpipe_api.proto", "grpc/health/v1/health.proto",
             "grpc/reflection/v1alpha/reflection.proto"]
    subprocess.run(["protoc", "-I" + PROTO, "--python_out=" + GEN] + files, check=True)

    def load(name, rel):
        spec = importlib.util.spec_from_file_location(name, os.path.join(GEN, rel))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    sys.path.insert(0, GEN)  # eventpipe_api_pb2 imports eventpipe_pb2
    # grpc/... would shadow grpcio's package: load those two by file.
    return (load("eventpipe_pb2", "eventpipe_pb2.py"),
            load("eventpipe_api_pb2", "eventpipe_api_pb2.py"),
            load("ep_health_pb2", "grpc/health/v1/health_pb2.py"),
            load("ep_reflection_pb2", "grpc/reflection/v1alpha/reflection_pb2.py"))


pb, api, health, refl = _compile()


def unary(ch, path, req_cls, resp_cls):
    return ch.unary_unary(path, request_serializer=req_cls.SerializeToString,
                          response_deserializer=resp_cls.FromString)


class Client:
    def __init__(self, port, compression=None):
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % port, compression=compression)
        P = "/eventpipe.v1.ProducerService/"
        self.send = unary(self.ch, P + "SendEvent", api.SendEventRequest, api.SendEventResponse)
        self.batch = unary(self.ch, P + "SendBatchEvents", api.SendBatchEventsRequest,
                           api.SendBatchEventsResponse)
        self.producer_health = unary(self.ch, P + "GetProducerHealth", api.HealthRequest,
                                     api.HealthResponse)
        self.ingest = unary(self.ch, "/eventpipe.v1.IngestService/Ingest", pb.IngestRequest,
                            pb.IngestResponse)
        self.ingest_stream = self.ch.stream_stream(
            "/eventpipe.v1.IngestService/IngestStream",
            request_serializer=pb.IngestRequest.SerializeToString,
            response_deserializer=pb.IngestResponse.FromString)
        C = "/eventpipe.v1.ConsumerService/"
        self.consumer_health = unary(self.ch, C + "GetConsumerHealth", api.HealthRequest,
                                     api.HealthResponse)
        self.consumer_stats = unary(self.ch, C + "GetConsumerStats", api.ConsumerStatsRequest,
                                    api.ConsumerStatsResponse)
        A = "/eventpipe.v1.AnalyticsService/"
        self.summary = unary(self.ch, A + "GetAnalyticsSummary", api.AnalyticsSummaryRequest,
                             api.AnalyticsSummaryResponse)
        self.metrics = unary(self.ch, A + "GetMetrics", api.MetricsRequest, api.MetricsResponse)
        self.analytics_health = unary(self.ch, A + "GetAnalyticsHealth", api.HealthRequest,
                                      api.HealthResponse)
        self.check = unary(self.ch, "/grpc.health.v1.Health/Check", health.HealthCheckRequest,
                           health.HealthCheckResponse)
        self.watch = self.ch.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health.HealthCheckRequest.SerializeToString,
            response_deserializer=health.HealthCheckResponse.FromString)
        self.reflect = self.ch.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=refl.ServerReflectionRequest.SerializeToString,
            response_deserializer=refl.ServerReflectionResponse.FromString)

    def close(self):
        self.ch.close()


def grpc_env():
    ports = {"GRPC_PRODUCER_PORT": free_port(), "GRPC_CONSUMER_PORT": free_port(),
             "GRPC_ANALYTICS_PORT": free_port()}
    return {k: str(v) for k, v in ports.items()}, ports


def code_of(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, None


def ev(**kw):
    return api.Event(**kw)


def metric(text, name, **labels):
    """The value of one sample of the Prometheus text (0 when absent)."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = line[len(name) + 1:line.index("}")]
            if ",".join(sorted(got.split(","))) == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_rpc_and_events_counted_like_rest():
    env, ports = grpc_env()
    with Eventpipe("run", env=env) as ep:
        c = Client(ports["GRPC_PRODUCER_PORT"])
        cc = Client(ports["GRPC_CONSUMER_PORT"])
        ca = Client(ports["GRPC_ANALYTICS_PORT"])
        kept = 0
        # SendEvent: the client's id, then the same id again (duplicate, not enqueued twice).
        r = c.send(api.SendEventRequest(event=ev(
            id="g-1", user_id="u-1", event_type="page_view", source="web-app",
            properties={"page": "/dashboard"}, metadata={"k": "v"}, timestamp=1640995200)),
            timeout=10)
        assert (r.message_id, r.status, r.duplicate) == ("g-1", "accepted", False), r
        kept += 1
        r = c.send(api.SendEventRequest(event=ev(id="g-1", event_type="page_view",
                                                 source="web-app")), timeout=10)
        assert (r.message_id, r.duplicate) == ("g-1", True), r
        # No id: a UUID is assigned.
        r = c.send(api.SendEventRequest(event=ev(event_type="click", source="web-app")),
                   timeout=10)
        assert len(r.message_id) == 36 and not r.duplicate, r
        kept += 1
        # Validation names the field, as the REST 400 does.
        code, msg = code_of(c.send, api.SendEventRequest(event=ev(event_type="x")), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("event.source"), msg
        code, msg = code_of(c.send, api.SendEventRequest(), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "event" in msg, msg
        code, msg = code_of(c.send, api.SendEventRequest(event=ev(source="s")), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith("event.data"), msg
        code, msg = code_of(c.send, api.SendEventRequest(event=ev(
            source="s", event_type="t", timestamp=-5)), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "event.timestamp" in msg, msg

        # SendBatchEvents: per-event results in request order.
        r = c.batch(api.SendBatchEventsRequest(events=[
            ev(id="b-1", source="batch", event_type="purchase", user_id="u-2"),
            ev(event_type="no-source"),
            ev(id="g-1", source="web-app", event_type="page_view"),
            ev(source="batch", data="temperature:23.5")]), timeout=10)
        assert (r.accepted, r.rejected, r.duplicates, r.failed) == (2, 1, 1, 0), r
        assert [x.index for x in r.results] == [0, 1, 2, 3], r
        assert r.results[0].message_id == "b-1" and r.results[0].code == 0, r
        assert r.results[1].code == 3 and r.results[1].field == "events[1].source", r
        assert r.results[2].duplicate and r.results[2].message_id == "g-1", r
        assert len(r.results[3].message_id) == 36, r
        kept += 2
        code, msg = code_of(c.batch, api.SendBatchEventsRequest(events=[ev(source="only")]),
                            timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "events[0].data" in msg, msg
        code, msg = code_of(c.batch, api.SendBatchEventsRequest(), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "empty" in msg, msg

        # IngestService (seed 000): unary, then the stream with one answer per message.
        r = c.ingest(pb.IngestRequest(source="sensor-01", data=b"temperature:23.5",
                                      metadata={"location": "warehouse-A"}), timeout=10)
        assert r.status == "accepted" and len(r.message_id) == 36, r
        kept += 1
        reqs = [pb.IngestRequest(source="sensor-%d" % i, data=b"t:%d" % i) for i in range(5)]
        reqs[2] = pb.IngestRequest(data=b"no source")
        out = list(c.ingest_stream(iter(reqs), timeout=10))
        assert len(out) == 5, out
        assert [o.status for o in out] == ["accepted", "accepted",
                                           "rejected: source: is required", "accepted",
                                           "accepted"], out
        assert len(set(o.message_id for o in out if o.message_id)) == 4, out
        kept += 4

        # Health of every role.
        for fn in (c.producer_health, cc.consumer_health, ca.analytics_health):
            h = fn(api.HealthRequest(), timeout=10)
            assert h.healthy and h.status == "ok", h

        # Processed and counted exactly like REST: one REST event joins the gRPC ones.
        assert request(ep.api, "POST", "/api/v1/ingest",
                       {"source": "rest", "event_type": "page_view"}).status == 202
        kept += 1
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == kept,
                 timeout=30, what="%d events processed" % kept)
        wait_for(lambda: get_json(ep.analytics, "/analytics/summary")["total_events"] == kept,
                 timeout=30, what="analytics total %d" % kept)
        st = cc.consumer_stats(api.ConsumerStatsRequest(), timeout=10)
        assert st.processed == kept, st
        assert json.loads(st.json)["pool"]["processed"] == kept, st.json
        assert st.workers >= 1 and st.queue_capacity > 0, st
        s = ca.summary(api.AnalyticsSummaryRequest(), timeout=10)
        rest = get_json(ep.analytics, "/analytics/summary")
        assert s.total_events == rest["total_events"] == kept, (s, rest)
        assert dict(s.by_event_type) == rest["events_by_type"], (s, rest)
        assert dict(s.by_source) == rest["events_by_source"], (s, rest)
        assert s.by_event_type["page_view"] == 2 and s.by_source["sensor-01"] == 1, s
        assert s.unique_users == rest["unique_users"] == 2, (s, rest)
        ing = get_json(ep.ingest, "/stats")
        assert ing["TotalSent"] == kept, ing
        # The Go middleware's metric names.
        m = ca.metrics(api.MetricsRequest(), timeout=10).text
        assert metric(m, "grpc_server_handled_total", grpc_service="eventpipe.v1.ProducerService",
                      grpc_method="SendEvent", grpc_code="OK") == 3, m
        assert metric(m, "grpc_server_handled_total", grpc_service="eventpipe.v1.ProducerService",
                      grpc_method="SendEvent", grpc_code="INVALID_ARGUMENT") == 4, m
        assert "grpc_server_handling_seconds_bucket{" in m, m
        for x in (c, cc, ca):
            x.close()


def test_typed_properties_numbers_and_booleans():
    """Map values: properties/metadata are strings in the proto; numbers and booleans go in
    typed_properties (google.protobuf.Value; the types are checked in unit.test_grpc_wire
    against the same JSON event). Here: kept over the wire, refused as JSON refuses."""
    from google.protobuf import struct_pb2
    env, ports = grpc_env()
    with Eventpipe("run", env=env) as ep:
        c = Client(ports["GRPC_PRODUCER_PORT"])
        tp = {"temperature": struct_pb2.Value(number_value=23.5),
              "in_stock": struct_pb2.Value(bool_value=True),
              "label": struct_pb2.Value(string_value="x"),
              "gone": struct_pb2.Value(null_value=0)}
        r = c.send(api.SendEventRequest(event=ev(
            id="typed-g", source="s", event_type="t", properties={"page": "/"},
            typed_properties=tp)), timeout=10)
        assert r.message_id == "typed-g" and r.status == "accepted", r
        r = c.batch(api.SendBatchEventsRequest(events=[
            ev(source="s", event_type="t", typed_properties={
                "n": struct_pb2.Value(number_value=i)}) for i in range(3)]), timeout=10)
        assert r.accepted == 3, r
        lst = struct_pb2.Value(list_value=struct_pb2.ListValue())
        for bad, why in (({"n": lst}, "not a struct or list"),
                         ({"page": struct_pb2.Value(number_value=1)}, "duplicate"),
                         ({"x": struct_pb2.Value(number_value=float("inf"))}, "finite"),
                         ({"x": struct_pb2.Value()}, "must be set")):
            code, msg = code_of(c.send, api.SendEventRequest(event=ev(
                source="s", event_type="t", properties={"page": "/"},
                typed_properties=bad)), timeout=10)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and why in msg, (bad, msg)
            assert msg.startswith("event.typed_properties") or "page" in msg, msg
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 4,
                 timeout=30, what="typed events processed")
        c.close()


def test_health_reflection_gzip_and_unknown_method():
    env, ports = grpc_env()
    with Eventpipe("run", env=env) as ep:
        c = Client(ports["GRPC_PRODUCER_PORT"])
        S = health.HealthCheckResponse
        assert c.check(health.HealthCheckRequest(), timeout=10).status == S.SERVING
        assert c.check(health.HealthCheckRequest(service="eventpipe.v1.ProducerService"),
                       timeout=10).status == S.SERVING
        code, _ = code_of(c.check, health.HealthCheckRequest(service="nope.Service"), timeout=10)
        assert code == grpc.StatusCode.NOT_FOUND, code
        # The consumer's service is on its own port, not this one.
        code, _ = code_of(c.check, health.HealthCheckRequest(
            service="eventpipe.v1.ConsumerService"), timeout=10)
        assert code == grpc.StatusCode.NOT_FOUND, code
        w = c.watch(health.HealthCheckRequest(service=""), timeout=30)
        assert next(w).status == S.SERVING
        w.cancel()

        # Reflection: the services of this port, and the file that defines one.
        reqs = [refl.ServerReflectionRequest(list_services=""),
                refl.ServerReflectionRequest(file_containing_symbol="eventpipe.v1.ProducerService"),
                refl.ServerReflectionRequest(file_containing_symbol="no.Such"),
                refl.ServerReflectionRequest(file_by_filename="grpc/health/v1/health.proto")]
        out = list(c.reflect(iter(reqs), timeout=10))
        names = [s.name for s in out[0].list_services_response.service]
        assert "eventpipe.v1.ProducerService" in names and "eventpipe.v1.IngestService" in names
        assert "grpc.health.v1.Health" in names, names
        from google.protobuf import descriptor_pb2
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in out[1].file_descriptor_response.file_descriptor_proto]
        assert [f.name for f in files] == ["eventpipe_api.proto", "eventpipe.proto",
                                           "google/protobuf/struct.proto"], files
        assert [m.name for m in files[0].service[0].method] == [
            "SendEvent", "SendBatchEvents", "GetProducerHealth"], files[0]
        assert out[2].error_response.error_code == 5, out[2]
        f = descriptor_pb2.FileDescriptorProto.FromString(
            out[3].file_descriptor_response.file_descriptor_proto[0])
        assert f.package == "grpc.health.v1", f

        # gzip message compression both ways.
        z = Client(ports["GRPC_PRODUCER_PORT"], compression=grpc.Compression.Gzip)
        r = z.batch(api.SendBatchEventsRequest(events=[
            ev(source="gz", event_type="e", data="x" * 2000) for _ in range(50)]), timeout=10)
        assert r.accepted == 50, r
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 50,
                 timeout=30, what="gzip events processed")

        # A method this port does not serve.
        bad = unary(c.ch, "/eventpipe.v1.ConsumerService/GetConsumerStats",
                    api.ConsumerStatsRequest, api.ConsumerStatsResponse)
        code, _ = code_of(bad, api.ConsumerStatsRequest(), timeout=10)
        assert code == grpc.StatusCode.UNIMPLEMENTED, code
        z.close()
        c.close()


def test_api_keys_and_max_message_size():
    env, ports = grpc_env()
    env.update({"API_KEYS": "secret-key-0001-abcdef", "GRPC_MAX_MESSAGE_SIZE": "4096"})
    with Eventpipe("run", env=env) as ep:
        c = Client(ports["GRPC_PRODUCER_PORT"])
        req = api.SendEventRequest(event=ev(source="k", event_type="e"))
        code, msg = code_of(c.send, req, timeout=10)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (code, msg)
        code, _ = code_of(c.send, req, timeout=10,
                          metadata=[("authorization", "Bearer wrong-key")])
        assert code == grpc.StatusCode.UNAUTHENTICATED, code
        r = c.send(req, timeout=10, metadata=[("authorization", "Bearer secret-key-0001-abcdef")])
        assert r.status == "accepted", r
        big = api.SendEventRequest(event=ev(source="k", event_type="e", data="x" * 5000))
        code, msg = code_of(c.send, big, timeout=10,
                            metadata=[("authorization", "Bearer secret-key-0001-abcdef")])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "4096" in msg, (code, msg)
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == 1,
                 timeout=30, what="the one authorised event processed")
        c.close()


def test_queue_full_is_resource_exhausted():
    # The worker blocks writing to a full FIFO, so the 10-event queue fills.
    d = tempfile.mkdtemp(prefix="ep-grpc-fifo-")
    fifo = os.path.join(d, "sink.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:
            os.write(wfd, b"#" * 63 + b"\n")
    except BlockingIOError:
        pass
    os.close(wfd)
    env, ports = grpc_env()
    env.update({"QUEUE_SIZE": "10", "PROCESSOR_WORKERS": "1", "PROCESSOR_BATCH": "4",
                "PROCESSOR_SINK": "file:" + fifo, "SHUTDOWN_TIMEOUT": "60"})
    with Eventpipe("run", env=env) as ep:
        c = Client(ports["GRPC_PRODUCER_PORT"])
        ok, full = [], 0
        for i in range(2000):
            code, msg = code_of(c.send, api.SendEventRequest(event=ev(
                id="qf-%d" % i, source="qf", event_type="e")), timeout=10)
            if code == grpc.StatusCode.OK:
                ok.append(i)
            else:
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "full" in msg, (code, msg)
                full += 1
                if full >= 5:
                    break
        assert full >= 5, "the queue never filled"
        assert get_json(ep.processor, "/stats")["queue"]["rejected_full"] >= 5
        c.close()
        done = threading.Event()

        def drain():
            while not done.is_set():
                try:
                    os.read(rfd, 65536)
                except BlockingIOError:
                    time.sleep(0.05)

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        assert ep.stop(timeout=90) == 0, ep.log_text()[-2000:]
        done.set()
        t.join()
    os.close(rfd)
    shutil.rmtree(d, ignore_errors=True)


class StallProcessor:
    """A processor that answers GET /ready (200) and nothing else: every other request
    is read and left unanswered, its connection open."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf, stalled = b"", False
        while True:
            try:
                d = c.recv(65536)
            except OSError:
                return
            if not d:
                return
            buf += d
            while not stalled and b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                if not head.startswith(b"GET /ready "):
                    stalled = True  # never answered; what follows on it is not read
                    break
                body = b'{"status":"ready"}'
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_unavailable_and_deadline_on_a_separate_ingest():
    # A processor that is down: UNAVAILABLE, and /ready's state in health.
    dead = free_port()
    env, ports = grpc_env()
    env.update({"PROCESSOR_URL": "http://127.0.0.1:%d" % dead, "CIRCUIT_BREAKER_FAILURES": "0"})
    with Eventpipe("ingest", env=env, ports={"api": free_port(), "ingest": free_port(),
                                             "processor": dead}) as ep:
        c = Client(ports["GRPC_PRODUCER_PORT"])
        code, msg = code_of(c.send, api.SendEventRequest(event=ev(
            id="u-1", source="s", event_type="e")), timeout=20)
        assert code == grpc.StatusCode.UNAVAILABLE, (code, msg)
        assert "retry" in msg, msg
        # Health follows /ready: 503 there, NOT_SERVING here, with the same reason.
        assert request(ep.ingest, "GET", "/ready").status == 503
        S = health.HealthCheckResponse
        assert c.check(health.HealthCheckRequest(), timeout=10).status == S.NOT_SERVING
        h = c.producer_health(api.HealthRequest(), timeout=10)
        assert not h.healthy and h.status != "ok", h
        c.close()
    # A processor that is ready and never answers an event: the client's deadline
    # (grpc-timeout) ends the call on the server before the hop's own timeout.
    stall = StallProcessor()
    env, ports = grpc_env()
    env.update({"PROCESSOR_URL": "http://127.0.0.1:%d" % stall.port,
                "UPSTREAM_TIMEOUT_MS": "20s", "CIRCUIT_BREAKER_FAILURES": "0",
                "SHUTDOWN_TIMEOUT": "1s"})
    with Eventpipe("ingest", env=env, ports={"api": free_port(), "ingest": free_port(),
                                             "processor": stall.port}) as ep:
        # Its /ready probe answered: the call below is forwarded, not refused up front.
        wait_for(lambda: request(ep.ingest, "GET", "/ready").status == 200, timeout=30,
                 what="ingest ready (the stalling processor's /ready answered)")
        c = Client(ports["GRPC_PRODUCER_PORT"])
        for attempt in range(2):
            t0 = time.time()
            code, msg = code_of(c.send, api.SendEventRequest(
                event=ev(source="s", event_type="e")), timeout=0.5)
            if code != grpc.StatusCode.UNAVAILABLE:
                break
            # Seen once on a saturated machine, in 0.1 s. Likely cause, since fixed: the gRPC
            # listeners started after the HTTP ones, so a client could come before them
            # (connection refused). Said and tried once more (a second one fails the test).
            print("  attempt %d: UNAVAILABLE: %s" % (attempt + 1, msg))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, msg)
        assert time.time() - t0 < 10
        c.close()

        def handled(code):
            m = request(ep.ingest, "GET", "/metrics").body.decode()
            return metric(m, "grpc_server_handled_total",
                          grpc_service="eventpipe.v1.ProducerService", grpc_method="SendEvent",
                          grpc_code=code)
        # grpcio cancels at its own deadline, about when the server's own ends it: that
        # call is counted as one or the other. Once it is, a raw HTTP/2 client that never
        # cancels shows the server ending the call by grpc-timeout.
        wait_for(lambda: handled("DEADLINE_EXCEEDED") + handled("CANCELLED") >= 1, timeout=10,
                 what="the first call counted")
        before = handled("DEADLINE_EXCEEDED")
        s = raw_h2(ports["GRPC_PRODUCER_PORT"])
        msg = api.SendEventRequest(event=ev(source="s", event_type="e")).SerializeToString()
        hdrs = b"".join(hpack_literal(k, v) for k, v in [
            (":method", "POST"), (":scheme", "http"), (":authority", "localhost"),
            (":path", "/eventpipe.v1.ProducerService/SendEvent"),
            ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "300m")])
        s.sendall(frame(1, 0x4, 1, hdrs) + frame(0, 0x1, 1, b"\0" + struct.pack(">I", len(msg)) + msg))
        t0 = time.time()
        end = None
        for f in h2_frames(s, time.time() + 15):
            if f[0] == 1 and f[2] == 1 and f[1] & 0x1:
                end = time.time() - t0  # the trailers-only answer on stream 1
                break
        assert end is not None and end < 15, end
        s.close()

        wait_for(lambda: handled("DEADLINE_EXCEEDED") == before + 1, timeout=10,
                 what="the server's DEADLINE_EXCEEDED")
    stall.close()


def test_split_roles_answer_from_the_forwarders_thread():
    # Separate ingest and processor: a call is answered from the forwarder's thread
    # (the processor's /enqueue answer), not from the loop that read it.
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    env, ports = grpc_env()
    with Eventpipe("processor", ports=p, env=env) as proc, \
            Eventpipe("ingest", ports=p, env=env) as ing:
        c = Client(ports["GRPC_PRODUCER_PORT"])
        cc = Client(ports["GRPC_CONSUMER_PORT"])
        results = []

        def sender(k):
            for i in range(50):
                r = c.send(api.SendEventRequest(event=ev(
                    id="split-%d-%d" % (k, i), source="split", event_type="e")), timeout=20)
                results.append(r.message_id)

        ts = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        r = c.batch(api.SendBatchEventsRequest(events=[
            ev(source="split", event_type="b") for _ in range(300)]), timeout=20)
        assert r.accepted == 300, r
        assert len(set(results)) == 200, len(results)
        wait_for(lambda: cc.consumer_stats(api.ConsumerStatsRequest(), timeout=10).processed
                 == 500, timeout=30, what="500 events processed by the separate processor")
        assert get_json(ing.ingest, "/stats")["TotalSent"] == 500
        assert cc.consumer_health(api.HealthRequest(), timeout=10).healthy
        c.close()
        cc.close()


def test_tls_with_alpn_h2():
    from test_tls import certs  # the CA and server certificate of the TLS tests (openssl)
    cs = certs()
    env, ports = grpc_env()
    env.update({"TLS_CERT_FILE": cs["srv1"][0], "TLS_KEY_FILE": cs["srv1"][1]})
    with Eventpipe("run", env=env, wait=False) as ep:
        with open(cs["ca1"], "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        ch = grpc.secure_channel("127.0.0.1:%d" % ports["GRPC_PRODUCER_PORT"], creds)
        send = unary(ch, "/eventpipe.v1.ProducerService/SendEvent", api.SendEventRequest,
                     api.SendEventResponse)
        ep.wait_log("listening")  # written once every listener is up
        r = send(api.SendEventRequest(event=ev(id="tls-1", source="tls", event_type="e")),
                 timeout=10)
        assert r.message_id == "tls-1" and not r.duplicate, r
        r = send(api.SendEventRequest(event=ev(id="tls-1", source="tls", event_type="e")),
                 timeout=10)
        assert r.duplicate, r
        # Plain h2c to the TLS port gets nothing.
        plain = grpc.insecure_channel("127.0.0.1:%d" % ports["GRPC_PRODUCER_PORT"])
        code, _ = code_of(unary(plain, "/grpc.health.v1.Health/Check", health.HealthCheckRequest,
                                health.HealthCheckResponse), health.HealthCheckRequest(),
                          timeout=3)
        assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), code
        plain.close()
        ch.close()


def test_send_and_bench_tools():
    from eptest import EP_BIN
    env, ports = grpc_env()
    env["API_KEYS"] = "tool-key-0001-abcdefgh"
    with Eventpipe("run", env=env) as ep:
        url = "127.0.0.1:%d" % ports["GRPC_PRODUCER_PORT"]
        key = ["--api-key", "tool-key-0001-abcdefgh"]
        r = subprocess.run([EP_BIN, "send", "--grpc", "--url", url, "--count", "200", "--quiet"]
                           + key, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "200 accepted, 0 failed" in r.stdout, r
        r = subprocess.run([EP_BIN, "send", "--grpc", "--url", url, "--count", "300", "--batch",
                            "50", "--quiet"] + key, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "300 accepted, 0 failed" in r.stdout, r
        # Without the key every call is refused, and the tool says so.
        r = subprocess.run([EP_BIN, "send", "--grpc", "--url", url, "--count", "5", "--quiet"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "UNAUTHENTICATED" in r.stdout, r
        r = subprocess.run([EP_BIN, "bench", "--grpc", "--url", url, "-c", "4", "-n", "400",
                            "--batch", "10", "--json", "--quiet"] + key,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r
        js = json.loads(r.stdout)
        assert js["ok"] == js["requests"] >= 400 and js["non2xx"] == 0, js
        want = 200 + 300 + js["ok"] * 10
        wait_for(lambda: get_json(ep.processor, "/stats")["pool"]["processed"] == want,
                 timeout=60, what="%d tool events processed" % want)


def h2_frames(sock, deadline):
    """Yields (type, flags, stream, payload) of the HTTP/2 frames read until deadline."""
    buf = b""
    while time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return
        if not chunk:
            yield ("closed", 0, 0, b"")
            return
        buf += chunk
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            yield (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n])
            buf = buf[9 + n:]


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    """A header as an HPACK literal without indexing, new name, no Huffman (short strings)."""
    n, v = name.encode(), value.encode()
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def raw_h2(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + b"\x04\x00" +
              struct.pack(">I", 0))
    return s


def test_keepalive_ping_and_goaway_on_sigterm():
    env, ports = grpc_env()
    env.update({"GRPC_KEEPALIVE_TIME": "300ms", "GRPC_KEEPALIVE_TIMEOUT": "1s"})
    with Eventpipe("run", env=env) as ep:
        port = ports["GRPC_PRODUCER_PORT"]
        # A silent connection gets a PING; one that never answers it is closed.
        s = raw_h2(port)
        seen = [f[0] for f in h2_frames(s, time.time() + 15)]
        assert 6 in seen, seen            # PING
        assert seen[-1] == "closed", seen  # the unanswered PING closed it
        s.close()
        # SIGTERM: an open connection gets GOAWAY, a health watcher NOT_SERVING, and the
        # process exits 0.
        c = Client(port)
        w = c.watch(health.HealthCheckRequest(service=""), timeout=30)
        S = health.HealthCheckResponse
        assert next(w).status == S.SERVING
        s = raw_h2(port)
        first = [f[0] for f in h2_frames(s, time.time() + 1)]
        assert 4 in first, first  # SETTINGS
        ep.proc.send_signal(signal.SIGTERM)
        seen = [f[0] for f in h2_frames(s, time.time() + 15)]
        assert 7 in seen, seen  # GOAWAY
        assert next(w).status == S.NOT_SERVING
        try:  # then the stream ends (UNAVAILABLE: shutting down), not a reset
            next(w)
            raise AssertionError("Watch went on after NOT_SERVING")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, e
            assert e.details() == "shutting down", e.details()
        assert ep.proc.wait(timeout=30) == 0, ep.log_text()[-2000:]
        s.close()
        c.close()


if __name__ == "__main__":
    main(globals())
