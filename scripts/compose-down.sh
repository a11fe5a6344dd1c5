#!/usr/bin/env bash
# Stops the compose stack and removes its containers, networks and volumes (make down).
set -euo pipefail
source "$(dirname "$0")/compose-env.sh"
dc down -v --remove-orphans
