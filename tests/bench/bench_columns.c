/* bench_columns - issue 24 1c's narrow product: a head's or neuron's
 * shortcut multiplies its change through its own columns of the output or
 * down projection (backend op column_products) instead of the whole
 * projection (matmul on a change that is zero outside those columns). On
 * SmolLM2-135M's shapes (d_model 576; 9 heads of 64 through wo [576, 576];
 * d_mlp 1536 through w_down [576, 1536]), --rows rows, each its own random
 * head (or neuron), the table ordered by column as the engine orders it,
 * fp32 weights: the median and least CPU seconds of --reps runs of each, on
 * the CPU backend with --threads threads. Reports, never fails on a timing.
 *
 * usage: bench_columns [--rows N] [--reps N] [--threads N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_util.h"
#include "gguf_quants.h"

static uint64_t rng_state = 88172645463325252ULL;
static double rnd(void) { /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / (double)(1ULL << 52) - 1.0;
}

static int by_column(const void *a, const void *b) {
  const column_span_t *x = a, *y = b;
  return x->col0 != y->col0 ? (x->col0 > y->col0) - (x->col0 < y->col0) : x->row - y->row;
}

/* Times both products of rows changes of `width` columns each (a head: 64,
 * a neuron: 1) through w[out, in]; prints one table row. */
static void bench_shape(backend_t *b, const char *name, int rows, int out, int in, int width,
                        int reps) {
  const size_t nx = (size_t)rows * in, ny = (size_t)rows * out, nw = (size_t)out * in;
  float *x = calloc(nx, sizeof(float)), *w = malloc(nw * sizeof(float));
  column_span_t *spans = malloc(sizeof(column_span_t) * (size_t)rows);
  double *full_s = calloc((size_t)reps, sizeof(double)),
         *narrow_s = calloc((size_t)reps, sizeof(double));
  float *y = calloc(ny, sizeof(float));
  for (size_t i = 0; i < nw; i++)
    w[i] = (float)rnd();
  for (int r = 0; r < rows; r++) { /* the change: zero outside the row's columns */
    const int units = in / width, u = (int)((rnd() + 1.0) / 2.0 * units) % units;
    spans[r] = (column_span_t){.row = r, .col0 = u * width, .col1 = (u + 1) * width};
    for (int c = spans[r].col0; c < spans[r].col1; c++)
      x[(size_t)r * in + c] = (float)rnd();
  }
  qsort(spans, (size_t)rows, sizeof(column_span_t), by_column); /* the engine's order */
  for (int k = 0; k < reps; k++) {
    double t0 = bench_cpu_now();
    b->ops->matmul(b, y, x, w, NULL, rows, out, in, 0);
    full_s[k] = bench_cpu_now() - t0;
    t0 = bench_cpu_now();
    b->ops->memset0(b, y, ny * sizeof(float));
    b->ops->column_products(b, y, x, w, GGUF_TENSOR_F32, spans, rows, out, in);
    narrow_s[k] = bench_cpu_now() - t0;
  }
  double fm = full_s[0], nm = narrow_s[0]; /* the least */
  for (int k = 1; k < reps; k++) {
    fm = full_s[k] < fm ? full_s[k] : fm;
    nm = narrow_s[k] < nm ? narrow_s[k] : nm;
  }
  const double fmed = bench_median(full_s, reps), nmed = bench_median(narrow_s, reps);
  printf("| %s | %d | %d x %d | %d | %.3g, %.3g | %.3g, %.3g | %.1fx |\n", name, rows, out, in,
         width, fmed * 1e3, fm * 1e3, nmed * 1e3, nm * 1e3, fmed / nmed);
  free(x), free(w), free(spans), free(full_s), free(narrow_s), free(y);
}

int main(int argc, char **argv) {
  int rows = 96, reps = 50, threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--rows"))
      rows = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps"))
      reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads"))
      threads = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: bench_columns [--rows N] [--reps N] [--threads N]\n");
      return 2;
    }
  }
  if (rows < 1 || reps < 1) {
    fprintf(stderr, "bench_columns: --rows and --reps must be at least 1\n");
    return 2;
  }
  char err[HYDRA_ERR_LEN];
  backend_t *b = backend_create("cpu", threads, err);
  if (!b) {
    fprintf(stderr, "bench_columns: %s\n", err);
    return 1;
  }
  printf("| change | rows | weights (out x in) | columns a row | matmul ms (median, least) | "
         "column_products ms (median, least) | speed-up (medians) |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  bench_shape(b, "head through wo", rows, 576, 576, 64, reps);
  bench_shape(b, "neuron through w_down", rows, 576, 1536, 1, reps);
  backend_destroy(b);
  return 0;
}
