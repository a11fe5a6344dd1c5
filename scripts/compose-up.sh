#!/usr/bin/env bash
# Starts the compose stack (make up; images must exist: make images) and
# waits until every container with a health check is healthy.
#   scripts/compose-up.sh                 # everything
#   scripts/compose-up.sh bootstrap       # only NATS (3 nodes) and the layout bootstrap
set -euo pipefail
source "$(dirname "$0")/compose-env.sh"

dc up -d "$@"

deadline=$((SECONDS + ${FERRY_COMPOSE_WAIT:-180}))
while :; do
	pending=()
	for id in $(dc ps -q); do
		read -r name state health < <(docker inspect --format '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}' "$id")
		name=${name#/}
		if [ "$name" = ferry-bootstrap ]; then
			code=$(docker inspect --format '{{.State.ExitCode}}' "$id")
			if [ "$state" = exited ] && [ "$code" != 0 ]; then
				docker logs "$name" >&2
				echo "bootstrap failed (exit $code)" >&2
				exit 1
			fi
			[ "$state" = exited ] || pending+=("$name:$state")
			continue
		fi
		if [ "$state" != running ] || { [ "$health" != - ] && [ "$health" != healthy ]; }; then
			pending+=("$name:$state/$health")
		fi
	done
	[ ${#pending[@]} -eq 0 ] && break
	if [ $SECONDS -ge $deadline ]; then
		echo "not ready: ${pending[*]}" >&2
		dc ps >&2
		exit 1
	fi
	sleep 1
done
dc ps
cat <<INFO

Ferry is up.
  NATS (nats-1)  nats://127.0.0.1:${FERRY_NATS_PORT:-14222}   credentials: ${FERRY_COMPOSE_CREDS}/users/<user>.creds
  edge RTSP      rtsp://127.0.0.1:${FERRY_EDGE_RTSP_PORT:-18554}/cam-1
  status         FERRY_NATS_URL=nats://127.0.0.1:${FERRY_NATS_PORT:-14222} FERRY_NATS_CREDS=${FERRY_COMPOSE_CREDS}/users/monitor.creds \\
                 FERRY_NATS_INBOX_PREFIX=_INBOX_monitor bin/ferryctl status
  probe report   docker logs -f ferry-probe
  stop           make down
INFO
