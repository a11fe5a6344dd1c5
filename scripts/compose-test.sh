#!/usr/bin/env bash
# The compose fault tests (make test-compose, run by CI when Docker works).
# Images must exist (make images). The Go test (test/compose, build tag
# compose) starts the stack, runs the scenarios, prints their figures and
# takes the stack down; this script takes it down again whatever happens.
#   FERRY_COMPOSE_ONLY_NATS=1   only the NATS cluster part (no Ferry services needed)
#   FERRY_COMPOSE_KEEP=1        leave the stack up afterwards (for debugging)
#   FERRY_COMPOSE_RUN=<regexp>  run only matching scenarios (go test -run TestCompose/<regexp>)
set -euo pipefail
source "$(dirname "$0")/compose-env.sh"
root=$PWD
cleanup() {
	if [ "${FERRY_COMPOSE_KEEP:-}" != 1 ]; then
		(cd "$root" && dc down -v --remove-orphans >/dev/null 2>&1) || true
	fi
}
trap cleanup EXIT
run=TestCompose
if [ -n "${FERRY_COMPOSE_RUN:-}" ]; then run="TestCompose/${FERRY_COMPOSE_RUN}"; fi
cd test
go test -tags compose -count=1 -timeout "${FERRY_COMPOSE_TIMEOUT:-30m}" -v -run "$run" ./compose/
