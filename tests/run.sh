#!/bin/bash
# tests/run.sh - build and run every test suite; the last line is ctest's summary.
#   1. a sanitizer build (ASan + UBSan, CPU only) runs the unit and golden tests;
#   2. a fuzzing build (clang, libFuzzer, ASan + UBSan) runs every parser's
#      fuzz target for HYDRA_FUZZ_SECONDS (default 30) from the committed
#      seeds and replays every input that once failed (tests/fuzz);
#   3. the main build (-Werror; CUDA compiled and linked when nvcc is found,
#      for one architecture: HYDRA_CUDA_ARCH, default 90) runs every test.
# Needs the SmolLM2 model (deploy/get-model.sh smollm2-135m); it is fetched
# when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${HYDRA_JOBS:-$(nproc)}
export HYDRA_REQUIRE_MODELS=${HYDRA_REQUIRE_MODELS:-1}
# ctest runs several OpenMP programs at once: idle OpenMP threads that spin
# (the default) take the cores the other tests need (an engine test took
# 110 s instead of 4 under -j2). Waiting threads sleep instead.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

bash deploy/get-model.sh smollm2-135m models

echo "== sanitizer build (ASan + UBSan) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DENABLE_CUDA=OFF -DHYDRA_WERROR=ON \
  -DHYDRA_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
# OpenBLAS and OpenMP keep thread pools alive at exit; leak checking would
# report them, not hydra. Every other ASan/UBSan check is on.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -E "^format$" -j 1

echo "== fuzzing (libFuzzer, ${HYDRA_FUZZ_SECONDS:-30} s per target) =="
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DENABLE_CUDA=OFF -DHYDRA_FUZZ=ON -DHYDRA_FUZZ_SECONDS="${HYDRA_FUZZ_SECONDS:-30}" >/dev/null
cmake --build build-fuzz -j "$jobs"
ctest --test-dir build-fuzz --output-on-failure -j "$jobs"

echo "== main build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DHYDRA_WERROR=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${HYDRA_CUDA_ARCH:-90}" >/dev/null
cmake --build build -j "$jobs"
# GPU tests (label gpu) run only where a GPU is visible.
gpu_filter=(-LE gpu)
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  gpu_filter=()
fi
ctest --test-dir build --output-on-failure -j "$jobs" "${gpu_filter[@]}"
