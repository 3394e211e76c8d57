#!/usr/bin/env bash
# The Docker engine and CLI plugins `make compose-test` needs, installed only where missing:
#   - Docker Engine (Debian's docker.io, 20.10) and debootstrap, via apt;
#   - Docker Compose v2 and buildx, built from the Go module proxy and installed as CLI plugins
#     in /usr/local/lib/docker/cli-plugins (an installed plugin of the right version is kept);
#   - dockerd, started in the background when no engine answers (log: $CACHE/dockerd.log).
#
#   scripts/compose/engine.sh install   # packages and plugins
#   scripts/compose/engine.sh start     # prints "started" when it started dockerd, else "running"
#   scripts/compose/engine.sh stop      # stops the dockerd that `start` started (pid file)
#
# Go's module and build caches and the built plugins live in $OHLCV_COMPOSE_CACHE (default
# ~/.cache/ohlcv-compose), shared by every clone on the machine: a fresh clone builds nothing.
set -euo pipefail

COMPOSE_VERSION=v2.40.3
BUILDX_VERSION=v0.38.2
CACHE=${OHLCV_COMPOSE_CACHE:-$HOME/.cache/ohlcv-compose}
PLUGINS=/usr/local/lib/docker/cli-plugins
mkdir -p "$CACHE"

log() { echo "compose-test: $*" >&2; }

apt_install() {  # apt_install COMMAND PACKAGE...
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  log "installing $* (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >"$CACHE/apt.log" 2>&1 || {
    apt-get update -q >>"$CACHE/apt.log" 2>&1
    apt-get install -y -q --no-install-recommends "$@" >>"$CACHE/apt.log" 2>&1 ||
      { tail -30 "$CACHE/apt.log" >&2; exit 1; }
  }
}

# plugin NAME MODULE VERSION PKG VERSION_VAR: build MODULE@VERSION's PKG with Go, once, with
# VERSION_VAR (a Go variable) set to VERSION (Compose refuses a buildx without a version).
plugin() {
  local name=$1 module=$2 version=$3 pkg=$4 var=$5
  local dest=$PLUGINS/docker-$name built=$CACHE/plugins/docker-$name-$version
  if [[ -x $dest ]] && "$dest" version 2>/dev/null | grep -q -- "${version#v}"; then
    return 0
  fi
  if [[ ! -x $built ]]; then
    log "building docker-$name $version from the Go module proxy (a few minutes, once)"
    command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
    command -v go >/dev/null 2>&1 || apt_install go golang-go
    export GOPATH=$CACHE/go GOMODCACHE=$CACHE/go/pkg/mod GOCACHE=$CACHE/go-build GOFLAGS=-mod=mod
    local dir
    dir=$(go mod download -json "$module@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [[ -d $dir ]] || { log "go mod download $module@$version failed"; exit 1; }
    local src=$CACHE/src/$name-$version
    rm -rf "$src" && mkdir -p "$CACHE/src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
    mkdir -p "$CACHE/plugins"
    (cd "$src" && go build -trimpath -ldflags "-s -w -X $var=$version" -o "$built.tmp" "./$pkg" >"$CACHE/go-$name.log" 2>&1) ||
      { tail -30 "$CACHE/go-$name.log" >&2; exit 1; }
    mv "$built.tmp" "$built"
    rm -rf "$src"
  fi
  mkdir -p "$PLUGINS"
  install -m 0755 "$built" "$dest"
}

engine_up() { timeout 5 docker info >/dev/null 2>&1; }

case ${1:-} in
  install)
    apt_install dockerd docker.io
    apt_install debootstrap debootstrap
    plugin compose github.com/docker/compose/v2 "$COMPOSE_VERSION" cmd \
      github.com/docker/compose/v2/internal.Version
    plugin buildx github.com/docker/buildx "$BUILDX_VERSION" cmd/buildx \
      github.com/docker/buildx/version.Version
    docker compose version >&2
    docker buildx version >&2
    ;;
  start)
    if engine_up; then echo running; exit 0; fi
    log "starting dockerd (log: $CACHE/dockerd.log)"
    # Forwarding and masquerading off: containers reach each other and 127.0.0.1, nothing else.
    setsid dockerd --storage-driver=overlay2 --ip-forward=false --ip-masq=false \
      --pidfile "$CACHE/dockerd.pid" >>"$CACHE/dockerd.log" 2>&1 </dev/null 9>&- &
    for _ in $(seq 120); do
      if engine_up; then echo started; exit 0; fi
      sleep 0.5
    done
    log "dockerd did not answer within 60 s:"; tail -30 "$CACHE/dockerd.log" >&2; exit 1
    ;;
  stop)
    pid=$(cat "$CACHE/dockerd.pid" 2>/dev/null || true)
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || exit 0
    log "stopping dockerd ($pid)"
    kill -TERM "$pid"
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.5; done
    log "dockerd $pid still running after 60 s"; exit 1
    ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
