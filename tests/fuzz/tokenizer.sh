#!/bin/bash
# tests/fuzz/tokenizer.sh - random text through hydra's tokenizer and Hugging
# Face `tokenizers`: every document's ids must be identical. Not part of
# ctest (it needs Python with tokenizers + transformers + gguf); run it after
# changing common/tokenizer*.c or bpe.c. Exits 1 on any difference.
#   PYTHON (default python3); BUILD (default build) or BENCH: a
#   bench_tokenizer binary; SEEDS (default "1 2 3"); N documents per seed
#   (default 3000); MODEL: the SmolLM2 GGUF (left out when absent).
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
model=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
bench=${BENCH:-}
if [ -z "$bench" ]; then
  cmake --build "${BUILD:-build}" --target bench_tokenizer >/dev/null
  bench=${BUILD:-build}/tests/bench_tokenizer
fi
tokenizers=(tests/data/tiny-gpt2 tests/data/tiny-llama tests/data/gguf/tiny_llama_tokenizer.gguf
  tests/data/tokenizers/*/tokenizer.json tests/data/gguf/tokenizer_pre_*.gguf)
[ -s "$model" ] && tokenizers+=("$model")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
for seed in ${SEEDS:-1 2 3}; do
  "$python" tests/bench/tokenizer_hf.py --make-fuzz "$tmp/fuzz.jsonl" --n "${N:-3000}" --seed "$seed"
  for tok in "${tokenizers[@]}"; do
    "$bench" "$tok" "$tmp/fuzz.jsonl" --runs 1 --ids-out "$tmp/ids.txt" >/dev/null
    if out=$("$python" tests/bench/tokenizer_hf.py "$tok" "$tmp/fuzz.jsonl" --runs 1 \
      --ids "$tmp/ids.txt" 2>&1); then
      echo "seed $seed $tok: same ids"
    else
      echo "seed $seed $tok: $(tail -1 <<<"$out")"
      bad=1
    fi
  done
done
exit $bad
