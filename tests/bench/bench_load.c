/* bench_load - a GGUF file's load time: model_load (the file parsed, every
 * tensor read and dequantised to fp32 on OpenMP threads: OMP_NUM_THREADS),
 * median and minimum of --runs loads, and the rate over the tensors' stored
 * bytes. tests/bench/gguf_load.sh runs it beside gguf-py's dequantisation of
 * the same tensors (tests/bench/gguf_load_ref.py). Reports, never fails on a
 * timing.
 *
 * usage: bench_load FILE [--runs N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "checkpoint.h"
#include "error.h"
#include "gguf.h"
#include "model.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_load FILE [--runs N]\n");
    return 2;
  }
  const char *path = argv[1];
  int runs = 3;
  for (int i = 2; i + 1 < argc; i += 2)
    if (!strcmp(argv[i], "--runs"))
      runs = atoi(argv[i + 1]);
  if (runs < 1 || runs > 32) {
    fprintf(stderr, "bench_load: --runs must be 1 .. 32\n");
    return 2;
  }
  char err[HYDRA_ERR_LEN];
  gguf_t *g = gguf_open(path, err);
  if (!g) {
    fprintf(stderr, "bench_load: %s\n", err);
    return 1;
  }
  unsigned long long stored = 0;
  for (int64_t i = 0; i < gguf_n_tensors(g); i++)
    stored += gguf_tensor(g, i)->n_bytes;
  const long long n_tensors = (long long)gguf_n_tensors(g);
  gguf_close(g);
  double t[32];
  size_t params = 0;
  for (int r = 0; r < runs; r++) {
    const double t0 = bench_now();
    model_t *m = model_load(path, err);
    t[r] = bench_now() - t0;
    if (!m) {
      fprintf(stderr, "bench_load: %s\n", err);
      return 1;
    }
    params = model_n_params(m);
    model_free(m);
  }
  double min = t[0];
  for (int r = 1; r < runs; r++)
    min = t[r] < min ? t[r] : min;
  const double median = bench_median(t, runs);
  printf("tensors=%lld stored_bytes=%llu params=%zu fp32_bytes=%zu runs=%d median_s=%.3f "
         "min_s=%.3f stored_mb_per_s=%.1f\n",
         n_tensors, stored, params, params * sizeof(float), runs, median, min,
         stored / median / 1e6);
  return 0;
}
