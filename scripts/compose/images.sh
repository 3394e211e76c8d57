#!/usr/bin/env bash
# The third-party images the stack runs, made available to the engine:
#   postgres:15, apache/kafka:4.1.1, python:3.11-slim
# Each is kept when the engine has it, else pulled; where the pull fails (no Docker Hub, as on
# the CI machines) a stand-in with the same tag is built from scripts/compose/standin/ on a
# Debian bookworm base made with debootstrap. kafbat/kafka-ui has no stand-in (its jar is only on
# GitHub): the compose test runs without the `ui` profile.
#
#   scripts/compose/images.sh                  # OHLCV_STANDIN=always: never pull, always stand in
#
# Stand-ins carry the label org.ohlcv.standin=<hash of their recipe>; a changed recipe (or
# wheelhouse) rebuilds them. Caches, in $OHLCV_COMPOSE_CACHE (default ~/.cache/ohlcv-compose,
# shared by every clone): the debootstrap root filesystem (rootfs-<hash>.tar) and the wheelhouse
# (wheelhouse-<hash of pyproject.toml>). The Kafka jars come from scripts/kafka/broker.py's cache.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${OHLCV_COMPOSE_CACHE:-$HOME/.cache/ohlcv-compose}
PY=${PY:-$ROOT/.venv/bin/python}
MODE=${OHLCV_STANDIN:-auto}
mkdir -p "$CACHE"
log() { echo "compose-test: $*" >&2; }

# Debian bookworm with everything the three stand-ins run: one base, shared layers.
PACKAGES=postgresql-15,postgresql-client-15,openjdk-17-jre-headless,python3.11,python3-pip,procps
MIRROR=$(sed -n 's/^URIs: *\(.*debian\)\/* *$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
MIRROR=${MIRROR:-http://deb.debian.org/debian}

sha() { sha256sum | cut -c1-12; }
BASE_HASH=$(printf '%s\n' "$PACKAGES" "bookworm" | sha)
BASE=ohlcv-standin/base:$BASE_HASH

label() { docker image inspect -f '{{index .Config.Labels "org.ohlcv.standin"}}' "$1" 2>/dev/null; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

base_image() {
  have "$BASE" && return 0
  local tar=$CACHE/rootfs-$BASE_HASH.tar
  if [[ ! -s $tar ]]; then
    log "debootstrap bookworm with $PACKAGES (about 2 minutes, once)"
    local dir=$CACHE/rootfs-$BASE_HASH.tmp
    rm -rf "$dir"
    mkdir -p "$CACHE/debs"
    debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$CACHE/debs" \
      bookworm "$dir" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
      { tail -30 "$CACHE/debootstrap.log" >&2; exit 1; }
    # No cluster of Debian's own (the entrypoint makes one in PGDATA), no apt lists, no logs.
    rm -rf "$dir"/var/lib/postgresql/15 "$dir"/etc/postgresql/15 "$dir"/var/lib/apt/lists/* \
           "$dir"/var/cache/apt/*.bin "$dir"/var/log/*.log
    tar -C "$dir" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$dir"
  fi
  log "importing $BASE"
  docker import "$tar" "$BASE" >/dev/null
}

wheelhouse() {  # prints the wheelhouse directory for this pyproject.toml
  local key dir
  key=$(sha <"$ROOT/pyproject.toml")
  dir=$CACHE/wheelhouse-$key
  if [[ ! -f $dir/.complete ]]; then
    log "wheelhouse for pyproject.toml (pip wheel on the host)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    { "$PY" -m pip wheel -q -w "$dir.tmp" "$ROOT" &&
      "$PY" -m pip download -q -d "$dir.tmp" "setuptools>=68" wheel pip; } \
      >"$CACHE/wheelhouse.log" 2>&1 || { tail -30 "$CACHE/wheelhouse.log" >&2; exit 1; }
    rm -f "$dir.tmp"/ohlcv-*.whl  # the project itself is built in the image, from the source
    touch "$dir.tmp/.complete"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# standin TAG NAME CONTEXT_DIR: build scripts/compose/standin/NAME with the extra files in
# CONTEXT_DIR, labelled with the hash of both.
standin() {
  local tag=$1 name=$2 ctx=$3 hash
  cp -r "$HERE/standin/$name/." "$ctx/"
  hash=$( (cd "$ctx" && find . -type f ! -name .complete -print0 | sort -z | xargs -0 sha256sum; echo "$BASE") | sha)
  if [[ $(label "$tag") == "$hash" ]]; then return 0; fi
  base_image
  log "building stand-in $tag"
  docker build -q --build-arg BASE="$BASE" --label org.ohlcv.standin="$hash" -t "$tag" "$ctx" >/dev/null
}

ensure() {  # ensure TAG NAME
  local tag=$1 name=$2
  if [[ $MODE != always ]] && have "$tag" && [[ -z $(label "$tag") ]]; then
    return 0  # the real image
  fi
  if [[ $MODE != always ]] && ! have "$tag"; then
    if timeout 120 docker pull -q "$tag" >/dev/null 2>&1; then log "pulled $tag"; return 0; fi
    log "cannot pull $tag: building a stand-in"
  fi
  local ctx=$CACHE/build/$name
  rm -rf "$ctx" && mkdir -p "$ctx"
  case $name in
    python) cp -al "$(wheelhouse)" "$ctx/wheelhouse" ;;
    kafka)
      local libs
      libs=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import broker; print(broker.ensure_jars())' "$ROOT/scripts/kafka")
      cp -al "$libs" "$ctx/libs" 2>/dev/null || cp -r "$libs" "$ctx/libs"
      rm -f "$ctx/libs/.complete" ;;
  esac
  standin "$tag" "$name" "$ctx"
}

ensure postgres:15 postgres
ensure apache/kafka:4.1.1 kafka
ensure python:3.11-slim python
