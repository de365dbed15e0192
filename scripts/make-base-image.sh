#!/usr/bin/env bash
# Build the image's base locally, with no image registry: debootstrap a minimal Debian with its
# own python3, libpq5 and tini, then `docker import` it. Usage: make-base-image.sh [TAG]
# The mirror is read from this machine's apt sources, so no host name is written down here.
set -euo pipefail
TAG="${1:-aijobs-base:bookworm}"
SUITE="${SUITE:-bookworm}"
PACKAGES="python3,python3-venv,libpq5,ca-certificates,tini"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  [ "$(id -u)" = "0" ] || { echo "debootstrap is missing and needs root to install" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

mirror() {
  # deb822 (.sources): the first URIs line; one-line format: the first `deb` line's URL.
  local uri
  uri=$(grep -h -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -h -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | grep -v security | awk '{for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | head -n1 || true)
  fi
  [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
  echo "$uri"
}

ROOTFS=$(mktemp -d /var/tmp/aijobs-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
MIRROR=$(mirror)
echo "debootstrap $SUITE ($PACKAGES) into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -n 30 "$ROOTFS.log" >&2; exit 1; }
rm -f "$ROOTFS.log"
# Smaller and reproducible-ish: no apt lists, caches or docs in the image.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
  "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/*
tar -C "$ROOTFS" -c . | docker import \
  -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$TAG" >/dev/null
echo "base image $TAG imported ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
