#!/usr/bin/env bash
# make compose-test: the Docker Compose stack for real. Installs what is missing (engine.sh),
# starts dockerd when none answers and stops it again at the end, makes the third-party images
# available (images.sh: pulled, or stand-ins), then runs the checks (test_stack.py), which bring
# the stack up with `make up` and remove it again. Kafka UI (profile `ui`) is not part of it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
export PY
t0=$SECONDS
step() { echo "compose-test: $* ($((SECONDS - t0)) s)"; }

# One compose test at a time on a machine (one project name, one dockerd to start and stop).
CACHE=${OHLCV_COMPOSE_CACHE:-$HOME/.cache/ohlcv-compose}
mkdir -p "$CACHE"
exec 9>"$CACHE/run.lock"
flock 9
step "lock taken"

scripts/compose/engine.sh install
engine=$(scripts/compose/engine.sh start)
finish() {
  rc=$?
  # Whatever the checks left (they clean up themselves; this is for an interrupted run).
  if docker ps -aq --filter label=com.docker.compose.project=ohlcv-compose-test | grep -q .; then
    docker compose -p ohlcv-compose-test down --volumes --remove-orphans --timeout 10 >/dev/null 2>&1 || true
    docker image rm -f ohlcv-compose-test:local >/dev/null 2>&1 || true
  fi
  # BuildKit's layer cache makes the next build fast; a new layer per source change, so bounded.
  docker builder prune -f --keep-storage 3gb >/dev/null 2>&1 || true
  if [[ $engine == started ]]; then scripts/compose/engine.sh stop || true; fi
  step "finished, exit $rc"
  exit "$rc"
}
trap finish EXIT
trap 'exit 143' TERM INT HUP
step "engine ready ($engine)"
scripts/compose/images.sh
step "images ready"
echo "compose-test: Kafka UI is not run (profile ui left out): kafbat/kafka-ui cannot be pulled here and has no stand-in"
"$PY" -m pytest -x -ra -p no:cacheprovider -o addopts= scripts/compose/test_stack.py
