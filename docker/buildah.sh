#!/usr/bin/env bash
# docker/buildah.sh - the lostd image without Docker and without a registry,
# as root, from the repository root (README "Deploy", `make image`):
#
#   bash docker/buildah.sh base          the Debian 12 base image, unless present
#   bash docker/buildah.sh image [TAG]   the base, then docker/Dockerfile (TAG: lostd)
#   bash docker/buildah.sh mirror        the apt mirror it debootstraps from
#
# The base, localhost/debian:bookworm, is `debootstrap --variant=minbase
# bookworm` from the apt mirror this machine uses (the first URIs of
# /etc/apt/sources.list.d/debian.sources, else deb.debian.org), with that file
# copied in so the image's apt sees the same suites (updates, security) as an
# official debian:bookworm image would, and apt's lists and caches removed.
# It is kept in two places and reused: as the podman image, and as a tarball
# in $LOSTD_IMAGE_CACHE (default /var/cache/lostd-image) from which the image
# is re-imported when the container storage was reset. Concurrent runs wait
# for each other on a lock there. Delete the tarball and `podman rmi
# localhost/debian:bookworm` to make a fresh base.
#
# The image is `buildah bud --isolation chroot --network host --format docker`
# (HEALTHCHECK exists only in the docker format: buildah's default, OCI,
# drops it with a warning). Needs buildah, podman and debootstrap (Debian
# packages of the same names).
#
# Prints "base: reused|imported|debootstrapped ..." for the base step.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMG=${LOSTD_BASE_IMAGE:-localhost/debian:bookworm}
CACHE=${LOSTD_IMAGE_CACHE:-/var/cache/lostd-image}
TARBALL=$CACHE/debian-bookworm-minbase.tar
SOURCES=/etc/apt/sources.list.d/debian.sources

die() { echo "docker/buildah.sh: $*" >&2; exit 1; }

# The mirror of the bookworm suite in this machine's apt sources.
mirror() {
    local m=
    if [ -r "$SOURCES" ]; then
        m=$(awk '/^URIs:/ { print $2; exit }' "$SOURCES")
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

make_base() {
    local root=$CACHE/rootfs.$$
    rm -rf "$root"
    trap 'rm -rf "$root" "$TARBALL.part"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 ||
        die "debootstrap failed, see $CACHE/debootstrap.log"
    if [ -r "$SOURCES" ] && grep -q '^Suites:.*bookworm' "$SOURCES"; then
        cp "$SOURCES" "$root/etc/apt/sources.list.d/debian.sources"
        rm -f "$root/etc/apt/sources.list"
    fi
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
           "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . >"$TARBALL.part"
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$root"
    trap - EXIT
}

base() {
    [ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, buildah's chroot isolation)"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/lock"
    flock -w 1800 9 || die "waited 30 minutes for $CACHE/lock"
    if podman image exists "$BASE_IMG"; then
        echo "base: reused $BASE_IMG"
        return 0
    fi
    local how=imported
    if [ ! -s "$TARBALL" ]; then
        make_base
        how=debootstrapped
    fi
    podman import -q - "$BASE_IMG" <"$TARBALL" >/dev/null
    echo "base: $how $BASE_IMG ($TARBALL, mirror $(mirror))"
}

case "${1:-image}" in
mirror)
    mirror
    ;;
base)
    base
    ;;
image)
    base
    exec 9>&-
    buildah bud --isolation chroot --network host --format docker \
        --build-arg BASE="$BASE_IMG" -f docker/Dockerfile -t "${2:-lostd}" .
    ;;
*)
    echo "usage: bash docker/buildah.sh base | image [TAG] | mirror" >&2
    exit 2
    ;;
esac
