#!/bin/bash
# run.sh - the replication (REPLICATION.md) from scratch, one command:
# builds hydra, fetches SmolLM2-135M, starts hydrad on it, makes a Python
# venv with the client's dependencies, and runs run.py, which submits the
# jobs through the Python client and writes the plots and numbers
# (docs/replication/, and the numbers section of REPLICATION.md).
#   HYDRA_BACKEND  auto|cpu|cuda (default auto)
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$(pwd)
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target hydrad >/dev/null
bash deploy/get-model.sh smollm2-135m models
model=models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf

venv=${REPLICATION_VENV:-.venv-replication}
if ! "$venv/bin/python" -c "import requests, pandas, matplotlib" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q requests pandas matplotlib
fi

work=$(mktemp -d)
port=${HYDRA_PORT:-18181}
token=rep-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token replication user" >"$work/tokens"
./build/server/hydrad --port "$port" --model "smollm2=$model" --store "$work/hydra.db" \
  --tokens "$work/tokens" --backend "${HYDRA_BACKEND:-auto}" --unit-prompts 32 \
  --log-level info 2>"$work/hydrad.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null && break
  sleep 0.2
done
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1); $(date -u +%Y-%m-%d)"
"$venv/bin/python" clients/examples/replication/run.py --url "http://127.0.0.1:$port" \
  --token "$token" --model smollm2 --out "$root/docs/replication" --report "$root/REPLICATION.md"
