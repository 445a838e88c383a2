/* bench_product - the CPU backend's own product (cpu/product.c: one chain of
 * fused multiply-adds per element, batch-invariant) against OpenBLAS sgemm
 * on the same operands: for each row count, one layer's projections of a
 * shape (SmolLM2-135M's by default: q/o 576 x 576, k/v 192 x 576, gate/up
 * 1536 x 576, down 576 x 1536), each product's best of --reps timings of 3
 * calls, summed over the layer. Times in the process's CPU seconds (on
 * cores shared with other work: what a product cost, not how long it
 * waited), so run it with --threads 1 for a per-core rate. Prints a table;
 * never fails on a timing.
 *
 * usage: bench_product [--d D] [--mlp F] [--kv KV] [--rows 1,6,...] [--reps N]
 *                      [--threads N] */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "product.h"

static double product_time(int blas, float *y, const float *x, const float *w, int rows, int n,
                           int in, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    const double t0 = bench_cpu_now();
    for (int i = 0; i < 3; i++) {
      if (blas)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, in, 1.0f, x, in, w, in, 0.0f,
                    y, n);
      else
        product_rows(y, n, x, w, rows, n, in, 0, 1);
    }
    const double t = (bench_cpu_now() - t0) / 3;
    if (t < best)
      best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  int d = 576, f = 1536, kv = 192, reps = 5, threads = 1;
  const char *rows_list = "1,6,17,64,150,512,4096";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--d"))
      d = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--mlp"))
      f = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--kv"))
      kv = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rows"))
      rows_list = argv[i + 1];
    else if (!strcmp(argv[i], "--reps"))
      reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads"))
      threads = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: bench_product [--d D] [--mlp F] [--kv KV] [--rows 1,6,...] "
                      "[--reps N] [--threads N]\n");
      return 2;
    }
  }
  if (d <= 0 || f <= 0 || kv <= 0 || reps <= 0 || threads <= 0) {
    fprintf(stderr, "bench_product: --d, --mlp, --kv, --reps and --threads must be positive\n");
    return 2;
  }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  const int shapes[7][2] = {{d, d}, {kv, d}, {kv, d}, {d, d}, {f, d}, {f, d}, {d, f}};
  const int widest = d > f ? d : f, max_rows = 4096;
  float *x = malloc(sizeof(float) * (size_t)max_rows * widest);
  const size_t w_floats = (size_t)f * d > (size_t)d * d ? (size_t)f * d : (size_t)d * d;
  float *w = malloc(sizeof(float) * w_floats);
  float *y = malloc(sizeof(float) * (size_t)max_rows * widest);
  if (!x || !w || !y) {
    fprintf(stderr, "bench_product: out of memory\n");
    return 1;
  }
  uint64_t s = 88172645463325252ULL;
  for (size_t i = 0; i < (size_t)max_rows * widest; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x[i] = (float)((double)(s >> 11) / (double)(1ULL << 53) - 0.5);
    if (i < w_floats)
      w[i] = (float)((double)(s >> 20 & 0xFFFF) / 65536.0 - 0.5);
  }
  printf("one layer (d %d, mlp %d, kv %d), %d thread(s), CPU seconds, best of %d\n", d, f, kv,
         threads, reps);
  printf("| rows | product.c GFLOP/s | OpenBLAS sgemm GFLOP/s | ratio |\n| ---: | ---: | ---: | "
         "---: |\n");
  for (const char *p = rows_list; *p;) {
    const int rows = atoi(p);
    if (rows <= 0 || rows > max_rows) {
      fprintf(stderr, "bench_product: rows %d outside 1..%d\n", rows, max_rows);
      return 2;
    }
    double t[2] = {0, 0}, flops = 0;
    for (int k = 0; k < 7; k++) {
      flops += 2.0 * rows * shapes[k][0] * shapes[k][1];
      for (int blas = 0; blas < 2; blas++)
        t[blas] += product_time(blas, y, x, w, rows, shapes[k][0], shapes[k][1], reps);
    }
    printf("| %d | %.1f | %.1f | %.2f |\n", rows, flops / t[0] / 1e9, flops / t[1] / 1e9,
           t[1] / t[0]);
    fflush(stdout);
    p = strchr(p, ',');
    if (!p)
      break;
    p++;
  }
  free(x), free(w), free(y);
  return 0;
}
