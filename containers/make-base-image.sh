#!/bin/sh
# Make the Dockerfile's default base image, debian:bookworm-slim, from Debian packages with
# debootstrap, for machines that cannot pull from a registry (this project's CI among them).
# Like the official slim image: minbase variant, no docs/man pages/locales installed later on.
# Usage: make-base-image.sh [TAG]      (idempotent: an existing TAG is kept)
#   DEBIAN_MIRROR   default http://deb.debian.org/debian
set -eu
TAG="${1:-debian:bookworm-slim}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-docker}"
if $DOCKER image inspect "$TAG" > /dev/null 2>&1; then
    echo "[base-image] $TAG already present"
    exit 0
fi
command -v debootstrap > /dev/null || { echo "[base-image] needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" > "$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
root="$work/rootfs"
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
SOURCES
cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
SLIM
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
APT::Install-Recommends "false";
Acquire::GzipIndexes "true";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CLEAN
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
tar -C "$root" -c . | $DOCKER import --change 'CMD ["bash"]' - "$TAG" > /dev/null
echo "[base-image] $TAG made with debootstrap in $(( $(date +%s) - started ))s"
