#!/bin/bash
# tests/gpu/run.sh - the GPU suite, for a machine with an NVIDIA GPU (run from
# the repository root). One script: builds with CUDA, checks every op of the
# CUDA backend against the naive double-precision reference on random inputs
# (fresh seed, printed) and the CPU backend on the same seed, runs the logits
# and engine goldens on the CUDA backend, serves jobs from hydrad on the CUDA
# backend over HTTP (tests/gpu/hydrad_gpu.py), runs compute-sanitizer (memcheck) on
# the ops and a short engine test, runs the GPU benchmark (the hydra preset
# sweep on random GPT-2-small- and Llama-7B-shaped models against PyTorch
# forward hooks on the same GPU, whose total effects it also compares, and on
# the Llama shapes against the expert PyTorch baseline, sweep_expert_torch.py
# --device cuda, within GPU_EXPERT_TIMEOUT seconds, default 200), and
# writes tests/gpu/RESULTS.md (and copies to $OUT when set, for the device tool).
#
# Packages the device machine lacks (jansson, PCRE2, libmicrohttpd, SQLite,
# OpenBLAS, pkg-config) travel as .deb files in .debs/ (deploy/fetch-debs.sh
# downloads them) and are unpacked into a private prefix.
#   HYDRA_CUDA_ARCH   CUDA architecture to build (default 90)
#   GPU_BENCH=0       skip the benchmarks
#   PYTHON            python with torch + transformers (default python3)
#   GPU_RESULTS       where to write the results (default tests/gpu/RESULTS.md)
#   GPU_MODELS, GPU_SWEEPS, GPU_PEAK, GPU_BENCH_BACKEND, GPU_TORCH_DEVICE: the
#                     benchmark's models:prompts,
#                     models:k:precision[:weights[:metrics]] (weights bf16:
#                     rounded, hydra --weights-dtype bf16; metrics all:
#                     bench_sweep and sweep_torch.py --metrics all; the
#                     whole 7B: GPU_MODELS=llama7b:64
#                     GPU_SWEEPS=llama7b:16:fp32:bf16 GPU_MODELS_TIMEOUT=400
#                     GPU_SWEEP_TIMEOUT=400), square GEMM size,
#                     backends (cpu for a dry run of the script without a GPU)
# Exit status: 0 all green, 1 a check failed, 77 no GPU here.
set -u
cd "$(dirname "$0")/../.." || exit 1
root=$(pwd)
work=${GPU_WORK:-/tmp/hydra-gpu}
mkdir -p "$work"
log=$work/log.txt
: >"$log"
results=${GPU_RESULTS:-tests/gpu/RESULTS.md}
python=${PYTHON:-python3}
fail=0
t_start=$SECONDS
seed=$(date +%s)

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "tests/gpu/run.sh: no GPU visible: skipping" >&2
  exit 77
fi

. tests/gpu/deps.sh # the .debs unpacked; hy=(...) runs hydra, py=(...) python

# RESULTS.md is rewritten after every step (and copied to $OUT with the log):
# a run cut short still brings back what it measured.
write_results() {
{
    echo "# GPU suite"
    echo
    echo "Written by \`bash tests/gpu/run.sh\` on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1),"
    echo "CUDA $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), $(date -u +%Y-%m-%d). Op seed: $seed. Wall time $((SECONDS - t_start)) s."
    echo
    echo "| check | result |"
    echo "| --- | --- |"
    cat "$table"
    if [ -s "$bench" ]; then
      echo
      echo "## Benchmark: hydra preset sweep (resample x 15, every attention and MLP layer, final position)"
      echo
      echo "Random weights of real shapes (tests/gpu/make_models.py); prompts of 8-16 random ids."
      echo "hydra: median of 3 engine runs after a warm-up (bench_sweep --backend cuda). PyTorch:"
      echo "transformers + forward hooks, fp32 with TF32 off, one forward per (component, draw) over the"
      echo "padded batch, run on every k-th component and extrapolated (tests/bench/sweep_torch.py"
      echo "--device cuda; --tf32 for the tf32 rows). FLOP ratio: the PyTorch run's counted FLOPs"
      echo "over hydra's (what equal efficiency would give). GEMM share: hydra's counted FLOP rate"
      echo "over cuBLAS on one 8192^3 product in the same precision. GPU busy: time in ops over wall"
      echo "time of a profiled run (HYDRA_CUDA_PROFILE=1)."
      echo
      echo "Expert PyTorch (issue 24): tests/bench/sweep_expert_torch.py --device cuda, the same"
      echo "sweep written by hand (prefix cache, final-position rows joining after their ablated"
      echo "sub-stage, one batch, target logit only), every draw a row, median of 3 after a warm-up;"
      echo "Llama-family shapes with fp32 weights only (\"-\": not run); vs expert = its time over hydra's."
      echo
      echo "| model | precision | prompts | ablated runs | rows per pass | hydra | PyTorch hooks | ratio | expert PyTorch | vs expert | FLOP ratio | hydra GFLOP/s | GEMM share of cuBLAS peak (GFLOP/s) | GPU busy |"
      echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
      cat "$bench"
      echo
      echo "Agreement (same draws; hydra rows from a components-subset run):"
      echo
      cat "$work/checks.md" 2>/dev/null
      echo
      cat "$work/forward.md" 2>/dev/null
      if [ -s "$work/phases.md" ]; then
        echo
        echo "Engine phases, host wall time of the profiled run (HYDRA_ENGINE_PROFILE=1; the GPU"
        echo "idles through what the host does between a pass's readout download and its next op):"
        echo
        cat "$work/phases.md"
      fi
    fi
  } >"$results"
  [ -n "${OUT:-}" ] && cp "$results" "$log" "$OUT/" 2>/dev/null
  return 0
}

get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2" | tail -1; }
step() {
  write_results
  echo "== [$((SECONDS - t_start)) s] $*" | tee -a "$log"
}
table=$work/table.md bench=$work/bench.md
rm -f "$work"/*.md
: >"$table"
: >"$bench"
check() { # name, timeout seconds, command...
  local name=$1 limit=$2 rc t0=$SECONDS
  shift 2
  echo "-- $name: $*" >>"$log"
  timeout "$limit" "$@" >"$work/check.log" 2>&1
  rc=$?
  cat "$work/check.log" >>"$log"
  if [ $rc -eq 0 ]; then
    echo "| $name | pass ($((SECONDS - t0)) s) |" >>"$table"
  else
    echo "| $name | **FAIL** (exit $rc$([ $rc -eq 124 ] && echo ", timed out after $limit s")) |" >>"$table"
    echo "---- FAIL: $name (exit $rc), last lines:"
    tail -25 "$work/check.log"
    fail=1
  fi
}

step "build (CUDA, sm_${HYDRA_CUDA_ARCH:-90}) on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
if ! gpu_build test_ops test_golden_logits test_engine test_interventions test_next bench_forward bench_sweep hydrad >>"$log" 2>&1; then
  echo "build failed:"
  tail -40 "$log"
  [ -n "${OUT:-}" ] && cp "$log" "$OUT/"
  exit 1
fi
bin=build-gpu/tests

step "ops (seed $seed)"
check "ops: CUDA against the double-precision reference (seed $seed)" 120 "${hy[@]}" $bin/test_ops cuda "$seed"
check "ops: CPU against the double-precision reference (same seed)" 120 "${hy[@]}" $bin/test_ops cpu "$seed"

step "goldens on CUDA"
for g in tiny-gpt2 tiny-llama tiny-llama-sharded tiny-llama-mixed-quants tiny-gpt_neox \
  tiny-gpt_neox-sequential tiny-qwen2 tiny-qwen3 tiny-mistral tiny-olmo2 tiny-gemma tiny-gemma2 \
  tiny-gemma3 tiny-phi3 tiny-phi tiny-granite tiny-gpt_neo tiny-stablelm tiny-stablelm-parallel \
  tiny-opt tiny-gptj tiny-llama3 tiny-llama-linear tiny-llama-yarn gguf-llama gguf-mistral \
  gguf-llama3 gguf-llama-linear gguf-llama-bias-tied gguf-qwen2 gguf-qwen2-yarn gguf-qwen3 \
  gguf-gptneox gguf-gptneox-sequential gguf-gpt2; do
  check "logits $g (transformers, <= 1e-4)" 120 "${hy[@]}" $bin/test_golden_logits "$root" \
    "tests/golden/$g.json" --backend cuda
done
# native weights (issue 23): GGUF blocks decoded on the GPU per product (matmul_blocks; the
# embedding by embed_blocks, the unembedding in equal tiles, tied and untied), the goldens, and
# every logit bit for bit the dequantised-at-load run's on the same GPU
for g in tiny-llama-mixed-quants gguf-llama gguf-llama-bias-tied gguf-qwen2 gguf-gpt2 gguf-gptneox; do
  check "logits $g, native weights (<= 1e-4; = dequantised at load)" 120 "${hy[@]}" \
    $bin/test_golden_logits "$root" "tests/golden/$g.json" --backend cuda --weights-dtype native
done
for g in tiny-gpt2 tiny-llama tiny-gpt2-bf16 tiny-llama-bf16 tiny-gpt_neox tiny-gpt_neox-sequential \
  tiny-qwen2 tiny-qwen3 tiny-mistral tiny-olmo2 tiny-gemma tiny-gemma2 tiny-gemma3 tiny-phi3 \
  tiny-phi tiny-granite tiny-gpt_neo tiny-stablelm tiny-stablelm-parallel \
  tiny-opt tiny-gptj tiny-llama3; do
  check "engine $g (transformers hooks <= 1e-4, identities)" 180 "${hy[@]}" $bin/test_engine "$root" \
    "tests/golden/ablation_$g.json" --backend cuda
done
for g in tiny-gpt2 tiny-llama; do
  check "interventions $g (residual sites, q/k/v, groups, pairs, grids, tracing; <= 1e-4)" 180 \
    "${hy[@]}" $bin/test_interventions "$root" "tests/golden/interventions_$g.json" --backend cuda
done
for g in tiny-gpt2 tiny-llama; do
  check "target next $g (transformers hooks <= 1e-4)" 120 "${hy[@]}" $bin/test_next "$root" \
    "tests/golden/next_$g.json" --backend cuda
done
if [ -s models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  check "logits smollm2-135m" 120 "${hy[@]}" $bin/test_golden_logits "$root" tests/golden/smollm2-135m.json --backend cuda
  check "engine smollm2-135m" 300 "${hy[@]}" $bin/test_engine "$root" tests/golden/ablation_smollm2-135m.json --backend cuda
  check "logits smollm2-135m, native Q4_1 weights (= dequantised at load)" 120 "${hy[@]}" \
    $bin/test_golden_logits "$root" tests/golden/smollm2-135m.json --backend cuda --weights-dtype native
else
  echo "| SmolLM2 goldens | not run: the model (94 MB) cannot travel to the device machine |" >>"$table"
fi

bench_be=${GPU_BENCH_BACKEND:-cuda} torch_dev=${GPU_TORCH_DEVICE:-cuda} # cpu: a dry run
if [ "${GPU_BENCH:-1}" != 0 ]; then
  step "benchmark models (random weights, real shapes)"
  check "make random models (transformers init)" "${GPU_MODELS_TIMEOUT:-150}" "${py[@]}" tests/gpu/make_models.py "$work/models" \
    --which "${GPU_MODELS:-gpt2-small:1209,llama7b-L4:256}"
  # name:k:precision[:weights[:metrics]]: hydra's whole sweep against PyTorch on every
  # k-th component (weights bf16: rounded to bfloat16 in both, hydra holding its
  # projections as bf16; metrics all: every run's log-prob, prob, KL and rank too)
  for spec in ${GPU_SWEEPS:-"gpt2-small:6:fp32" "gpt2-small:6:fp32:fp32:all" "llama7b-L4:4:fp32" "llama7b-L4:4:tf32" "llama7b-L4:4:fp32:bf16"}; do
    IFS=: read -r name k prec wdt met <<<"$spec"
    wdt=${wdt:-fp32} met=${met:-logit}
    m=$work/models/$name p=$work/models/prompts-$name.json
    [ -s "$p" ] || continue
    tflag="" wflag=()
    [ "$prec" = tf32 ] && tflag=--tf32
    [ "$wdt" = bf16 ] && tflag="$tflag --weights-bf16"
    wflag=(--weights-dtype "$wdt" --metrics "$met")
    step "sweep $name $prec $wdt weights, metrics $met: hydra ($bench_be)"
    timeout "${GPU_SWEEP_TIMEOUT:-150}" "${hy[@]}" $bin/bench_sweep "$m" "$p" --backend "$bench_be" --runs 3 \
      --peak "${GPU_PEAK:-8192}" --precision "$prec" "${wflag[@]}" >"$work/h.txt" 2>&1
    h=$(tail -1 "$work/h.txt")
    echo "$name hydra: $h" | tee -a "$log"
    # one more run under the profiler: GPU busy share and time per kind of op
    HYDRA_CUDA_PROFILE=1 HYDRA_ENGINE_PROFILE=1 timeout 60 "${hy[@]}" $bin/bench_sweep "$m" "$p" --backend "$bench_be" \
      --runs 1 --warmup 1 --gemm 0 --precision "$prec" "${wflag[@]}" >"$work/prof.txt" 2>&1
    grep -A12 "hydra cuda profile" "$work/prof.txt" | tee -a "$log" | head -3
    busy=$(sed -n 's/.*GPU busy \([0-9]*%\).*/\1/p' "$work/prof.txt")
    { echo "- $name $prec $wdt weights, metrics $met:"; echo; echo '```'
      grep -A8 "hydra engine profile" "$work/prof.txt"; echo '```'; } >>"$work/phases.md"
    timeout 60 "${hy[@]}" $bin/bench_sweep "$m" "$p" --backend "$bench_be" --runs 1 --warmup 0 \
      --components-subset "$k" --precision "$prec" "${wflag[@]}" --rows-out "$work/rows-$name.json" >>"$log" 2>&1
    step "sweep $name $prec: PyTorch hooks ($torch_dev), every ${k}th component, extrapolated"
    timeout 120 "${py[@]}" tests/bench/sweep_torch.py "$m" "$p" --device "$torch_dev" --components-subset "$k" \
      $tflag --metrics "$met" --hydra-rows "$work/rows-$name.json" >"$work/t.txt" 2>&1
    cat "$work/t.txt" >>"$log"
    t=$(tail -1 "$work/t.txt")
    echo "$name torch: $t" | tee -a "$log"
    grep '^check' "$work/t.txt" | tee -a "$log" | sed 's/^/    /'
    xs=""
    if [ "$name" != "${name#llama}" ] && [ "$wdt" = fp32 ] && [ "$met" = logit ]; then
      step "sweep $name $prec: expert PyTorch ($torch_dev), every draw a row"
      xflag=()
      [ "$prec" = tf32 ] && xflag=(--tf32)
      timeout "${GPU_EXPERT_TIMEOUT:-200}" "${py[@]}" tests/bench/sweep_expert_torch.py "$m" "$p" \
        --device "$torch_dev" "${xflag[@]}" --runs 3 --warmup 1 >"$work/x.txt" 2>&1
      x=$(tail -1 "$work/x.txt")
      echo "$name expert: $x" | tee -a "$log"
      xs=$(get measured_s "$x")
    fi
    hs=$(get median_s "$h") ts=$(get extrapolated_s "$t")
    xcell=${xs:+$xs s}
    xratio=$(awk -v a="$xs" -v b="$hs" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }')
    ratio=$(awk -v a="$ts" -v b="$hs" 'BEGIN { if (a > 0 && b > 0) printf "%.1f", a / b; else print "-" }')
    floor=$(awk -v f="$(get flops_all "$t")" -v g="$(get flops_all "$h")" 'BEGIN { if (g > 0) printf "%.0f", f / g; else print "-" }')
    printf '| %s | %s | %s | %s | %s | %s s | %s s | **%s×** | %s | **%s×** | %s× | %s | %s of %s | %s |\n' "$name" \
      "$prec$([ "$wdt" = bf16 ] && echo ", bf16 weights")$([ "$met" = all ] && echo ", every metric")" \
      "$(get prompts "$h")" "$(get variants "$h")" "$(get pass_rows "$h")" "${hs:--}" "${ts:--}" "$ratio" \
      "${xcell:--}" "$xratio" \
      "$floor" "$(get gflops "$h")" "$(get gemm_share "$h")" "$(get peak_gflops "$h")" "${busy:--}" >>"$bench"
    grep '^check' "$work/t.txt" | sed "s/^check /- $name $prec $wdt weights, metrics $met: /" >>"$work/checks.md"
  done
  step "forward throughput"
  for be in cuda cpu; do
    line=$(timeout 120 "${hy[@]}" $bin/bench_forward "$work/models/gpt2-small" --backend $be --batch 8 --tokens 64 --runs 5 2>&1 | tail -1)
    echo "forward gpt2-small $be: $line" | tee -a "$log"
    echo "- forward, gpt2-small, 8 x 64 tokens, $be: $line" >>"$work/forward.md"
  done
fi

step "hydrad on CUDA"
# the tiny Llama's golden over HTTP, and two users' interleaved jobs on a
# GPT-2-small-shaped model against hydrad --backend cpu (tests/gpu/hydrad_gpu.py)
if [ ! -d "$work/models/gpt2-small" ]; then
  check "make a random GPT-2 small (transformers init)" 150 "${py[@]}" tests/gpu/make_models.py "$work/models" \
    --which gpt2-small:64
fi
check "hydrad --backend cuda: tiny Llama golden over HTTP; two users' jobs = --backend cpu" 300 \
  "${hy[@]}" python3 tests/gpu/hydrad_gpu.py build-gpu/server/hydrad "$root" "$work/models/gpt2-small"

step "compute-sanitizer"
if command -v compute-sanitizer >/dev/null; then
  check "compute-sanitizer memcheck: ops" 150 "${hy[@]}" compute-sanitizer --tool memcheck --error-exitcode 9 \
    $bin/test_ops cuda "$seed"
  check "compute-sanitizer memcheck: engine on tiny-llama" 200 "${hy[@]}" compute-sanitizer --tool memcheck \
    --error-exitcode 9 $bin/test_engine "$root" tests/golden/ablation_tiny-llama.json --backend cuda
  check "compute-sanitizer memcheck: engine on tiny-llama, bf16 weights" 200 "${hy[@]}" compute-sanitizer \
    --tool memcheck --error-exitcode 9 $bin/test_engine "$root" tests/golden/ablation_tiny-llama-bf16.json \
    --backend cuda
else
  echo "| compute-sanitizer | not installed |" >>"$table"
fi

write_results
cat "$results"
exit $fail
