#!/bin/bash
# tests/bench/gguf_load.sh - issue 19's load benchmark: a 7B-shaped GGUF in
# llama.cpp's Q4_K_M recipe (written by tools/synthetic_gguf.py with gguf-py:
# Q4_K projections, Q6_K for attn_v/ffn_down on alternate layers and for
# output.weight), loaded by hydra (every tensor dequantised to fp32:
# bench_load, one thread and every core) against gguf-py's dequantisation of
# the same tensors (gguf_load_ref.py, numpy, one thread), in the same run.
# Writes its section of tests/bench/RESULTS.md. Reports; never gates.
#   PYTHON: a python with gguf + numpy (default: python3); BUILD (default
#   build); SHAPE (default llama-2-7b); LAYERS: the first N layers (default 4:
#   a whole 7B model dequantised is 27 GB, past this machine's memory; the
#   rate per stored byte does not depend on the count); RUNS (default 3);
#   REF_RUNS (default 1); KEEP: keep the file (default: deleted).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
python=${PYTHON:-python3}
shape=${SHAPE:-llama-2-7b}
layers=${LAYERS:-4}
runs=${RUNS:-3}
ref_runs=${REF_RUNS:-1}
cmake --build "$build" --target bench_load >/dev/null
tmp=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
file=$tmp/$shape-q4_k_m.gguf
t0=$(date +%s.%N)
"$python" tools/synthetic_gguf.py --shape "$shape" --type Q4_K_M --layers "$layers" "$file" >/dev/null
echo "wrote $file ($(du -h "$file" | cut -f1)) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}') s"
cat "$file" >/dev/null # in the page cache for every reader
get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.1f", a / b; else print "n/a" }'; }
cores=$(nproc)
one=$(OMP_NUM_THREADS=1 "$build/tests/bench_load" "$file" --runs "$runs")
echo "hydra, 1 thread: $one"
all=$(OMP_NUM_THREADS=$cores "$build/tests/bench_load" "$file" --runs "$runs")
echo "hydra, $cores threads: $all"
ref=$(OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$python" tests/bench/gguf_load_ref.py "$file" --runs "$ref_runs")
echo "gguf-py: $ref"
load=$(cut -d' ' -f1 /proc/loadavg)
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
mb=$(awk -v b="$(get stored_bytes "$one")" 'BEGIN { printf "%.0f", b / 1e6 }')
table="| reader | threads | median s (runs) | stored MB/s | vs gguf-py |
| --- | ---: | ---: | ---: | ---: |
| hydra \`model_load\` | 1 | $(get median_s "$one") ($runs) | $(get stored_mb_per_s "$one") | $(ratio "$(get stored_mb_per_s "$one")" "$(get stored_mb_per_s "$ref")")x |
| hydra \`model_load\` | $cores | $(get median_s "$all") ($runs) | $(get stored_mb_per_s "$all") | $(ratio "$(get stored_mb_per_s "$all")" "$(get stored_mb_per_s "$ref")")x |
| gguf-py $(get gguf "$ref") \`dequantize\` | 1 (numpy) | $(get median_s "$ref") ($ref_runs) | $(get stored_mb_per_s "$ref") | 1.0x |"
echo
echo "$table"
cat >"$tmp/section.md" <<MD
## GGUF load: a $shape-shaped Q4_K_M file, dequantised to fp32

Written by \`tests/bench/gguf_load.sh\` (command: \`PYTHON=$python LAYERS=$layers bash tests/bench/gguf_load.sh\`) on $(date -u +%Y-%m-%d), $cpu, $cores cores, load average $load when it ended.
The file: \`tools/synthetic_gguf.py --shape $shape --type Q4_K_M --layers $layers\` ($(get tensors "$one") tensors, $mb MB stored, $(get params "$one") parameters; the first $layers layers of the shape, the embedding and the Q6_K \`output.weight\` whole). Both readers start from the page cache; hydra's figure is the whole \`model_load\` (header, tensors read and dequantised into the model's fp32 arrays), gguf-py's its reader plus \`gguf.quants.dequantize\` of every tensor.

$table
MD
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## GGUF load" "$tmp/section.md"
echo "tests/bench/RESULTS.md: section \"## GGUF load\" written"
