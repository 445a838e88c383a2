#!/bin/bash
# tests/gpu/ab.sh BASE_DIR MODEL PROMPTS [bench_sweep args...] - an A/B of the
# engine on a GPU machine (run from the repository root): bench_sweep of this
# tree and of the source tree in BASE_DIR (another commit, e.g. unpacked from
# `git archive COMMIT`; a device machine has no git history), both built with
# CUDA against the .debs prefix, run alternately AB_RUNS times (default 3)
# with the same arguments on the cuda backend. Prints each run's median_s and
# the medians and their ratio (base over this tree).
#   AB_BACKEND  the backend (default cuda; cpu for a dry run without a GPU)
#   AB_OUT  a file the summary line is appended to
set -u
cd "$(dirname "$0")/../.." || exit 1
[ $# -ge 3 ] || {
  echo "usage: tests/gpu/ab.sh BASE_DIR MODEL PROMPTS [bench_sweep args...]" >&2
  exit 2
}
base=$1
shift
. tests/gpu/deps.sh
gpu_build bench_sweep >/dev/null || exit 1
(cd "$base" && LD_LIBRARY_PATH=$hydra_ld cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release \
  -DENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${HYDRA_CUDA_ARCH:-90}" \
  ${deps_root:+-DHYDRA_DEPS_ROOT=$deps_root} >/dev/null &&
  LD_LIBRARY_PATH=$hydra_ld cmake --build build-gpu -j "$(nproc)" --target bench_sweep >/dev/null) ||
  exit 1
get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2" | tail -1; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
a=$(mktemp) b=$(mktemp)
for i in $(seq "${AB_RUNS:-3}"); do
  lb=$("${hy[@]}" "$base/build-gpu/tests/bench_sweep" "$@" --backend "${AB_BACKEND:-cuda}" 2>&1 | tail -1)
  la=$("${hy[@]}" build-gpu/tests/bench_sweep "$@" --backend "${AB_BACKEND:-cuda}" 2>&1 | tail -1)
  get median_s "$lb" >>"$b"
  get median_s "$la" >>"$a"
  echo "run $i: base $(tail -1 "$b") s, this tree $(tail -1 "$a") s"
done
mb=$(median <"$b") ma=$(median <"$a")
line="ab: base ${mb} s, this tree ${ma} s, ratio $(awk -v b="$mb" -v a="$ma" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }')x ($*)"
echo "$line"
[ -n "${AB_OUT:-}" ] && echo "$line" >>"$AB_OUT"
rm -f "$a" "$b"
[ -n "$mb" ] && [ -n "$ma" ]
