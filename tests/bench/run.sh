#!/bin/bash
# tests/bench/run.sh - forward-pass benchmark: hydra (CPU backend) against the
# machine's own OpenBLAS sgemm rate and against PyTorch on the same cores.
# Writes its section of tests/bench/RESULTS.md. Reports; never gates.
#   PYTHON: a python with torch + transformers + gguf (default: python3);
#   BUILD: the build folder (default: build); RUNS (default 5); THREADS.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
runs=${RUNS:-5}
threads=${THREADS:-$(nproc)}
python=${PYTHON:-python3}
model=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -s "$model" ] || bash deploy/get-model.sh smollm2-135m models
cmake --build "$build" --target bench_forward >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hydra=$("$build/tests/bench_forward" "$model" --batch 8 --tokens 64 --runs "$runs" \
  --threads "$threads" --ids-out "$tmp/ids.txt")
echo "$hydra"
torch_line=$(OMP_NUM_THREADS=$threads "$python" tests/bench/forward_torch.py "$model" \
  --ids "$tmp/ids.txt" --runs "$runs" --threads "$threads" 2>/dev/null | tail -1) ||
  torch_line="backend=torch-unavailable median_s=nan tokens_per_s=nan"
echo "$torch_line"

get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
h_tps=$(get tokens_per_s "$hydra")
h_gf=$(get gflops "$hydra")
sg=$(get sgemm_gflops "$hydra")
h_s=$(get median_s "$hydra")
t_tps=$(get tokens_per_s "$torch_line")
t_s=$(get median_s "$torch_line")
t_name=$(get backend "$torch_line")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)

table="| run | median s | tokens/s | GFLOP/s | vs sgemm | vs PyTorch |
| --- | ---: | ---: | ---: | ---: | ---: |
| hydra cpu (OpenBLAS) | $h_s | $h_tps | $h_gf | $(ratio "$h_gf" "$sg") | $(ratio "$h_tps" "$t_tps") |
| OpenBLAS sgemm, same shapes | | | $sg | 1.00 | |
| $t_name | $t_s | $t_tps | | | 1.00 |"
echo
echo "$table"
# Only this script's section of RESULTS.md is replaced (results_section.sh).
cat >"$tmp/section.md" <<MD
## Forward pass: SmolLM2-135M (Q4_1 GGUF dequantised to fp32), batch 8 x 64 tokens, logits at every position

Written by \`tests/bench/run.sh\` (command: \`PYTHON=$python bash tests/bench/run.sh\`).
Machine: $cpu, $threads threads ($(nproc) cores visible), $(date -u +%Y-%m-%d).
Median of $runs runs after one warm-up. GFLOP/s counts the matrix products and
attention of the pass. "vs sgemm" is hydra's GFLOP/s over OpenBLAS sgemm's on
the pass's own matrix shapes (rows 512), measured in the same run; "vs PyTorch"
is tokens/s over \`transformers\` (torch.no_grad, fp32, same ids, same threads).

$table

Targets (issue 2): >= 0.60 of the sgemm rate, >= 1.0x PyTorch.
MD
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## Forward pass" "$tmp/section.md"
echo "wrote tests/bench/RESULTS.md (section \"Forward pass\")"
