#!/usr/bin/env bash
# test_native_weights.sh - `hydra run --weights-dtype native` (a GGUF file's
# projections kept in their blocks) gives every clean, variant and summary row
# of the dequantised-at-load run, bit for bit (the rows' JSON text compared),
# on the committed mixed-quant llama (Q4_0, Q5_0, Q4_K, Q5_K, Q6_K
# projections); the header names the weights each ran with; a safetensors
# model asked for native weights is refused, naming why.
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
rows=$(wc -l <"$work/fp32.rows")
[ "$rows" -gt 3 ] || fail "only $rows result rows"
cmp -s "$work/fp32.rows" "$work/native.rows" ||
  fail "native rows differ from the dequantised-at-load rows: $(diff "$work/fp32.rows" "$work/native.rows" | head -3)"
if "$hydra" run --model "$root/tests/data/tiny-llama" "$work/job.json" --weights-dtype native \
  >/dev/null 2>"$work/hf.err"; then
  fail "native weights of a safetensors model were accepted"
fi
grep -q "not a GGUF file" "$work/hf.err" || fail "the refusal does not say why: $(cat "$work/hf.err")"
echo "test_native_weights: $rows rows of native weights equal to the dequantised-at-load run's"
