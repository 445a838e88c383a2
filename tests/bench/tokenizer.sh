#!/bin/bash
# tests/bench/tokenizer.sh - tokenizer benchmark: hydra's encoder against
# Hugging Face `tokenizers` on the same documents, one thread each, in the
# same run; every document's ids are checked to be identical. Writes its
# section of tests/bench/RESULTS.md. Reports; never gates.
#   PYTHON: a python with tokenizers + transformers + gguf (default: python3);
#   BUILD: the build folder (default: build); BENCH: a bench_tokenizer binary
#   to use instead of building one; RUNS (default 5); MB: size of the text
#   (default 4); SEED (default 7); MODEL: the SmolLM2 GGUF.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
runs=${RUNS:-5}
mb=${MB:-4}
seed=${SEED:-7}
python=${PYTHON:-python3}
model=${MODEL:-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -s "$model" ] || bash deploy/get-model.sh smollm2-135m models
bench=${BENCH:-}
if [ -z "$bench" ]; then
  cmake --build "$build" --target bench_tokenizer >/dev/null
  bench=$build/tests/bench_tokenizer
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" tests/bench/tokenizer_hf.py --make-docs "$tmp/docs.jsonl" --mb "$mb" --seed "$seed"

get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
rows=""
hf_version=""
for spec in "tiny-gpt2 (tokenizer.json, byte-level BPE)|tests/data/tiny-gpt2" \
  "tiny-llama (tokenizer.json, sentencepiece BPE)|tests/data/tiny-llama" \
  "SmolLM2-135M (GGUF, byte-level BPE, 49152)|$model"; do
  name=${spec%%|*} path=${spec#*|}
  hydra=$("$bench" "$path" "$tmp/docs.jsonl" --runs "$runs" --ids-out "$tmp/ids.txt")
  echo "$name: $hydra"
  hf=$(TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 "$python" tests/bench/tokenizer_hf.py \
    "$path" "$tmp/docs.jsonl" --runs "$runs" --ids "$tmp/ids.txt" 2>&1 | tail -1)
  echo "$name: $hf"
  hf_version=$(get backend "$hf")
  same=$(get ids_match "$hf")
  [ -n "$same" ] || same="NO ($hf)"
  rows+="| $name | $(get tokens "$hydra") | $(get median_s "$hydra") | $(get tokens_per_s "$hydra") | $(get mb_per_s "$hydra") | $(get median_s "$hf") | $(get tokens_per_s "$hf") | $(ratio "$(get tokens_per_s "$hydra")" "$(get tokens_per_s "$hf")") | $same |
"
done
docs=$(get docs "$hydra")
bytes=$(get bytes "$hydra")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)

table="| tokenizer | tokens | hydra median s | hydra tokens/s | hydra MB/s | HF median s | HF tokens/s | vs HF | same ids |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
${rows%$'\n'}"
echo
echo "$table"
cat >"$tmp/section.md" <<MD
## Tokenizer: encoding $bytes bytes in $docs documents, one thread

Written by \`tests/bench/tokenizer.sh\` (command: \`PYTHON=$python bash tests/bench/tokenizer.sh\`).
Machine: $cpu, 1 thread each ($(nproc) cores visible), $(date -u +%Y-%m-%d).
The text: $mb MB of ~2 KB documents drawn with seed $seed from
\`tests/data/tokenizer_corpus.txt\` (\`tokenizer_hf.py --make-docs\`): mostly
English-like sentences, plus digits, code, accents, Greek, CJK, Arabic, emoji
and special tokens. Each document is encoded on its own with the tokenizer's
special tokens; median of $runs passes after one warm-up (both sides keep
their word caches warm). hydra: \`bench_tokenizer\` (tokenizer_encode per
document). HF: $hf_version \`Tokenizer.encode_batch\` with
TOKENIZERS_PARALLELISM=false (one thread), from the same tokenizer.json or,
for the GGUF, built as \`tests/golden/make_tokenizer_golden.py\` builds it.
"same ids": every document's ids identical between the two.

$table

Target (issue 3): >= 1x Hugging Face tokenizers.
MD
bash tests/bench/results_section.sh tests/bench/RESULTS.md "## Tokenizer" "$tmp/section.md"
echo "wrote tests/bench/RESULTS.md (section \"Tokenizer\")"
