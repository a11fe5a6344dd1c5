# Sourced by scripts/compose-*.sh: the compose project and its dev credentials.
# shellcheck shell=bash
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export COMPOSE_PROJECT_NAME=ferry
FERRY_COMPOSE_ENV_FILE=${FERRY_COMPOSE_ENV_FILE:-deploy/compose/dev.env}
dc() { docker-compose -p "$COMPOSE_PROJECT_NAME" --env-file "$FERRY_COMPOSE_ENV_FILE" "$@"; }
