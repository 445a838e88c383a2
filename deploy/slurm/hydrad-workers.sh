#!/bin/bash
# hydrad-workers.sh - a Slurm batch script: one hydrad per GPU Slurm gives
# this job, every one a worker of the lab's shared PostgreSQL store, so the
# allocation drains the common queue until it ends. Submit with
#   sbatch --gres=gpu:4 --time=12:00:00 deploy/slurm/hydrad-workers.sh
# after setting, in the environment or in deploy/slurm/hydra.env:
#   HYDRA_STORE   postgres://hydra@db.lab.example/hydra (required; the password
#                 in ~/.pgpass or PGPASSWORD)
#   HYDRA_MODEL   NAME=PATH of the model to serve (required; repeat a model
#                 with HYDRA_MODEL_2, HYDRA_MODEL_3 ...)
#   HYDRA_TOKENS  the bearer token file (default ~/.config/hydra/tokens)
#   HYDRA_PORT    the first worker's port; worker i listens on PORT + i
#                 (default 8080)
#   HYDRAD        the hydrad binary (default: hydrad on PATH)
#   HYDRA_BACKEND cuda (default); cpu runs the same workers without a GPU
#                 (for a try on a login node or in a test)
# Each worker sees only its GPU (CUDA_VISIBLE_DEVICES) and is named
# HOST:gpuI in the store's leases, so a worker restarted on the same node
# frees its own leases at once. When Slurm ends the job (time limit,
# scancel), SIGTERM goes to every worker: each finishes and stores its
# running unit, or leaves it for the other workers after its lease.
#SBATCH --job-name=hydrad
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --signal=B:TERM@300
#SBATCH --output=hydrad-%j.log
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC1091
[ -f "$here/hydra.env" ] && . "$here/hydra.env"
: "${HYDRA_STORE:?set HYDRA_STORE to the shared postgres:// URL}"
: "${HYDRA_MODEL:?set HYDRA_MODEL to NAME=PATH}"
tokens=${HYDRA_TOKENS:-$HOME/.config/hydra/tokens}
port=${HYDRA_PORT:-8080}
hydrad=${HYDRAD:-hydrad}
backend=${HYDRA_BACKEND:-cuda}
case $HYDRA_STORE in
postgres://* | postgresql://*) ;;
*)
  echo "hydrad-workers: HYDRA_STORE must be a postgres:// URL (a SQLite file serves one worker)" >&2
  exit 2
  ;;
esac

# The GPUs of this job: Slurm's list (SLURM_JOB_GPUS or CUDA_VISIBLE_DEVICES),
# else one worker.
gpus=${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-0}}
IFS=, read -r -a gpu_list <<<"$gpus"
models=(--model "$HYDRA_MODEL")
for i in $(seq 2 16); do
  var=HYDRA_MODEL_$i
  [ -n "${!var:-}" ] && models+=(--model "${!var}")
done
threads=$((${SLURM_CPUS_PER_TASK:-${#gpu_list[@]}} / ${#gpu_list[@]}))
[ "$threads" -ge 1 ] || threads=1

pids=()
stop() {
  echo "hydrad-workers: stopping ${#pids[@]} workers (each stores its running unit)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap stop TERM INT
host=$(hostname -s)
for i in "${!gpu_list[@]}"; do
  CUDA_VISIBLE_DEVICES=${gpu_list[$i]} "$hydrad" --listen 0.0.0.0 --port $((port + i)) \
    --store "$HYDRA_STORE" --tokens "$tokens" --backend "$backend" --threads "$threads" \
    --worker-id "$host:gpu${gpu_list[$i]}" "${models[@]}" &
  pids+=($!)
  echo "hydrad-workers: worker $host:gpu${gpu_list[$i]} on port $((port + i)), pid $!"
done
# wait returns early when a signal arrives: wait again for the workers' drain.
status=0
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" || status=$?
  done
done
exit "$status"
