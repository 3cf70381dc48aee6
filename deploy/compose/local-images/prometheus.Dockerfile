# Prometheus from Debian 12's package, for machines that cannot pull prom/prometheus
# (scripts/docker.sh images builds it as eventpipe-local/prometheus). Used like the
# official image: ENTRYPOINT prometheus, data in /prometheus, the compose file gives
# the flags; wget serves the compose healthcheck.
FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
USER prometheus
WORKDIR /prometheus
VOLUME ["/prometheus"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
