-- wrk script: one seed-000 event per POST /api/v1/ingest.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"source":"sensor-01","data":"temperature:23.5","metadata":{"location":"warehouse-A"}}'

done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("events/s: %.0f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("latency p50=%.2fms p90=%.2fms p99=%.2fms p99.9=%.2fms max=%.2fms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
  io.write(string.format("requests=%d non2xx=%d socket_errors=%d\n", summary.requests, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
