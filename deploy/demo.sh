#!/bin/bash
# demo.sh - the main job, from a fresh clone: install packages, build, fetch
# SmolLM2-135M, start hydrad on it, submit the paper's ablation sweep
# (preset "hydra": every attention and MLP layer, resample-ablated 15 times at
# the final position) on six factual-recall prompts over HTTP, stream the
# result rows back, and print the per-layer effect table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${HYDRA_CUDA_ARCH:-80;86;89;90}" >/dev/null
cmake --build build -j "$(nproc)"
bash deploy/get-model.sh smollm2-135m models
model=models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
./build/clients/hydra info --model "$model"

work=$(mktemp -d)
port=${HYDRA_PORT:-18080}
token=demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token demo user" >"$work/tokens"
./build/server/hydrad --port "$port" --model "smollm2=$model" --store "$work/hydra.db" \
  --tokens "$work/tokens" --log-level info 2>"$work/hydrad.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:$port/v1/health" && echo
# Submit and stream the rows in the same response (?wait=stream).
curl -sfN -X POST -H "Authorization: Bearer $token" --data-binary @clients/examples/hydra_smollm2.json \
  "http://127.0.0.1:$port/v1/jobs?wait=stream" >"$work/rows.ndjson"
echo "$(wc -l <"$work/rows.ndjson") result rows streamed from hydrad"
./build/clients/hydra table "$work/rows.ndjson"
