# ferry/placement:dev — the placement service (placement.v1.* and evacuations)
# Built by scripts/images.sh (make images) from the static binaries `make build`
# puts in bin/ (CGO_ENABLED=0); the build context is the repository root.
# FROM scratch: nothing is pulled, no shell, no package manager.
FROM scratch
COPY deploy/docker/passwd deploy/docker/group /etc/
COPY bin/ferry-placement bin/ferry-healthcheck /usr/local/bin/
USER 65532:65532
EXPOSE 9100
ENTRYPOINT ["/usr/local/bin/ferry-placement"]
