# Sourced by the bench scripts: a free TCP port, and the CPU pinning used by
# every scenario (server on CPU 0, load generator on CPU 1 when there are two).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

srv_pin=(); load_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    srv_pin=(taskset -c 0); load_pin=(taskset -c 1)
fi
