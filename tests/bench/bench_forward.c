/* bench_forward - forward-pass throughput of one model on one backend, and
 * the machine's own sgemm rate measured in the same run.
 *
 * usage: bench_forward MODEL [--batch B] [--tokens T] [--runs N] [--threads N]
 *                            [--backend NAME] [--seed S] [--ids-out FILE]
 * Prints one line of key=value results (medians over the runs) for
 * tests/bench/run.sh to tabulate. Logits are computed for every row, as a
 * Hugging Face forward does. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "checkpoint.h"
#include "forward.h"
#include "model.h"

#include "bench_util.h"

/* Floating-point operations of one forward pass over `batch` sequences of
 * `tokens` tokens, logits at every row. */
static double forward_flops(const model_config_t *c, int batch, int tokens) {
  const double d = c->d_model, q = (double)c->n_heads * c->head_dim,
               kv = (double)c->n_kv_heads * c->head_dim, f = c->d_mlp;
  const double per_token_layer =
      2 * (d * q + 2 * d * kv + q * d + (c->mlp == MLP_SWIGLU ? 3 : 2) * d * f);
  /* attention: scores and weighted sum over (t+1) keys per position */
  const double att = 2.0 * 2.0 * q * (tokens * (tokens + 1) / 2.0);
  return batch *
         (c->n_layers * (tokens * per_token_layer + att) + tokens * 2.0 * c->vocab_size * d);
}

/* The machine's sgemm rate on the shapes of the forward pass (median). */
static double sgemm_gflops(const model_config_t *c, int rows, int runs) {
  const int shapes[3][2] = {
      {c->d_mlp, c->d_model}, {c->d_model, c->d_mlp}, {c->d_model, c->d_model}};
  double best_total = 0;
  double *times = malloc(sizeof(double) * runs);
  double flops_total = 0, time_total = 0;
  for (int s = 0; s < 3; s++) {
    int out = shapes[s][0], in = shapes[s][1];
    float *x = malloc((size_t)rows * in * 4), *w = malloc((size_t)out * in * 4),
          *y = malloc((size_t)rows * out * 4);
    for (size_t i = 0; i < (size_t)rows * in; i++)
      x[i] = (float)(i % 17) * 0.01f;
    for (size_t i = 0; i < (size_t)out * in; i++)
      w[i] = (float)(i % 13) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1, x, in, w, in, 0, y, out);
    for (int r = 0; r < runs; r++) {
      double t0 = bench_now();
      for (int k = 0; k < 10; k++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1, x, in, w, in, 0, y,
                    out);
      times[r] = (bench_now() - t0) / 10;
    }
    flops_total += 2.0 * rows * out * in;
    time_total += bench_median(times, runs);
    free(x), free(w), free(y);
  }
  free(times);
  best_total = flops_total / time_total / 1e9;
  return best_total;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_forward MODEL [--batch B] [--tokens T] [--runs N] "
                    "[--threads N] [--backend NAME] [--seed S] [--ids-out FILE]\n");
    return 2;
  }
  const char *path = argv[1], *backend = "cpu", *ids_out = NULL;
  int batch = 8, tokens = 64, runs = 5, threads = 0;
  uint64_t seed = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--batch"))
      batch = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--tokens"))
      tokens = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--runs"))
      runs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads"))
      threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--backend"))
      backend = argv[i + 1];
    else if (!strcmp(argv[i], "--seed"))
      seed = strtoull(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--ids-out"))
      ids_out = argv[i + 1];
  }
  if (batch < 1 || tokens < 1 || runs < 1) {
    fprintf(stderr, "bench_forward: batch, tokens and runs must be positive\n");
    return 2;
  }
  char err[HYDRA_ERR_LEN];
  model_t *m = model_load(path, err);
  backend_t *b = m ? backend_create(backend, threads, err) : NULL;
  forward_t *f = b ? forward_create(m, b, err) : NULL;
  if (!f) {
    fprintf(stderr, "bench_forward: %s\n", err);
    return 1;
  }
  const int rows = batch * tokens, vocab = m->cfg.vocab_size;
  int *ids = malloc(sizeof(int) * rows), *lengths = malloc(sizeof(int) * batch);
  float *logits = malloc((size_t)rows * vocab * sizeof(float));
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (int i = 0; i < rows; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    ids[i] = (int)(s % (uint64_t)vocab);
  }
  for (int i = 0; i < batch; i++)
    lengths[i] = tokens;
  if (ids_out) { /* the same ids for the PyTorch side */
    FILE *fo = fopen(ids_out, "w");
    for (int i = 0; fo && i < rows; i++)
      fprintf(fo, "%d%c", ids[i], (i + 1) % tokens ? ' ' : '\n');
    if (fo)
      fclose(fo);
  }
  forward_batch_t fb = {.n_seqs = batch, .lengths = lengths, .ids = ids};
  forward_out_t out = {.logits = logits};
  double *times = malloc(sizeof(double) * runs);
  if (forward_run(f, &fb, &out, err) != 0) { /* warm-up */
    fprintf(stderr, "bench_forward: %s\n", err);
    return 1;
  }
  for (int r = 0; r < runs; r++) {
    double t0 = bench_now();
    if (forward_run(f, &fb, &out, err) != 0) {
      fprintf(stderr, "bench_forward: %s\n", err);
      return 1;
    }
    times[r] = bench_now() - t0;
  }
  double t = bench_median(times, runs);
  double gflops = forward_flops(&m->cfg, batch, tokens) / t / 1e9;
  double sgemm = strcmp(b->ops->name, "cpu") == 0 ? sgemm_gflops(&m->cfg, rows, runs) : 0;
  printf("backend=%s batch=%d tokens=%d runs=%d median_s=%.4f tokens_per_s=%.1f gflops=%.2f "
         "sgemm_gflops=%.2f\n",
         b->ops->name, batch, tokens, runs, t, rows / t, gflops, sgemm);
  free(times), free(ids), free(lengths), free(logits);
  forward_destroy(f);
  backend_destroy(b);
  model_free(m);
  return 0;
}
