#!/usr/bin/env bash
# test_family_info.sh - `hydra info` names the block-description choices read
# from each family's config (Qwen2's sliding layers from max_window_layers,
# phi's and StableLM's q/k LayerNorms, OPT-350m's norms after the residual
# adds, missing final norm and projected embedding); `hydra forward` runs
# OPT-350m's block; the ablation engine refuses it by name (its direct
# effects would pass every later norm), never computing something else.
# usage: test_family_info.sh BUILD_DIR ROOT
set -euo pipefail
build=$1 root=$2
hydra=$build/clients/hydra
data=$root/tests/data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "test_family_info: FAIL: $*" >&2
  exit 1
}
expect_info() { # MODEL TEXT
  "$hydra" info --model "$data/$1" >"$work/info.txt" 2>&1 || fail "hydra info $1: $(cat "$work/info.txt")"
  grep -qF -- "$2" "$work/info.txt" || fail "hydra info $1 lacks \"$2\": $(cat "$work/info.txt")"
}
expect_info tiny-qwen2-window "window       5 keys on every layer from layer 1 on (layer 0 attends over every key)"
expect_info tiny-phi-qknorm "q/k LayerNorms over each head, with biases"
expect_info tiny-stablelm-qknorm "q/k LayerNorms over each head, without biases"
expect_info tiny-opt-350m "after each residual add (none before the sublayers), no final norm"
expect_info tiny-opt-350m "embeddings   32 wide: projected up to d_model after the lookup"
"$hydra" forward --model "$data/tiny-opt-350m" --ids 5,17,30,2 >"$work/forward.txt" 2>&1 ||
  fail "hydra forward on tiny-opt-350m: $(cat "$work/forward.txt")"
grep -q "top 10 next tokens" "$work/forward.txt" || fail "hydra forward: $(cat "$work/forward.txt")"
# A tied OPT-350m whose file also stores lm_head.weight equal to its (narrower)
# embedding loads as the tied model: the same logits as without the copy.
mkdir "$work/opt-head"
cp "$data/tiny-opt-350m/config.json" "$work/opt-head/"
python3 - "$data/tiny-opt-350m/model.safetensors" "$work/opt-head/model.safetensors" <<'PY'
import json, struct, sys
src = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", src[:8])[0]
head = json.loads(src[8:8 + n])
data = src[8 + n:]
emb = head["model.decoder.embed_tokens.weight"]
lo, hi = emb["data_offsets"]
head["lm_head.weight"] = {"dtype": emb["dtype"], "shape": emb["shape"],
                          "data_offsets": [len(data), len(data) + hi - lo]}
text = json.dumps(head).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + data + data[lo:hi])
PY
"$hydra" forward --model "$work/opt-head" --ids 5,17,30,2 >"$work/forward-head.txt" 2>&1 ||
  fail "tied OPT-350m with its lm_head in the file: $(cat "$work/forward-head.txt")"
cmp -s <(grep -v "model" "$work/forward.txt") <(grep -v "model" "$work/forward-head.txt") ||
  fail "tied OPT-350m with its lm_head: other logits: $(diff "$work/forward.txt" "$work/forward-head.txt")"
echo '{"preset": "hydra", "prompts": [{"ids": [5, 17, 30, 2, 7]}, {"ids": [9, 10, 3, 27, 12]}]}' \
  >"$work/job.json"
if "$hydra" run --model "$data/tiny-opt-350m" "$work/job.json" >/dev/null 2>"$work/run.err"; then
  fail "an ablation job on a post-LN model was run"
fi
grep -q "the ablation engine does not support norms after the residual adds" "$work/run.err" ||
  fail "the refusal does not say why: $(cat "$work/run.err")"
# "parameters" is the checkpoint's own count, as transformers' num_parameters()
# gives it (tests/golden/make_n_params.py): biases, LayerNorm biases, a norm
# two sublayers share once, a tied unembedding once (also when the file holds
# an equal copy of it), a multimodal checkpoint's language model only.
python3 - "$root/tests/golden/n_params.json" >"$work/n_params.txt" <<'PY'
import json, sys
for name, n in sorted(json.load(open(sys.argv[1]))["models"].items()):
    print(name, n)
PY
"$hydra" info "$data/tiny-gpt2" >"$work/info-positional.txt" 2>&1 ||
  fail "hydra info PATH (no --model): $(cat "$work/info-positional.txt")"
grep -q "^family       gpt2" "$work/info-positional.txt" || fail "hydra info PATH: $(cat "$work/info-positional.txt")"
[ "$(wc -l <"$work/n_params.txt")" -ge 30 ] || fail "n_params.json lists too few models"
while read -r name want; do
  expect_info "$name" "parameters   $want"
done <"$work/n_params.txt"
want=$(sed -n 's/^tiny-opt-350m //p' "$work/n_params.txt")
"$hydra" info --model "$work/opt-head" >"$work/info-head.txt" 2>&1 || fail "hydra info opt-head"
grep -qF "parameters   $want" "$work/info-head.txt" ||
  fail "a tied head stored in the file counted twice: $(grep parameters "$work/info-head.txt")"
echo "test_family_info: hydra info names every new choice and each checkpoint's parameter count; OPT-350m runs forward, ablations refused by name"
