#!/usr/bin/env bash
# test_native_weights.sh - `hydra run --weights-dtype native` (a GGUF file's
# projections, token embedding and unembedding kept in their blocks) gives
# every clean, variant and summary row of the dequantised-at-load run, bit
# for bit (the rows' JSON text compared), on the committed mixed-quant llama
# (Q4_0, Q5_0, Q4_K, Q5_K, Q6_K projections, a Q4_0 token embedding, a Q6_K
# output.weight as llama.cpp's recipes write it), with the file mapped and
# with the pread path (HYDRA_NO_MMAP); the header names the weights each ran
# with; `hydra info` says the embedding and unembedding stay in blocks and
# lists the matrices' types (the norms' F32 not among them); the rows are
# bit for bit too on a file whose IQ4_NL and MXFP4 matrices (its embedding
# and unembedding too) a native load dequantises, and `hydra info` says so;
# `hydra forward --weights-dtype native` prints every logit the fp32 one
# does; the rows of heads, neurons and a group of two heads (their
# shortcuts' column products) are bit for bit too; a safetensors model
# asked for native weights is refused, naming
# why; a FIFO named as the model is refused at once, never waited on.
# usage: test_native_weights.sh BUILD_DIR ROOT
set -euo pipefail
build=$1 root=$2
hydra=$build/clients/hydra
model=$root/tests/golden/quants/tiny_llama_mixed.gguf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/job.json" <<'JOB'
{"preset": "hydra", "prompts": [{"ids": [5, 17, 30, 2, 7]}, {"ids": [9, 10, 3, 27, 12]},
 {"ids": [1, 2, 3, 4, 5, 6]}]}
JOB
fail() {
  echo "test_native_weights: FAIL: $*" >&2
  exit 1
}
for dtype in fp32 native; do
  "$hydra" run --model "$model" "$work/job.json" --format ndjson --weights-dtype "$dtype" \
    >"$work/$dtype.ndjson" 2>"$work/$dtype.err" || fail "hydra run ($dtype): $(cat "$work/$dtype.err")"
  grep -q "\"weights_dtype\":\"$dtype\"" "$work/$dtype.ndjson" ||
    fail "the $dtype run's header does not say weights_dtype $dtype"
  grep -v -e '"type":"header"' -e '"type":"end"' "$work/$dtype.ndjson" >"$work/$dtype.rows"
done
HYDRA_NO_MMAP=1 "$hydra" run --model "$model" "$work/job.json" --format ndjson \
  --weights-dtype native >"$work/pread.ndjson" 2>"$work/pread.err" ||
  fail "hydra run (native, pread): $(cat "$work/pread.err")"
grep -v -e '"type":"header"' -e '"type":"end"' "$work/pread.ndjson" >"$work/pread.rows"
cmp -s "$work/fp32.rows" "$work/pread.rows" ||
  fail "native rows read with pread differ from the dequantised-at-load rows"
"$hydra" info --model "$model" >"$work/info.txt" || fail "hydra info: $(cat "$work/info.txt")"
grep -q "token embedding (Q4_0) kept in its blocks; unembedding (Q6_K) kept in its blocks" \
  "$work/info.txt" || fail "hydra info does not say the embeddings stay in blocks: $(cat "$work/info.txt")"
grep -q "matrices in Q4_0,Q4_K,Q5_0,Q5_K,Q6_K kept in their blocks$" "$work/info.txt" ||
  fail "hydra info's matrix types (norms are F32, no matrix): $(cat "$work/info.txt")"
dequant=$root/tests/data/gguf/arch-llama-dequant-mix.gguf
"$hydra" info --model "$dequant" >"$work/info2.txt" || fail "hydra info: $(cat "$work/info2.txt")"
grep -q "matrices in Q4_1,Q5_0,Q5_1,Q8_0 kept in their blocks; in IQ4_NL,MXFP4 dequantised to fp32 at load" \
  "$work/info2.txt" || fail "hydra info's matrix types: $(cat "$work/info2.txt")"
grep -q "token embedding (MXFP4) dequantised to fp32 at load; unembedding (IQ4_NL) dequantised to fp32 at load" \
  "$work/info2.txt" || fail "hydra info's embeddings: $(cat "$work/info2.txt")"
for dtype in fp32 native; do
  "$hydra" run --model "$dequant" "$work/job.json" --format ndjson --weights-dtype "$dtype" 2>"$work/err" |
    grep -v -e '"type":"header"' -e '"type":"end"' >"$work/dequant-$dtype.rows" ||
    fail "hydra run ($dtype) on the IQ4_NL/MXFP4 file: $(cat "$work/err")"
done
cmp -s "$work/dequant-fp32.rows" "$work/dequant-native.rows" ||
  fail "native rows of the IQ4_NL/MXFP4 file differ from the dequantised-at-load rows"
mkfifo "$work/fifo.gguf"
if timeout 20 "$hydra" run --model "$work/fifo.gguf" "$work/job.json" --weights-dtype native \
  >/dev/null 2>"$work/fifo.err"; then
  fail "a FIFO was accepted as a model"
fi
grep -q "not a regular file" "$work/fifo.err" || fail "a FIFO's refusal: $(cat "$work/fifo.err")"
for dtype in fp32 native; do # every logit printed the same (the first line holds the time)
  "$hydra" forward --model "$model" --ids 5,17,30,2,7 --top 32 --weights-dtype "$dtype" \
    >"$work/forward-$dtype.txt" 2>&1 || fail "hydra forward ($dtype): $(cat "$work/forward-$dtype.txt")"
done
[ "$(tail -n +2 "$work/forward-fp32.txt")" = "$(tail -n +2 "$work/forward-native.txt")" ] ||
  fail "hydra forward --weights-dtype native differs: $(diff "$work/forward-fp32.txt" "$work/forward-native.txt")"
rows=$(wc -l <"$work/fp32.rows")
[ "$rows" -gt 3 ] || fail "only $rows result rows"
cmp -s "$work/fp32.rows" "$work/native.rows" ||
  fail "native rows differ from the dequantised-at-load rows: $(diff "$work/fp32.rows" "$work/native.rows" | head -3)"
# heads, neurons and a group of two heads: their shortcuts' column products
# (the blocks holding a head's or neuron's columns decoded) bit for bit too
cat >"$work/heads.json" <<'JOB'
{"prompts": [{"ids": [5, 17, 30, 2, 7]}, {"ids": [9, 10, 3, 27, 12]}],
 "ablations": {"components": ["head.0.*", "head.1.*", "neuron.0.*"], "groups": {"two": ["head.0.0", "head.0.1"]},
               "methods": ["zero", "mean", "scale:0.5"], "positions": "all"}}
JOB
for dtype in fp32 native; do
  "$hydra" run --model "$model" "$work/heads.json" --format ndjson --weights-dtype "$dtype" 2>"$work/err" |
    grep -v -e '"type":"header"' -e '"type":"end"' >"$work/heads-$dtype.rows" ||
    fail "hydra run ($dtype) of heads and neurons: $(cat "$work/err")"
done
[ "$(wc -l <"$work/heads-fp32.rows")" -gt 20 ] || fail "only $(wc -l <"$work/heads-fp32.rows") head rows"
cmp -s "$work/heads-fp32.rows" "$work/heads-native.rows" ||
  fail "native head and neuron rows differ: $(diff "$work/heads-fp32.rows" "$work/heads-native.rows" | head -3)"
if "$hydra" run --model "$root/tests/data/tiny-llama" "$work/job.json" --weights-dtype native \
  >/dev/null 2>"$work/hf.err"; then
  fail "native weights of a safetensors model were accepted"
fi
grep -q "not a GGUF file" "$work/hf.err" || fail "the refusal does not say why: $(cat "$work/hf.err")"
echo "test_native_weights: $rows rows of native weights (mapped, and read with pread) equal to the dequantised-at-load run's"
