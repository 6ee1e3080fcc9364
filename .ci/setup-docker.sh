#!/usr/bin/env bash
# Docker for the container tests: Debian's docker.io engine (vfs storage, no iptables/bridge: it runs
# inside a sandbox), the base image made with debootstrap (no registry is reachable), and the host's
# extra CA certificates copied into containers/certs/ so pip and apt inside the build trust the
# TLS-intercepting proxy this machine reaches PyPI through. Idempotent; prints how long it took.
set -euo pipefail
started=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

if ! command -v dockerd > /dev/null || ! command -v debootstrap > /dev/null; then
    echo "[docker] apt-get install docker.io debootstrap"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io debootstrap > /dev/null
fi

# Debian's client (/usr/bin/docker, 20.10) has BuildKit built in; a newer client without the buildx
# plugin earlier on PATH cannot build the Dockerfile (RUN --mount).
DOCKER=docker
if ! docker buildx version > /dev/null 2>&1 && [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; fi
export DOCKER

start_dockerd() {  # $1 = storage driver; returns non-zero if the engine does not come up with it
    echo "[docker] starting dockerd ($1)"
    mkdir -p /var/log
    nohup dockerd --storage-driver="$1" --iptables=false --bridge=none \
        > "/var/log/sonatarun-dockerd-$1.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 60); do
        $DOCKER info > /dev/null 2>&1 && return 0
        kill -0 "$pid" 2> /dev/null || break
        sleep 1
    done
    tail -n 20 "/var/log/sonatarun-dockerd-$1.log" >&2
    kill "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    return 1
}
# overlay2 shares layers (a container starts in ~1 s); vfs, the fallback where overlay mounts are not
# allowed, copies the whole image for every layer and every container (~1 min per `docker run`).
if ! $DOCKER info > /dev/null 2>&1; then
    case "${SONATARUN_DOCKER_STORAGE:-auto}" in
        auto) start_dockerd overlay2 || start_dockerd vfs ;;
        *) start_dockerd "$SONATARUN_DOCKER_STORAGE" ;;
    esac
fi

# The host's own extra CAs (a proxy's) become the build's: see containers/certs/README.md.
for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$crt" ] && cp -u "$crt" "$REPO/containers/certs/"
done

"$REPO/containers/make-base-image.sh" debian:bookworm-slim
echo "[docker] ready (engine $($DOCKER version --format '{{.Server.Version}}'), storage $($DOCKER info --format '{{.Driver}}'), $(( $(date +%s) - started ))s)"
