#!/bin/bash
# fetch-debs.sh [DIR] - download (not install) the Debian 12 packages hydra
# builds with, for a machine that has no package registry (the GPU machine):
# tests/gpu/run.sh unpacks DIR/*.deb (default .debs) into a private prefix.
set -euo pipefail
dir=${1:-.debs}
mkdir -p "$dir"
cd "$dir"
apt-get download libjansson4 libjansson-dev libpcre2-8-0 libpcre2-dev libpcre2-16-0 \
  libpcre2-32-0 libpcre2-posix3 libmicrohttpd12 libmicrohttpd-dev libsqlite3-0 libsqlite3-dev \
  libcurl4 libcurl4-openssl-dev \
  libopenblas0-openmp libopenblas-openmp-dev libgnutls30 libgomp1 \
  pkgconf pkgconf-bin libpkgconf3 libnettle8 libhogweed6 libp11-kit0 libtasn1-6 libidn2-0 \
  libunistring2 libgmp10 libffi8 libgfortran5 libquadmath0
ls -la
