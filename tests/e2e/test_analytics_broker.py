"""With a broker queue the analytics role reads the stream itself with a
durable of its own: separate ingest, processor and analytics processes over a
real nats-server; analytics counts every event exactly once (the processor
pushes nothing), and replaying a batch with client ids adds nothing."""

import time

from ep_nats import NatsServer
from eptest import Eventpipe, free_port, get_json, main, request, wait_for
from test_analytics import check_summary, known_events, send_all


def test_analytics_reads_nats_with_its_own_durable():
    p = {"api": free_port(), "ingest": free_port(), "processor": free_port(),
         "analytics": free_port()}
    with NatsServer() as ns:
        env = {"QUEUE_TYPE": "nats", "NATS_URL": ns.url}
        with Eventpipe("processor", ports=p, env=env) as proc, \
                Eventpipe("ingest", ports=p, env=env) as ing, \
                Eventpipe("analytics", ports=p, env=env) as an:
            send_all(p["ingest"], known_events(), path="/ingest")
            wait_for(lambda: get_json(p["analytics"], "/analytics/summary")["total_events"] == 300,
                     timeout=30, what="analytics read 300 events from NATS")
            wait_for(lambda: get_json(p["processor"], "/stats")["pool"]["processed"] == 300,
                     timeout=30, what="the processor processed 300")
            time.sleep(1.5)
            s = get_json(p["analytics"], "/analytics/summary")
            check_summary(s)  # exactly once: no delta pushes on top of the stream
            assert get_json(p["processor"], "/stats")["analytics_push"] is None

            # The same events again with their client ids: nothing new anywhere.
            lines = "\n".join('{"id":"ev-%d","source":"web-app","event_type":"click"}' % i
                              for i in range(300))
            r = request(p["ingest"], "POST", "/events/batch", lines,
                        headers={"Content-Type": "application/x-ndjson"})
            assert r.status == 202 and r.json()["duplicates"] == 300, r
            time.sleep(1.5)
            assert get_json(p["analytics"], "/analytics/summary")["total_events"] == 300
            assert get_json(p["processor"], "/stats")["pool"]["processed"] == 300
            for e in (an, ing, proc):
                assert e.stop() == 0


if __name__ == "__main__":
    main(globals())
