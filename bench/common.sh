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

srv_pin=(); load_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    srv_pin=(taskset -c 0); load_pin=(taskset -c 1)
fi
