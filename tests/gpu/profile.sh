#!/bin/bash
# tests/gpu/profile.sh - where the engine's time goes on the GPU: the hydra
# preset sweep (bench_sweep --backend cuda) on the random models of
# tests/gpu/make_models.py, with HYDRA_CUDA_PROFILE=1 (time per kind of op
# against the wall time: the rest is the GPU waiting for the host), at several
# pass budgets (--max-rows). For a device machine; run from the repository root.
#   PROF_MODELS  models:prompts (default gpt2-small:1209,llama7b-L4:256)
#   PROF_ROWS    pass budgets (default "4096 16384 65536")
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/gpu/deps.sh
work=${GPU_WORK:-/tmp/hydra-gpu}
mkdir -p "$work"
gpu_build bench_sweep >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }
models=${PROF_MODELS:-gpt2-small:1209,llama7b-L4:256}
"${py[@]}" tests/gpu/make_models.py "$work/models" --which "$models" || exit 1
for item in ${models//,/ }; do
  name=${item%:*}
  for rows in ${PROF_ROWS:-4096 16384 65536}; do
    echo "== $name, --max-rows $rows"
    HYDRA_CUDA_PROFILE=1 timeout 120 "${hy[@]}" build-gpu/tests/bench_sweep "$work/models/$name" \
      "$work/models/prompts-$name.json" --backend cuda --runs 2 --gemm 0 --max-rows "$rows" 2>&1 |
      sed 's/ flops=.*cpu_per_wall/ ... cpu_per_wall/'
  done
done
