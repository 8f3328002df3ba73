#!/usr/bin/env bash
# Installs what lostd needs to build and test on Debian 12 (run as root).
# Build: compiler, pkg-config and the -dev packages of the libraries lostd
# links. Tests: curl (HTTP end-to-end tests), python3 with numpy and torch
# (the PyTorch reference forward for full-size parity).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config ca-certificates \
    libopenblas-dev libjansson-dev libjpeg62-turbo-dev libturbojpeg0-dev libspng-dev \
    libexpat1-dev libmicrohttpd-dev libcurl4-openssl-dev libssl-dev \
    curl python3 python3-numpy python3-torch chromium fonts-liberation >/dev/null
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
