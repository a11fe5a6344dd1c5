# Sourced by scripts/compose-*.sh: the compose project and its generated secrets.
# shellcheck shell=bash
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export COMPOSE_PROJECT_NAME=ferry
FERRY_COMPOSE_ENV_FILE=${FERRY_COMPOSE_ENV_FILE:-deploy/compose/secrets/stack.env}
FERRY_COMPOSE_CREDS=${FERRY_COMPOSE_CREDS:-deploy/compose/secrets/creds}
export FERRY_COMPOSE_ENV_FILE FERRY_COMPOSE_CREDS
dc() {
	bash scripts/compose-secrets.sh
	docker-compose -p "$COMPOSE_PROJECT_NAME" --env-file "$FERRY_COMPOSE_ENV_FILE" "$@"
}
