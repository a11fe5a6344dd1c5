# ferry/nats-server:dev — NATS (nats-server v2.15.2 from deploy/go.mod, built
# by deploy/nats/cmd/nats-server) with Ferry's configuration in /etc/nats, the
# layout bootstrap (ferry-bootstrap) and the health check.
# Built by scripts/images.sh from bin/; the build context is the repository root.
# FROM scratch: nothing is pulled.
FROM scratch
COPY deploy/docker/passwd deploy/docker/group /etc/
COPY bin/nats-server bin/ferry-bootstrap bin/ferry-healthcheck /usr/local/bin/
COPY deploy/nats/cluster.conf deploy/nats/single.conf deploy/nats/single-tls.conf /etc/nats/
# /data, owned by the non-root user: a named volume mounted there (the
# compose stack's nats-N volumes) starts as a copy of it, so it is writable.
# No VOLUME line: the bootstrap, which runs this image too, needs none.
COPY --chown=65532:65532 deploy/docker/data/ /data/
USER 65532:65532
EXPOSE 4222 6222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-c", "/etc/nats/single.conf"]
