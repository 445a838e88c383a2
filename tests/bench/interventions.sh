#!/bin/bash
# tests/bench/interventions.sh - issue 20's intervention benchmark on
# SmolLM2-135M, side by side in one run on the same cores:
#   grid   a per-position activation-patching grid: 4 prompts of 10 tokens in
#          two counterfactual pairs, resid_pre.L of every layer x every
#          position ({"each": "all"}), {"patch": {"source": "counterfactual"}}
#   trace  a ROME causal trace: 4 prompts with a subject, "trace": {"scale":
#          3, "seed": 5}, "restore" of resid_pre.L of every layer (WINDOWS=1:
#          plus ROME's windows of 10 MLP and 10 attention layers as groups) x
#          every position, the clean argmax (from transformers) as the target
# each three ways: `hydra run` (ndjson; median of RUNS runs after a warm-up),
# PyTorch + hooks with one full forward per cell, and PyTorch + hooks with the
# KV cache of the run's unchanged prefix (interventions_torch.py). The
# PyTorch cells are checked one by one against hydra's rows. Replaces the
# "## Interventions" section of tests/bench/RESULTS.md. Reports; never gates
# (not in ctest, not in .ci/run).
#   PYTHON         a python with torch + transformers + gguf (default: python3)
#   BUILD          the build folder (default: build)
#   THREADS        threads for hydra and torch (default: nproc)
#   RUNS           timed runs of hydra per job, median (default 3; one warm-up)
#   NAIVE_SUBSET   the one-forward-per-cell baseline runs the units whose index
#                  is a multiple of K (every prompt and position of them),
#                  extrapolated to all units (default 5; 1 runs every cell)
#   CACHED_SUBSET  the same for the KV-cache baseline (default 5)
#   WINDOWS        1 (default): the trace restores MLP and attention windows
#                  too (3x the cells); 0: resid_pre.L only
#   RETRIES        reruns of a PyTorch step that other work disturbed (default 1)
#   WAIT_IDLE      before each step, wait up to this many seconds for the cores
#                  to be idle (>= 90% idle over 2 s; default 0: don't wait)
# The machine's other work slows every row: each row's CPU/wall (CPU time of
# all threads over wall time, about THREADS when the cores were free) and the
# load average at each step are recorded with the results.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
runs=${RUNS:-3}
threads=${THREADS:-$(nproc)}
python=${PYTHON:-python3}
naive_k=${NAIVE_SUBSET:-5}
cached_k=${CACHED_SUBSET:-5}
windows=${WINDOWS:-1}
retries=${RETRIES:-1}
wait_idle=${WAIT_IDLE:-0}
model=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
cmd="PYTHON=$python BUILD=$build THREADS=$threads RUNS=$runs NAIVE_SUBSET=$naive_k CACHED_SUBSET=$cached_k WINDOWS=$windows RETRIES=$retries WAIT_IDLE=$wait_idle bash tests/bench/interventions.sh"
[ -s "$model" ] || bash deploy/get-model.sh smollm2-135m models
cmake --build "$build" --target hydra >/dev/null
hydra="$build/clients/hydra"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
idle_pct() { # percent of CPU time idle over the next 2 s
  local a b
  read -r -a a < <(sed -n 's/^cpu  *//p' /proc/stat)
  sleep 2
  read -r -a b < <(sed -n 's/^cpu  *//p' /proc/stat)
  awk -v i=$((b[3] + b[4] - a[3] - a[4])) -v t=$(($(IFS=+; echo "$((${b[*]}))") - $(IFS=+; echo "$((${a[*]}))"))) \
    'BEGIN { printf "%d", (t > 0 ? 100 * i / t : 100) }'
}
loads=""
load() { # waits for idle cores (WAIT_IDLE), then notes the load average
  local until=$((SECONDS + wait_idle))
  while [ "$SECONDS" -lt "$until" ] && [ "$(idle_pct)" -lt 90 ]; do sleep 3; done
  loads="$loads${loads:+, }$1 $(cut -d' ' -f1 /proc/loadavg)"
}
get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
median() { awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
calc() { awk "BEGIN { x = $1; if (x != x) print \"n/a\"; else printf \"$2\", x }" 2>/dev/null || echo n/a; }

echo "writing the jobs (targets: the clean argmax from transformers)..." >&2
"$python" tests/bench/interventions_torch.py "$model" --write-jobs "$tmp" --windows "$windows" \
  --threads "$threads" 2>"$tmp/write.log" || { cat "$tmp/write.log" >&2; exit 1; }

# hydra_job NAME: a warm-up run (its rows are the ones checked), then RUNS
# timed runs; prints "engine_s=... wall_s=... cpu_per_wall=... variants=..."
# (medians over the runs: the end row's elapsed_s, model loading excluded;
# the whole command's wall time; its CPU time over wall time).
hydra_job() {
  local name=$1 i t engines="" walls="" cpws=""
  "$hydra" run --model "$model" --threads "$threads" "$tmp/$name.json" >"$tmp/$name.ndjson" 2>"$tmp/$name.err" ||
    { cat "$tmp/$name.err" >&2; exit 1; }
  for ((i = 0; i < runs; i++)); do
    t=$({ TIMEFORMAT='%R %U %S'; time "$hydra" run --model "$model" --threads "$threads" \
      "$tmp/$name.json" >"$tmp/$name.run.ndjson" 2>/dev/null; } 2>&1)
    engines="$engines$(sed -n 's/.*"type":"end".*"elapsed_s":\([^,}]*\).*/\1/p' "$tmp/$name.run.ndjson")
"
    walls="$walls${t%% *}
"
    cpws="$cpws$(awk -v r="${t%% *}" -v u="$(cut -d' ' -f2 <<<"$t")" -v s="${t##* }" 'BEGIN { printf "%.2f", (u + s) / r }')
"
    echo "  hydra $name run $((i + 1)): wall ${t%% *} s, engine $(tail -2 <<<"$engines" | head -1) s" >&2
  done
  echo "engine_s=$(median <<<"$engines") wall_s=$(median <<<"$walls") cpu_per_wall=$(median <<<"$cpws") variants=$(sed -n 's/.*"type":"end".*"variants":\([0-9]*\).*/\1/p' "$tmp/$name.ndjson")"
}
echo "hydra, grid ($runs runs after a warm-up)..." >&2
load "hydra grid"
h_grid=$(hydra_job grid)
echo "hydra grid: $h_grid"
echo "hydra, trace ($runs runs after a warm-up)..." >&2
load "hydra trace"
h_trace=$(hydra_job trace)
echo "hydra trace: $h_trace"

echo "PyTorch, one forward per cell (units subset $naive_k) and with the prefix's KV cache (subset $cached_k)..." >&2
load "PyTorch"
"$python" tests/bench/interventions_torch.py "$model" --threads "$threads" --retries "$retries" \
  --job "$tmp/grid.json" --hydra-rows "$tmp/grid.ndjson" \
  --job "$tmp/trace.json" --hydra-rows "$tmp/trace.ndjson" \
  --naive-subset "$naive_k" --cached-subset "$cached_k" >"$tmp/torch.txt" 2>"$tmp/torch.log" ||
  { cat "$tmp/torch.txt"; tail -20 "$tmp/torch.log" >&2; echo "PyTorch baseline failed (or its check did)" >&2; exit 1; }
checks=$(grep '^check' "$tmp/torch.txt")
echo "$checks"
load "end"

how() { # measured or extrapolated from a subset of the units
  if [ "$(get units "$1")" = "$(get units_all "$1")" ]; then
    echo "measured (every cell)"
  else
    echo "extrapolated x$(calc "$(get units_all "$1") / $(get units "$1")" %.1f) from $(get units "$1") of $(get units_all "$1") units ($(calc "$(get measured_s "$1")" %.1f) s)"
  fi
}
rows_of() { # kind hydra-line: the kind's table rows
  local kind=$1 h=$2 naive cached e
  naive=$(grep "^kind=$kind way=naive" "$tmp/torch.txt")
  cached=$(grep "^kind=$kind way=cached" "$tmp/torch.txt")
  e=$(get engine_s "$h")
  local cells
  cells=$(get cells_all "$naive")
  echo "| $kind | hydra run, engine (elapsed_s) | $(calc "$e" %.1f) | measured, median of $runs | $(calc "$cells / $e" %.0f) | 1.0 | $(get cpu_per_wall "$h") |"
  echo "| $kind | hydra run, whole command (model load included) | $(calc "$(get wall_s "$h")" %.1f) | measured, median of $runs | $(calc "$cells / $(get wall_s "$h")" %.0f) | $(calc "$(get wall_s "$h") / $e" %.2f) | $(get cpu_per_wall "$h") |"
  echo "| $kind | PyTorch + hooks, one forward per cell | $(calc "$(get extrapolated_s "$naive")" %.1f) | $(how "$naive") | $(calc "$cells / $(get extrapolated_s "$naive")" %.0f) | $(calc "$(get extrapolated_s "$naive") / $e" %.1f) | $(get cpu_per_wall "$naive") |"
  echo "| $kind | PyTorch + hooks, KV cache of the prefix | $(calc "$(get extrapolated_s "$cached")" %.1f) | $(how "$cached") | $(calc "$cells / $(get extrapolated_s "$cached")" %.0f) | $(calc "$(get extrapolated_s "$cached") / $e" %.1f) | $(get cpu_per_wall "$cached") |"
}
table="| job | configuration | seconds | how | cells/s | x hydra's engine time | CPU/wall |
| --- | --- | ---: | --- | ---: | ---: | ---: |
$(rows_of grid "$h_grid")
$(rows_of trace "$h_trace")"
echo
echo "$table"

g_naive=$(grep "^kind=grid way=naive" "$tmp/torch.txt")
t_naive=$(grep "^kind=trace way=naive" "$tmp/torch.txt")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
units_trace="resid_pre.0 ... resid_pre.29"
[ "$windows" = 1 ] && units_trace="$units_trace, and ROME's windows of 10 MLP outputs and of 10 attention outputs around each layer L (layers L - 5 ... L + 4, clipped to the model; \"mlp window L\", \"attn window L\"), each a group restored together"
threads_note=""
[ "$threads" -lt "$(nproc)" ] && threads_note="
THREADS=$threads of $(nproc) cores, for both hydra and PyTorch: on cores other
work keeps busy, threads that meet at every barrier wait for each other
(measured on this machine before the run, at a load average of about 8: a
10-token PyTorch forward took 0.17 s with one thread and 1.4 to 2.5 s with
two; hydra's grid 58 s with two threads at CPU/wall 0.4, 12 s with one)."
cat >"$tmp/section.md" <<MD
## Interventions: SmolLM2-135M, a per-position patching grid and a ROME causal trace

Written by \`tests/bench/interventions.sh\` (command: \`$cmd\`).
Machine: $cpu, threads: $threads ($(nproc) cores visible, shared with other
work; 1-minute load average at the start of each step: $loads), $(date -u +%Y-%m-%d).
**The cores were not the benchmark's own**: other builds and tests ran
beside it, so every row is slower than on idle cores, by an amount its
CPU/wall shows (about $threads when the cores were free); compare rows of
one run, not runs.$threads_note

The jobs (written by \`interventions_torch.py --write-jobs\`; text prompts,
ids from transformers' tokenizer on the GGUF, each target the clean run's
argmax from transformers, named in the job):

- **grid**: $(get cells_all "$g_naive") cells: 4 prompts of 10 tokens in two
  counterfactual pairs ("The Eiffel Tower / The Colosseum is located in the
  city of", "The Louvre museum / The Statue of Liberty is located in the city
  of"), components resid_pre.0 ... resid_pre.29, \`"positions": {"each":
  "all"}\`, method \`{"patch": {"source": "counterfactual"}}\` (noising: each
  prompt run, its pair's clean resid_pre.L put in at one position).
- **trace**: $(get cells_all "$t_naive") cells: 4 prompts with a subject
  ("The Eiffel Tower ...", "The mother tongue of Danielle Darrieux is", "The
  Statue of Liberty ...", "The Great Wall is located in the country of"; 10,
  10, 10 and 9 tokens), \`"trace": {"scale": 3, "seed": 5}\` (the subject's
  embeddings plus Gaussian noise of 3 x the embedding table's std), method
  \`"restore"\` at each position, units $units_trace.

Configurations. **hydra**: \`hydra run --model ... --threads $threads JOB\`,
ndjson, reuse on (a cell at position p recomputes positions >= p from the
layer it joins at); "engine" is the end row's \`elapsed_s\` (clean passes
included, model loading not), "whole command" the process's wall time.
**PyTorch, one forward per cell**: transformers (SmolLM2 from the same GGUF,
dequantised to fp32, sdpa attention, torch.no_grad, batch 1,
torch.set_num_threads($threads), logits of the final position only), per
prompt a clean pass keeping every layer's input (and MLP and attention
outputs) and the run itself; then per cell a whole forward with a forward
pre-hook on decoder layer L (or forward hooks on the window's MLPs or
attentions) writing the source value at position t, and for the trace a
forward hook on the embeddings adding hydra's noise draws (the splitmix64
Box-Muller draws of tests/golden/make_intervention_golden.py). **PyTorch,
KV cache**: the same, but the run is made once per prompt with
\`use_cache=True\` and each cell at position t > 0 is a forward over
positions >= t only, from a DynamicCache of the run's keys and values
truncated before t (the prefix no cell at t changes). The PyTorch time
includes the clean passes and not model loading, like hydra's engine time.
Extrapolated rows scale the measured time by all units over those run (a
cell's cost depends on its position, not on its unit; every position of the
units run is run). "x hydra's engine time" is the row's seconds over
hydra's engine seconds.$([ "$retries" -gt 0 ] && echo " A PyTorch step under 0.9 x $threads CPU/wall was run
again, up to $retries more time(s), keeping the least disturbed try.")

Every PyTorch cell is checked against hydra's variant row of the same
prompt, unit and position: the run's centred target logit, the ablated
(patched / restored) centred target logit and the total effect, bound 1e-3 x
the largest |clean centred target logit| (fp32 end to end, same weights):

\`\`\`
$checks
\`\`\`

$table
MD
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## Interventions" "$tmp/section.md"
echo "wrote tests/bench/RESULTS.md (section \"Interventions\")"
