#!/bin/bash
# tests/bench/host_work.sh - the engine's own host work on the GPU benchmark's
# GPT-2-small-shaped sweep (the hydra preset, 1,209 prompts, 435,240 ablated
# runs, passes of 65,536 rows): bench_sweep --null-ops runs the engine on the
# CPU backend with every compute op and device copy a no-op, so its time is
# what the host does between and around the kernels, which an asynchronous
# GPU backend waits through when it is not hidden (tests/gpu/NOTES.md), for
# the job in one run and in hydrad's GPU work units of 256 prompts. The
# baseline is the engine at BASE, built in a temporary worktree with this
# tree's bench_sweep.c, measured alternately with this tree in the same run.
# Replaces the "## Engine host work" section of tests/bench/RESULTS.md.
# Reports; never gates.
#   PYTHON   a python with torch + transformers (makes the random model)
#   BUILD    this tree's build folder (default: build)
#   BASE     the baseline commit (default 2622465: before the clean pass's
#            log-softmax was skipped when unneeded, the variant order became
#            a counting sort and source-only clean passes stopped after the
#            layers)
#   BASE1    the engine that kept one job's store of sources (default
#            8010aff), for two users' jobs whose units alternate, and read
#            the full-distribution metrics on one thread
#   BASE2    the engine that read them on the host's threads (default 5790bb3)
#   RUNS     alternating measurements of each, median (default 5; each one
#            the median of 3 engine runs after a warm-up)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
base=${BASE:-2622465}
base1=${BASE1:-8010aff}
base2=${BASE2:-5790bb3}
runs=${RUNS:-5}
python=${PYTHON:-python3}
work=${HOST_WORK_DIR:-/tmp/hydra-host-work}
cmd="PYTHON=$python BUILD=$build BASE=$base BASE1=$base1 BASE2=$base2 RUNS=$runs bash tests/bench/host_work.sh"
mkdir -p "$work"
model=$work/models/gpt2-small prompts=$work/models/prompts-gpt2-small.json
[ -s "$prompts" ] || "$python" tests/gpu/make_models.py "$work/models" --which gpt2-small:1209 >/dev/null
cmake --build "$build" --target bench_sweep >/dev/null

# a baseline engine with this tree's benchmark program: worktree DIR at COMMIT
# (built with C flags FLAGS)
build_base() {
  local wt=$1 commit=$2 flags=$3
  if [ ! -d "$wt/b" ] || [ "$(git -C "$wt" rev-parse HEAD 2>/dev/null)" != "$(git rev-parse "$commit")" ]; then
    git worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
    git worktree prune
    git worktree add -q --detach "$wt" "$commit"
  fi
  cmake -S "$wt" -B "$wt/b" -DCMAKE_BUILD_TYPE=Release -DENABLE_CUDA=OFF \
    -DCMAKE_C_FLAGS="$flags" >/dev/null
  cp tests/bench/bench_sweep.c "$wt/tests/bench/" # this tree's program, the baseline's engine
  cmake --build "$wt/b" --target bench_sweep -j"$(nproc)" >/dev/null
}
wt=$work/base
# (both engines predate the backend op logit_stats)
# (and logit_metrics)
build_base "$wt" "$base" "-DHYDRA_BENCH_BASELINE -DHYDRA_BENCH_NO_LOGIT_STATS -DHYDRA_BENCH_NO_LOGIT_METRICS -DHYDRA_BENCH_ATTENTION_UNCAPPED -DHYDRA_BENCH_NO_FAMILY_OPS"
wt1=$work/onestore
build_base "$wt1" "$base1" "-DHYDRA_BENCH_NO_LOGIT_STATS -DHYDRA_BENCH_NO_LOGIT_METRICS -DHYDRA_BENCH_ATTENTION_UNCAPPED -DHYDRA_BENCH_NO_FAMILY_OPS"
wt2=$work/hostmetrics
build_base "$wt2" "$base2" "-DHYDRA_BENCH_NO_LOGIT_METRICS -DHYDRA_BENCH_ATTENTION_UNCAPPED -DHYDRA_BENCH_NO_FAMILY_OPS"

args=("$model" "$prompts" --runs 3 --warmup 1 --gemm 0 --null-ops 1 --max-rows 65536)
get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2" | tail -1; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rows=""
for unit in 0 256; do
  : >"$work/base.txt"
  : >"$work/head.txt"
  for i in $(seq "$runs"); do
    line=$("$wt/b/tests/bench_sweep" "${args[@]}" --unit-prompts "$unit" 2>/dev/null | tail -1)
    get median_s "$line" >>"$work/base.txt"
    line=$("$build/tests/bench_sweep" "${args[@]}" --unit-prompts "$unit" 2>/dev/null | tail -1)
    get median_s "$line" >>"$work/head.txt"
    echo "units of $unit (0: one run), run $i: base $(tail -1 "$work/base.txt") s, this tree $(tail -1 "$work/head.txt") s"
  done
  b=$(median <"$work/base.txt") h=$(median <"$work/head.txt")
  ratio=$(awk -v b="$b" -v h="$h" 'BEGIN { printf "%.2f", b / h }')
  what="one engine run"
  [ "$unit" -gt 0 ] && what="work units of $unit prompts (hydrad on a GPU)"
  rows="$rows| $what | $b s | $h s | **${ratio}x** less |"$'\n'
done
# hydrad's CPU units (8 prompts) on the real CPU backend: each unit recomputing
# the job's store of resample sources (as before) or taking the one kept by the
# job's previous unit (engine_job_t.source_key), 64 prompts, every 6th component
prompts64=$work/prompts-64.json
"$python" -c "import json,sys; d=json.load(open(sys.argv[1])); d['prompts']=d['prompts'][:64]; json.dump(d,open(sys.argv[2],'w'))" "$prompts" "$prompts64"
uargs=("$model" "$prompts64" --runs 1 --warmup 0 --gemm 0 --components-subset 6 --unit-prompts 8)
: >"$work/k0.txt"
: >"$work/k1.txt"
for i in $(seq "${UNIT_RUNS:-3}"); do
  get median_s "$("$build/tests/bench_sweep" "${uargs[@]}" --keep-sources 0 2>/dev/null | tail -1)" >>"$work/k0.txt"
  get median_s "$("$build/tests/bench_sweep" "${uargs[@]}" --keep-sources 1 2>/dev/null | tail -1)" >>"$work/k1.txt"
  echo "CPU units of 8, run $i: recomputed $(tail -1 "$work/k0.txt") s, kept $(tail -1 "$work/k1.txt") s"
done
# two users' jobs (the same 64 prompts) whose units alternate, as hydrad's
# round-robin runs them: the engine keeping one job's store (BASE1) drops the
# other's at every unit; this tree keeps both
: >"$work/i1.txt"
: >"$work/i2.txt"
for i in $(seq "${UNIT_RUNS:-3}"); do
  get median_s "$("$wt1/b/tests/bench_sweep" "${uargs[@]}" --interleave 2 2>/dev/null | tail -1)" >>"$work/i1.txt"
  get median_s "$("$build/tests/bench_sweep" "${uargs[@]}" --interleave 2 2>/dev/null | tail -1)" >>"$work/i2.txt"
  echo "two jobs' CPU units interleaved, run $i: one kept store $(tail -1 "$work/i1.txt") s, one per job $(tail -1 "$work/i2.txt") s"
done
# the full-distribution metrics (log-prob, prob, KL, rank) of every ablated
# run: 64 prompts, null ops, the engines of BASE1 and BASE2 (read on the host)
# and this tree (reduced by the backend's logit_metrics)
: >"$work/m1.txt"
: >"$work/m2.txt"
: >"$work/m3.txt"
margs=("$model" "$prompts64" --runs 1 --warmup 0 --gemm 0 --null-ops 1 --max-rows 65536 --metrics all)
for i in $(seq "${UNIT_RUNS:-3}"); do
  get median_s "$("$wt1/b/tests/bench_sweep" "${margs[@]}" 2>/dev/null | tail -1)" >>"$work/m1.txt"
  get median_s "$("$wt2/b/tests/bench_sweep" "${margs[@]}" 2>/dev/null | tail -1)" >>"$work/m2.txt"
  get median_s "$("$build/tests/bench_sweep" "${margs[@]}" 2>/dev/null | tail -1)" >>"$work/m3.txt"
  echo "every metric, 64 prompts, run $i: $(git rev-parse --short "$base1") $(tail -1 "$work/m1.txt") s, $(git rev-parse --short "$base2") $(tail -1 "$work/m2.txt") s, this tree $(tail -1 "$work/m3.txt") s"
done
m1=$(median <"$work/m1.txt") m2=$(median <"$work/m2.txt") m3=$(median <"$work/m3.txt")
mratio=$(awk -v b="$m1" -v h="$m2" 'BEGIN { printf "%.2f", b / h }')
mratio3=$(awk -v b="$m1" -v h="$m3" 'BEGIN { printf "%.1f", b / h }')
k0=$(median <"$work/k0.txt") k1=$(median <"$work/k1.txt")
kratio=$(awk -v b="$k0" -v h="$k1" 'BEGIN { printf "%.2f", b / h }')
i1=$(median <"$work/i1.txt") i2=$(median <"$work/i2.txt")
iratio=$(awk -v b="$i1" -v h="$i2" 'BEGIN { printf "%.2f", b / h }')
iper=$(awk -v h="$i2" -v k="$k1" 'BEGIN { printf "%.2f", h / (2 * k) }')
phases=$(HYDRA_ENGINE_PROFILE=1 "$build/tests/bench_sweep" "${args[@]}" 2>&1 >/dev/null | grep -A8 "hydra engine profile")

section=$(mktemp)
{
  echo "## Engine host work: GPT-2-small-shaped sweep, hydra preset, 1,209 prompts, 435,240 ablated runs"
  echo
  echo "Command: \`$cmd\`"
  echo "Machine: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d)."
  echo
  echo "The engine with every compute op and device copy a no-op (\`bench_sweep --null-ops 1\`, passes of"
  echo "65,536 rows): the host work a GPU waits through unless it overlaps kernels. Median of $runs"
  echo "alternating measurements (each the median of 3 runs after a warm-up)."
  echo
  echo "| the sweep as | baseline ($(git rev-parse --short "$base")) | this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- common cpu || echo ", modified")) | ratio |"
  echo "| --- | --- | --- | --- |"
  printf '%s' "$rows"
  echo
  echo "hydrad's CPU work units (8 prompts) on the real CPU backend, 64 of the prompts, every 6th"
  echo "component (\`bench_sweep --unit-prompts 8 --components-subset 6\`), median of ${UNIT_RUNS:-3} alternating runs:"
  echo
  echo "| each unit | sweep time | ratio |"
  echo "| --- | --- | --- |"
  echo "| recomputes the job's store of resample sources (\`--keep-sources 0\`, as before) | $k0 s | 1.00 |"
  echo "| takes the store the job's previous unit kept | $k1 s | **${kratio}x** faster |"
  echo
  echo "Two users' jobs (the same 64 prompts each) whose units alternate, as hydrad's round-robin runs"
  echo "them (\`--interleave 2\`), median of ${UNIT_RUNS:-3} alternating runs:"
  echo
  echo "| engine | both jobs | ratio |"
  echo "| --- | --- | --- |"
  echo "| keeps one job's store ($(git rev-parse --short "$base1")): each job's unit drops the other's | $i1 s | 1.00 |"
  echo "| keeps a store per job (up to 4) | $i2 s (${iper}x two jobs run one after the other) | **${iratio}x** faster |"
  echo
  echo "Every full-distribution metric (\`--metrics all\`: log-prob, prob, KL, rank of each of 23,040"
  echo "ablated runs over 50,257 logits), 64 prompts, null ops: the host's own work, median of ${UNIT_RUNS:-3} alternating runs:"
  echo
  echo "| engine | host work | ratio |"
  echo "| --- | --- | --- |"
  echo "| $(git rev-parse --short "$base1") (two exps per logit in double, one thread) | $m1 s | 1.00 |"
  echo "| $(git rev-parse --short "$base2") (one expf per logit, threads over the runs) | $m2 s | ${mratio}x less |"
  echo "| this tree (reduced by the backend where the logits are: \`logit_metrics\`; no logits downloaded) | $m3 s | **${mratio3}x** less |"
  echo
  echo "Where this tree's host time goes, one engine run (HYDRA_ENGINE_PROFILE=1, the warm-up run included):"
  echo
  echo '```'
  echo "$phases"
  echo '```'
} >"$section"
cat "$section"
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## Engine host work" "$section"
rm -f "$section"
