# eventpipe container image (docs/deployment.md, "Docker and compose").
#
#   docker build -t eventpipe .
#   docker run --rm -p 8080-8083:8080-8083 eventpipe            # eventpipe run, memory queue
#   docker run --rm -e QUEUE_TYPE=nats -e NATS_URL=nats://nats:4222 eventpipe eventpipe ingest
#
# Build stage: the project's own set-up script installs the compilers and -dev
# libraries (scripts/setup.sh --build-only), then a Release build of the binary.
# Final stage: debian:12-slim with only the shared libraries the binary links
# (found with ldd, their Debian packages with dpkg -S, installed with apt-get), the
# stripped binary and a non-root user. Configured by the usual environment
# (`eventpipe run --help`); SIGTERM (docker stop) drains and exits 0 within
# SHUTDOWN_TIMEOUT (10s): give `docker stop -t` / compose stop_grace_period more.

FROM debian:12-slim AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh --build-only && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release >/dev/null \
    && cmake --build /build -j"$(nproc)" --target eventpipe \
    && mkdir -p /out \
    && strip -o /out/eventpipe /build/eventpipe \
    && ldd /out/eventpipe | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
       | while read -r lib; do dpkg -S "*/$(basename "$lib")"; done \
       | awk -F: '{ print $1 }' | grep -v -x -e libc6 | sort -u > /out/runtime-packages \
    && echo "runtime packages:" $(cat /out/runtime-packages)

FROM debian:12-slim
COPY --from=build /out/runtime-packages /usr/share/eventpipe/runtime-packages
# ca-certificates: https hops and brokers verified against the system store by default.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
       $(cat /usr/share/eventpipe/runtime-packages) \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 10001 eventpipe \
    && useradd --uid 10001 --gid eventpipe --no-create-home --home-dir /var/lib/eventpipe \
       --shell /usr/sbin/nologin eventpipe \
    && mkdir -p /var/lib/eventpipe/queue \
    && chown -R eventpipe:eventpipe /var/lib/eventpipe
COPY --from=build /out/eventpipe /usr/local/bin/eventpipe

# The disk queue (QUEUE_TYPE=disk) lives in the volume; PROCESSOR_SINK=file:PATH may too.
ENV QUEUE_DIR=/var/lib/eventpipe/queue
VOLUME ["/var/lib/eventpipe"]
WORKDIR /var/lib/eventpipe
USER eventpipe:eventpipe

# gateway, ingest, processor, analytics; gRPC producer, consumer, analytics (issue 16).
EXPOSE 8080 8081 8082 8083 50051 50052 50053

# GET /health of the role the container runs (PID 1's: `eventpipe processor` checks the
# processor port, `eventpipe run` the gateway port), with the container's settings.
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=3 \
    CMD ["eventpipe", "healthcheck"]

STOPSIGNAL SIGTERM
CMD ["eventpipe", "run"]
