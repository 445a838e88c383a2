#!/bin/bash
# demo.sh - the main job, from a fresh clone: install packages, build, fetch
# SmolLM2-135M, and run the paper's ablation sweep (preset "hydra": every
# attention and MLP layer, resample-ablated 15 times at the final position)
# on six factual-recall prompts, printing the per-layer effect table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${HYDRA_CUDA_ARCH:-80;86;89;90}" >/dev/null
cmake --build build -j "$(nproc)"
bash deploy/get-model.sh smollm2-135m models
model=models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
./build/clients/hydra info --model "$model"
# The prompt "The Eiffel Tower is located in the city of" as SmolLM2 token ids:
# the top next token is 7042, " Paris".
./build/clients/hydra forward --model "$model" --ids 504,414,46682,18669,314,3807,281,260,2240,282 --top 3
./build/clients/hydra run --model "$model" clients/examples/hydra_smollm2.json --format table
