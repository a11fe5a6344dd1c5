#!/usr/bin/env bash
# Builds Ferry's FROM-scratch images, tagged ferry/<name>:dev, from the static
# binaries in bin/ (`make build` for the services and clients; this script
# builds the NATS server, the bootstrap and the health check itself).
# Nothing is pulled: every image starts FROM scratch.
#
#   scripts/images.sh              # every image
#   scripts/images.sh nats-server  # only the named images
#
# FERRY_IMAGES_ALLOW_MISSING=1 skips images whose binary is not built yet
# (otherwise a missing binary is an error).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
TAG=${FERRY_IMAGE_TAG:-dev}
# Docker Engine 20.10 without buildx: the classic builder.
export DOCKER_BUILDKIT=0

# image name -> binary in bin/
declare -A BIN=(
	[nats-server]=nats-server
	[ingest]=ferry-ingest
	[healthpredict]=ferry-healthpredict
	[placement]=ferry-placement
	[notifier]=ferry-notifier
	[publish]=ferry-publish
	[ferryctl]=ferryctl
)
ORDER=(nats-server ingest healthpredict placement notifier publish ferryctl)

if [ $# -gt 0 ]; then ORDER=("$@"); fi

mkdir -p bin
echo "build nats-server, ferry-bootstrap, ferry-healthcheck (static)"
for c in deploy/nats/cmd/nats-server deploy/nats/cmd/ferry-bootstrap deploy/healthcheck/cmd/ferry-healthcheck; do
	CGO_ENABLED=0 "$GO" build -trimpath -o bin/ "./$c"
done

static() { # a dynamically linked binary has a program interpreter
	if command -v readelf >/dev/null 2>&1; then
		! readelf -l "$1" 2>/dev/null | grep -q 'INTERP'
	else
		return 0
	fi
}

missing=0
for name in "${ORDER[@]}"; do
	bin=${BIN[$name]:-}
	if [ -z "$bin" ]; then
		echo "unknown image $name (known: ${!BIN[*]})" >&2
		exit 2
	fi
	if [ ! -x "bin/$bin" ]; then
		echo "skip ferry/$name: bin/$bin is missing (make build)" >&2
		missing=1
		continue
	fi
	for b in "bin/$bin" bin/ferry-healthcheck; do
		if ! static "$b"; then
			echo "$b is dynamically linked: build it with CGO_ENABLED=0" >&2
			exit 1
		fi
	done
	start=$(date +%s%N)
	# The classic builder's deprecation notice goes to stderr: show it only on failure.
	if ! out=$(docker build --quiet --file "deploy/docker/$name.Dockerfile" --tag "ferry/$name:$TAG" . 2>&1); then
		echo "$out" >&2
		exit 1
	fi
	size=$(docker image inspect --format '{{.Size}}' "ferry/$name:$TAG")
	awk -v n="ferry/$name:$TAG" -v s="$size" -v t0="$start" -v t1="$(date +%s%N)" \
		'BEGIN { printf "image %-26s %6.1f MB  %5.1fs\n", n, s / 1048576, (t1 - t0) / 1e9 }'
done
if [ "$missing" = 1 ] && [ "${FERRY_IMAGES_ALLOW_MISSING:-}" != 1 ]; then
	echo "some images were not built (set FERRY_IMAGES_ALLOW_MISSING=1 to allow)" >&2
	exit 1
fi
