#!/bin/bash
# tests/gpu/run.sh - the GPU suite, for a machine with an NVIDIA GPU (run from
# the repository root). One script: builds with CUDA, checks every op of the
# CUDA backend against the naive reference on random inputs (fresh seed,
# printed) and against the CPU backend on the same seed, runs the logits and
# engine goldens on the CUDA backend, runs compute-sanitizer (memcheck) on a
# short engine test, runs the GPU benchmarks, and writes tests/gpu/RESULTS.md
# (and a copy to $OUT when set, for the device tool to bring back).
#
# Packages the device machine lacks (jansson, PCRE2, libmicrohttpd, SQLite,
# OpenBLAS) travel as .deb files in .debs/ (deploy/fetch-debs.sh downloads
# them) and are unpacked into a private prefix.
# Exit status: 0 all green, 1 a check failed, 77 no GPU here.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
log=$(mktemp)
results=tests/gpu/RESULTS.md
fail=0

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "tests/gpu/run.sh: no GPU visible: skipping" >&2
  exit 77
fi

if [ -d .debs ] && ls .debs/*.deb >/dev/null 2>&1; then
  prefix=/opt/hydra-deps
  mkdir -p "$prefix"
  for f in .debs/*.deb; do dpkg -x "$f" "$prefix"; done
  arch=$(gcc -dumpmachine)
  export PKG_CONFIG_PATH="$prefix/usr/lib/$arch/pkgconfig:$prefix/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}"
  export CPATH="$prefix/usr/include:$prefix/usr/include/$arch:${CPATH:-}"
  export LIBRARY_PATH="$prefix/usr/lib/$arch:$prefix/usr/lib/$arch/openblas-openmp:${LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH="$prefix/usr/lib/$arch:$prefix/usr/lib/$arch/openblas-openmp:${LD_LIBRARY_PATH:-}"
  export CMAKE_PREFIX_PATH="$prefix/usr:${CMAKE_PREFIX_PATH:-}"
  # pkg-config files name /usr: point them at the prefix.
  sed -i "s#^prefix=/usr#prefix=$prefix/usr#" "$prefix"/usr/lib/"$arch"/pkgconfig/*.pc 2>/dev/null
fi
export PATH=/usr/local/cuda/bin:$PATH

step() { echo "== $*" | tee -a "$log"; }
check() { # name, command...
  local name=$1
  shift
  if "$@" >>"$log" 2>&1; then
    echo "| $name | pass |" >>"$log.table"
  else
    echo "| $name | **FAIL** (exit $?) |" >>"$log.table"
    fail=1
  fi
}
: >"$log.table"

step "build (CUDA, sm_90)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DENABLE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${HYDRA_CUDA_ARCH:-90}" >>"$log" 2>&1 &&
  cmake --build build-gpu -j "$(nproc)" >>"$log" 2>&1 || {
  echo "build failed:"
  tail -40 "$log"
  exit 1
}

seed=$(date +%s)
step "ops (seed $seed)"
check "ops: CUDA against the naive reference (seed $seed)" build-gpu/tests/test_ops cuda "$seed"
check "ops: CPU against the naive reference (same seed)" build-gpu/tests/test_ops cpu "$seed"

step "goldens on CUDA"
for g in tiny-gpt2 tiny-llama tiny-llama-sharded smollm2-135m; do
  check "logits $g (transformers, <= 1e-4)" build-gpu/tests/test_golden_logits "$root" \
    "tests/golden/$g.json" --backend cuda
done
for g in tiny-gpt2 tiny-llama smollm2-135m; do
  check "engine $g (transformers hooks, identities)" build-gpu/tests/test_engine "$root" \
    "tests/golden/ablation_$g.json" --backend cuda
done

step "compute-sanitizer"
if command -v compute-sanitizer >/dev/null; then
  check "compute-sanitizer memcheck: engine on tiny-llama" compute-sanitizer --tool memcheck \
    --error-exitcode 9 build-gpu/tests/test_engine "$root" tests/golden/ablation_tiny-llama.json \
    --backend cuda
else
  echo "| compute-sanitizer | not installed |" >>"$log.table"
fi

step "benchmarks"
bench=""
model=models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -s "$model" ]; then
  for be in cuda cpu; do
    line=$(build-gpu/tests/bench_forward "$model" --backend "$be" --batch 8 --tokens 64 --runs 5 2>&1 | tail -1)
    bench="$bench
| forward SmolLM2 8x64 | $be | $line |"
  done
  if [ -x build-gpu/tests/bench_sweep ]; then
    for be in cuda cpu; do
      line=$(build-gpu/tests/bench_sweep "$model" --backend "$be" --runs 3 2>&1 | tail -1)
      bench="$bench
| sweep (hydra preset, 16 prompts) | $be | $line |"
    done
  fi
else
  bench="
| benchmarks | - | SmolLM2 not present (models/ does not travel to the device machine) |"
fi

{
  echo "# GPU suite"
  echo
  echo "Written by \`bash tests/gpu/run.sh\` on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1),"
  echo "CUDA $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), $(date -u +%Y-%m-%d). Op seed: $seed."
  echo
  echo "| check | result |"
  echo "| --- | --- |"
  cat "$log.table"
  echo
  echo "## Benchmarks"
  echo
  echo "| what | backend | result |"
  echo "| --- | --- | --- |"
  echo "$bench" | sed '/^$/d'
} >"$results"
cat "$results"
[ -n "${OUT:-}" ] && cp "$results" "$log" "$OUT/" 2>/dev/null
exit $fail
