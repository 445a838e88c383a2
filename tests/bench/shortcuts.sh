#!/bin/bash
# tests/bench/shortcuts.sh - issue 24's exact work avoidance (1b, 1c): the
# engine's shortcuts (a variant's first ablated sub-stage not recomputed)
# against recomputing it (bench_sweep --whole-stages 1), on SmolLM2-135M over
# the 16 prompts of sweep_prompts.json, in two jobs:
#   heads+neurons, zero: every head of every layer and 8 neurons of each MLP
#     (1c: a head's or neuron's change through its projection);
#   the hydra preset: attn.L and mlp.L, resample x 15 (1b: the output
#     replaced whole).
# Alternating runs (shortcuts, recomputed, shortcuts, ...), RUNS of each,
# each a process of its own (WARMUP untimed runs first); medians and the load average
# at each. Replaces the "## Shortcuts" section of tests/bench/RESULTS.md.
# Reports; never gates.
#   BUILD    the build folder (default: build)
#   THREADS  threads (default: 1)
#   RUNS     runs of each (default 3)
#   WARMUP   untimed runs before the timed one in each process (default 0)
#   HN_SUBSET the heads+neurons job keeps every K-th component (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
threads=${THREADS:-1}
runs=${RUNS:-3}
warmup=${WARMUP:-0}
hn_subset=${HN_SUBSET:-2}
model=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
prompts=tests/bench/sweep_prompts.json
cores=$(nproc --all)
cmd="BUILD=$build THREADS=$threads RUNS=$runs WARMUP=$warmup HN_SUBSET=$hn_subset bash tests/bench/shortcuts.sh"
cmake --build "$build" --target bench_sweep >/dev/null
bench="$build/tests/bench_sweep"
export OMP_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

section="$tmp/section.md"
{
  echo "## Shortcuts (issue 24, 1b and 1c): SmolLM2-135M, 16 prompts, the ablated sub-stage skipped or recomputed"
  echo
  echo "Command: \`$cmd\` ($(date -u +%Y-%m-%d), $cores cores, $threads thread(s))."
  echo "Each row: the median of $runs alternating runs (one process each, $warmup warm-up run(s) in it)"
  echo "of \`bench_sweep\` with the shortcuts (default) and with \`--whole-stages 1\`;"
  echo "Wall seconds, and CPU seconds (the timed run's CPU time: less sensitive to the"
  echo "machine's other work, which makes wall times noisy when the load average is"
  echo "above ~3; the alternation shares it between the two columns alike)."
  echo
  echo "| job | runs (distinct) | of them with a shortcut (warm-ups too) | counted TFLOP (recomputed, shortcuts) | wall s (recomputed, shortcuts) | wall speed-up | CPU s (recomputed, shortcuts) | CPU speed-up |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} >"$section"
loads=""
for job in "heads+neurons zero $hn_subset" "layers resample 1"; do
  set -- $job
  args=(--components "$1" --method "$2" --components-subset "$3" --runs 1 --warmup "$warmup"
    --threads "$threads" --gemm 0)
  for ((r = 1; r <= runs; r++)); do
    for whole in 0 1; do
      loads="$loads $(cut -d' ' -f1 /proc/loadavg)"
      "$bench" "$model" "$prompts" "${args[@]}" --whole-stages "$whole" | tail -1 >"$tmp/$1.$whole.$r"
      echo "  $1 $2 whole_stages=$whole round $r: $(get median_s "$(cat "$tmp/$1.$whole.$r")") s" >&2
    done
  done
  fast=$(for ((r = 1; r <= runs; r++)); do get median_s "$(cat "$tmp/$1.0.$r")"; done | median)
  slow=$(for ((r = 1; r <= runs; r++)); do get median_s "$(cat "$tmp/$1.1.$r")"; done | median)
  cpu_of() { local l; l=$(cat "$1"); awk -v w="$(get median_s "$l")" -v c="$(get cpu_per_wall "$l")" 'BEGIN { print w * c }'; }
  cpu_fast=$(for ((r = 1; r <= runs; r++)); do cpu_of "$tmp/$1.0.$r"; done | median)
  cpu_slow=$(for ((r = 1; r <= runs; r++)); do cpu_of "$tmp/$1.1.$r"; done | median)
  line=$(cat "$tmp/$1.0.1")
  whole_line=$(cat "$tmp/$1.1.1")
  tf() { awk -v f="$(get flops "$1")" 'BEGIN { printf "%.3f", f / 1e12 }'; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
  echo "| $1 ($(get components "$line") of $(get components_all "$line")), $2 | $(get runs_distinct "$line") | $(get shortcut_runs "$line") | $(tf "$whole_line"), $(tf "$line") | $slow, $fast | $(ratio "$slow" "$fast")x | $cpu_slow, $cpu_fast | $(ratio "$cpu_slow" "$cpu_fast")x |" >>"$section"
done
echo >>"$section"
echo "Load averages before each run, in order:$loads." >>"$section"
cat "$section"
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## Shortcuts" "$section"
