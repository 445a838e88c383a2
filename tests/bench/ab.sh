#!/bin/bash
# tests/bench/ab.sh - this tree's engine against another commit's, side by
# side in one run on the CPU: the SmolLM2-135M hydra-preset sweep of
# sweep.sh (16 prompts x 60 components x 15 resamples, reuse on) and the
# engine's own host work on the same job (bench_sweep --null-ops 1: every
# compute op a no-op, what a GPU backend must hide). The baseline is built
# from BASE in a temporary worktree with its own bench_sweep; the two are
# measured alternately, RUNS times each (each measurement bench_sweep's
# median of 3 runs after a warm-up), and the median of those is reported.
# Replaces the "## A/B against" section of tests/bench/RESULTS.md. Reports;
# never gates.
#   BASE     the baseline commit (default c31c9d3: before the one-transformer
#            redesign)
#   BUILD    this tree's build folder (default: build)
#   RUNS     alternating measurements (default 5)
#   THREADS  threads (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/../.."
base=${BASE:-c31c9d3}
build=${BUILD:-build}
runs=${RUNS:-5}
threads=${THREADS:-$(nproc)}
model=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
prompts=tests/bench/sweep_prompts.json
cmd="BASE=$base BUILD=$build RUNS=$runs THREADS=$threads bash tests/bench/ab.sh"
[ -s "$model" ] || bash deploy/get-model.sh smollm2-135m models
cmake --build "$build" --target bench_sweep >/dev/null
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/base" "$base" >/dev/null 2>&1
cmake -S "$work/base" -B "$work/base/build" -DCMAKE_BUILD_TYPE=Release -DENABLE_CUDA=OFF >/dev/null
cmake --build "$work/base/build" --target bench_sweep -j "$threads" >/dev/null
export OMP_NUM_THREADS=$threads

get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
measure() { # BIN NULL_OPS -> median_s of bench_sweep
  local out
  out=$("$1" "$model" "$prompts" --reuse 1 --runs 3 --threads "$threads" --gemm 0 \
    --null-ops "$2" | tail -1)
  get median_s "$out"
}
declare -A times
for ((i = 0; i < runs; i++)); do
  for which in head base; do
    bin=$build/tests/bench_sweep
    [ "$which" = base ] && bin=$work/base/build/tests/bench_sweep
    for null in 0 1; do
      t=$(measure "$bin" "$null")
      times[$which$null]="${times[$which$null]:-} $t"
      echo "  round $((i + 1)) $which null-ops=$null: $t s" >&2
    done
  done
done
med() { tr ' ' '\n' <<<"${times[$1]}" | grep . | median; }
h0=$(med head0) b0=$(med base0) h1=$(med head1) b1=$(med base1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
head_rev=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- common cpu || echo "+changes")
section=$(mktemp)
cat >"$section" <<MD
## A/B against $base: the sweep and the engine's host work

Written by \`tests/bench/ab.sh\` (command: \`$cmd\`).
Machine: $cpu, $threads threads, $(date -u +%Y-%m-%d). This tree ($head_rev) and
$base (built in a temporary worktree with its own bench_sweep) measured
alternately, $runs rounds; each figure is the median over the rounds of
bench_sweep's median of 3 runs after a warm-up. The job: sweep.sh's
SmolLM2-135M hydra preset (16 prompts x 60 components x 15 resamples =
14,400 ablated runs, reuse on). Host work: the same job with
\`--null-ops 1\` (every compute op a no-op: the engine's own work around the
kernels).

| measurement | $base s | this tree s | this / $base |
| --- | ---: | ---: | ---: |
| sweep | $b0 | $h0 | $(ratio "$h0" "$b0") |
| host work (null ops) | $b1 | $h1 | $(ratio "$h1" "$b1") |

Every round: $(for k in base0 head0 base1 head1; do echo -n "$k:${times[$k]}; "; done)
MD
cat "$section"
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## A/B against" "$section"
rm -f "$section"
echo "wrote tests/bench/RESULTS.md (section \"A/B against $base\")"
