#!/usr/bin/env bash
# Installs what lostd needs on Debian 12 (run as root, or with sudo).
#   bash .ci/deps.sh build   the compiler and the -dev packages lostd links
#   bash .ci/deps.sh         the same plus what the tests use: curl (HTTP
#                            tests), python3 with numpy and torch (the PyTorch
#                            reference forward of the full-size parity test),
#                            Chromium and Node.js (the demo page's browser
#                            test; node comes from Debian unless one is
#                            already installed, e.g. from NodeSource, whose npm
#                            must not be replaced by Debian's), ImageMagick
#                            (test images), clang with its libFuzzer and
#                            sanitizer runtime (make fuzz), buildah, podman
#                            and debootstrap (the container image test,
#                            tests/e2e_image.sh), GNU time (peak RSS in
#                            tests/e2e_coco_scale.sh and make bench)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
BUILD_PKGS="build-essential pkg-config ca-certificates libopenblas-dev libjansson-dev
    libjpeg62-turbo-dev libturbojpeg0-dev libspng-dev libexpat1-dev libyajl-dev libmicrohttpd-dev
    libcurl4-openssl-dev libssl-dev"
TEST_PKGS="curl python3 python3-numpy python3-scipy python3-torch python3-yaml chromium fonts-liberation
    imagemagick clang libclang-rt-14-dev buildah podman debootstrap time"
$SUDO apt-get update -qq
if [ "${1:-test}" = build ]; then
    $SUDO apt-get install -y -qq --no-install-recommends $BUILD_PKGS >/dev/null
    exit 0
fi
$SUDO apt-get install -y -qq --no-install-recommends $BUILD_PKGS $TEST_PKGS >/dev/null
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
