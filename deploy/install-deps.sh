#!/bin/bash
# install-deps.sh - the Debian 12 packages hydra builds and runs with.
# The CUDA toolkit is optional: when nvcc is found, the CUDA backend is built.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends \
  build-essential cmake pkg-config git ca-certificates \
  libopenblas-openmp-dev libjansson-dev libpcre2-dev libmicrohttpd-dev libsqlite3-dev libpq-dev libcurl4-openssl-dev clang-format clang libomp-dev \
  python3 python3-pip python3-venv python3-pytest python3-requests python3-pandas python3-matplotlib python3-selenium python3-yaml chromium chromium-driver shellcheck systemd curl
# A PostgreSQL server runs the multi-node tests (tests/integration/with_postgres.sh);
# the hydrad hosts of a lab need only libpq (libpq5, pulled in by libpq-dev).
$sudo apt-get install -y --no-install-recommends postgresql faketime
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "install-deps.sh: CUDA toolkit found: the CUDA backend will be built"
else
  cat <<'MSG'
install-deps.sh: no CUDA toolkit (nvcc) found: hydra builds with the CPU backend only.
  To build the CUDA backend, install the toolkit (NVIDIA's Debian 12 repository:
  https://developer.nvidia.com/cuda-downloads, package cuda-toolkit) and put
  /usr/local/cuda/bin on PATH, then rebuild.
MSG
fi
