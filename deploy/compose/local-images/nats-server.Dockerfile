# nats-server from Debian 12's package, for machines that cannot pull the official
# `nats` image (scripts/docker.sh images builds it as eventpipe-local/nats-server).
# It is used like the official one: ENTRYPOINT nats-server, the compose file gives
# the arguments (-js -sd /data -m 8222); wget serves the compose healthcheck.
FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends nats-server wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown nats:nats /data
USER nats
VOLUME ["/data"]
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/sbin/nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
