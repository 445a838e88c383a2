#!/usr/bin/env bash
# test_model_memory.sh - a model larger than the memory the process may take
# is refused before its arrays are allocated, naming what it needs, what is
# available and the limit that binds, never killed halfway through its load;
# a native load allocates no fp32 array for the blocks it keeps, so a GGUF
# file whose fp32 weights (3.8 GiB) do not fit under `ulimit -v` 2.5 GiB
# loads, `hydra info` states its memory, and a job runs on it. The models
# (make_large_model.py) are sparse files: no disk, no time to write.
# usage: test_model_memory.sh BUILD_DIR ROOT
set -euo pipefail
build=$1 root=$2
hydra=$build/clients/hydra
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "test_model_memory: FAIL: $*" >&2
  exit 1
}
# AddressSanitizer reserves terabytes of address space for its shadow: its
# programs cannot start under `ulimit -v` (the main build runs this test)
if grep -q '^HYDRA_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "test_model_memory: skipped in a sanitizer build (ASan cannot run under ulimit -v)"
  exit 77
fi
python3 "$root/tests/integration/make_large_model.py" gguf "$work/large.gguf"
python3 "$root/tests/integration/make_large_model.py" hf "$work/large-hf"
cat >"$work/job.json" <<'JOB'
{"prompts": [{"ids": [5, 17, 30]}, {"ids": [9, 10, 3]}],
 "ablations": {"components": ["attn.0", "mlp.15"], "methods": ["zero"]}}
JOB
limited() { # runs hydra under a 2.5 GiB address-space limit
  (ulimit -v 2621440 && OMP_NUM_THREADS=1 "$hydra" "$@")
}
expect_refused() { # WHAT MESSAGE ARGS...
  local what=$1 message=$2
  shift 2
  if limited "$@" >"$work/out" 2>"$work/err"; then
    fail "$what was not refused: $(tail -2 "$work/out")"
  fi
  grep -qF -- "$message" "$work/err" || fail "$what: $(cat "$work/err")"
}
expect_refused "fp32 GGUF" "its weights in fp32 need 3.81 GiB of host memory but" \
  run --model "$work/large.gguf" "$work/job.json"
grep -qE "GiB is available \(ulimit -v\); --weights-dtype native keeps the file's blocks in about 0.0[0-9] GiB" \
  "$work/err" || fail "fp32 GGUF refusal: $(cat "$work/err")"
expect_refused "bf16 GGUF" "its weights in fp32 need 3.81 GiB" \
  run --model "$work/large.gguf" "$work/job.json" --weights-dtype bf16
expect_refused "fp32 safetensors" "large-hf: its weights in fp32 need 3.81 GiB of host memory" \
  run --model "$work/large-hf" "$work/job.json"
grep -q "available (ulimit -v)" "$work/err" || fail "safetensors refusal: $(cat "$work/err")"
# HYDRA_NO_MEMORY_CHECK=1 turns it off: the load then meets the limit itself
if HYDRA_NO_MEMORY_CHECK=1 limited run --model "$work/large.gguf" "$work/job.json" >/dev/null 2>"$work/err"; then
  fail "a 3.8 GiB fp32 load ran under a 2.5 GiB limit"
fi
grep -q "out of memory allocating a model" "$work/err" || fail "unchecked load: $(cat "$work/err")"
limited info --model "$work/large.gguf" >"$work/info" 2>&1 || fail "hydra info (native): $(cat "$work/info")"
grep -qE "^memory +0\.[0-9] MiB held, 548\.2 MiB of blocks used in place from the mapped file \(fp32 weights: 3898\.4 MiB\)" \
  "$work/info" || fail "hydra info's memory line: $(cat "$work/info")"
limited run --model "$work/large.gguf" "$work/job.json" --weights-dtype native >"$work/rows" \
  2>"$work/err" || fail "native run under the limit: $(cat "$work/err")"
grep -q '"type":"end","rows":10' "$work/rows" || fail "native run: $(tail -1 "$work/rows")"
echo "test_model_memory: fp32 loads of 3.8 GiB refused by name under a 2.5 GiB limit; the native one ran"
