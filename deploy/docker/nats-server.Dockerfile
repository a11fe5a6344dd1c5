# ferry/nats-server:dev — NATS (nats-server v2.15.2 from deploy/go.mod, built
# by deploy/nats/cmd/nats-server) with Ferry's configuration in /etc/nats, the
# layout bootstrap (ferry-bootstrap) and the health check.
# Built by scripts/images.sh from bin/; the build context is the repository root.
# FROM scratch: nothing is pulled.
FROM scratch
COPY deploy/docker/passwd deploy/docker/group /etc/
COPY bin/nats-server bin/ferry-bootstrap bin/ferry-healthcheck /usr/local/bin/
COPY deploy/nats/auth.conf deploy/nats/cluster.conf deploy/nats/single.conf deploy/nats/single-tls.conf /etc/nats/
# A named volume mounted on /data starts as a copy of this directory,
# owned by the non-root user.
COPY --chown=65532:65532 deploy/docker/data/ /data/
USER 65532:65532
EXPOSE 4222 6222 8222
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-c", "/etc/nats/single.conf"]
