# Sourced by the bench scripts: a free TCP port, waiting for a started server,
# and the CPU pinning used by every scenario (server on CPU 0, load generator on
# CPU 1 when there are two).
# Waits up to 10 s for GET /health on the port to answer; returns 1 if it never does.
wait_healthy() {
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Free ports for every role of `eventpipe run` (API, ING, PROC, ANA, GRPC) and port_env, the
# environment that uses them, to put after the caller's: whatever the caller's
# environment says (ANALYTICS_PORT=8083 taken, a stale INGEST_URL), the server binds
# these four ports and its roles find each other on them.
pick_ports() {
    API=$(free_port); ING=$(free_port); PROC=$(free_port); ANA=$(free_port)
    GRPC=$(free_port) # the gRPC producer port (issue 16); consumer and analytics gRPC: off
    port_env=(API_PORT="$API" INGEST_PORT="$ING" PROCESSOR_PORT="$PROC" ANALYTICS_PORT="$ANA"
        INGEST_URL="http://127.0.0.1:$ING" PROCESSOR_URL="http://127.0.0.1:$PROC"
        ANALYTICS_URL="http://127.0.0.1:$ANA" BIND_ADDR=127.0.0.1
        GRPC_PRODUCER_PORT="$GRPC" GRPC_CONSUMER_PORT=0 GRPC_ANALYTICS_PORT=0)
}

srv_pin=(); load_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    srv_pin=(taskset -c 0); load_pin=(taskset -c 1)
fi
