/* bench_blocks - the quantized product's rate against OpenBLAS sgemm on the
 * same shapes: for each block type and each projection of a Llama-3-8B
 * layer, the CPU backend's matmul on the weights dequantised (fp32, what
 * `--weights-dtype fp32` runs) and its matmul_blocks on the weights in their
 * blocks, decoded per product into a scratch of --tile-rows rows (0: the
 * whole matrix). Prints one table row per (type, shape): median seconds of
 * --reps runs, GFLOP/s, and the ratio blocks / fp32. Reports, never fails
 * on a timing. --clock cpu times each run in the process's CPU seconds
 * instead of wall seconds (on cores shared with other work: what the run
 * cost, not how long it waited). HYDRA_NO_SIMD=1 runs the scalar decoders.
 * --decode 1 times only the decoders instead, on the calling thread: one
 * 1 MiB tile of fp32 (262,144 values) decoded from random blocks, the
 * scalar code against the AVX2 twins, median of --reps runs of 16 tiles.
 *
 * usage: bench_blocks [--rows N] [--reps N] [--threads N] [--tile-rows N]
 *                     [--types Q4_K,Q6_K,...] [--seed N] [--clock wall|cpu]
 *                     [--decode 1] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bench_util.h"
#include "random_blocks.h"

static uint64_t rng_state = 88172645463325252ULL;
static double rnd(void) { /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / (double)(1ULL << 52) - 1.0;
}

typedef struct {
  const char *name;
  int out, in;
} shape_t;

static double (*clock_now)(void) = bench_now;

static double time_median(backend_t *b, int reps, int blocks, float *y, const float *x,
                          const void *w, uint32_t type, int rows, const shape_t *s, float *scratch,
                          size_t scratch_floats) {
  double t[32];
  for (int r = 0; r < reps; r++) {
    double t0 = clock_now();
    int rc = blocks ? b->ops->matmul_blocks(b, y, x, w, type, NULL, rows, s->out, s->in, 0, scratch,
                                            scratch_floats)
                    : b->ops->matmul(b, y, x, w, NULL, rows, s->out, s->in, 0);
    if (rc != 0) {
      fprintf(stderr, "bench_blocks: %s\n", b->err);
      exit(1);
    }
    t[r] = clock_now() - t0;
  }
  return bench_median(t, reps);
}

/* Median seconds per value of --reps runs of 16 decodes of one tile. */
static double decode_seconds(const gguf_quant_type_t *tt, const uint8_t *w, float *tile,
                             size_t n_blocks, int reps) {
  double t[32];
  for (int r = 0; r < reps; r++) {
    double t0 = clock_now();
    for (int k = 0; k < 16; k++)
      tt->decode(w, tile, n_blocks);
    t[r] = (clock_now() - t0) / (16.0 * (double)n_blocks * tt->block_size);
  }
  return bench_median(t, reps);
}

/* --decode 1: the decoders alone, scalar and AVX2, one table row a type. */
/* The GGUF type called name ("Q4_K"), or 64 when none is. */
static uint32_t type_named(const char *name) {
  uint32_t type = 0;
  while (type < 64 && !(gguf_quant_type(type) && !strcmp(gguf_quant_type(type)->name, name)))
    type++;
  return type;
}

static int bench_decoders(const char *types_arg, int reps) {
  enum { TILE_VALUES = 1 << 18 };
  uint8_t *w = malloc((size_t)TILE_VALUES * 2);
  float *tile = malloc((size_t)TILE_VALUES * sizeof(float));
  if (!w || !tile) {
    fprintf(stderr, "bench_blocks: out of memory\n");
    return 1;
  }
  printf("bench_blocks --decode: one tile of %d values, %d reps of 16 (median), %s seconds\n",
         TILE_VALUES, reps, clock_now == bench_cpu_now ? "CPU" : "wall");
  printf(
      "| type | scalar ns/value | AVX2 ns/value | scalar / AVX2 |\n| --- | ---: | ---: | ---: |\n");
  char list[256];
  snprintf(list, sizeof(list), "%s", types_arg);
  for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
    const uint32_t type = type_named(name);
    if (type == 64 || !model_native_type(type) || type == GGUF_TENSOR_F32) {
      fprintf(stderr, "bench_blocks: %s is not a type decoded per product\n", name);
      return 2;
    }
    const gguf_quant_type_t *tt = gguf_quant_type(type);
    const size_t n_blocks = TILE_VALUES / tt->block_size;
    random_blocks(type, w, n_blocks, rnd);
    gguf_quants_set_simd(0);
    const double scalar = decode_seconds(tt, w, tile, n_blocks, reps);
    if (!gguf_quants_set_simd(1)) {
      printf("| %s | %.3f | (no AVX2) | |\n", name, scalar * 1e9);
      continue;
    }
    const double twin = decode_seconds(tt, w, tile, n_blocks, reps);
    printf("| %s | %.3f | %.3f | %.1f |\n", name, scalar * 1e9, twin * 1e9, scalar / twin);
  }
  free(w), free(tile);
  return 0;
}

int main(int argc, char **argv) {
  int rows = 512, reps = 5, threads = 0, tile_rows = 0, decode_only = 0;
  const char *types_arg = "Q4_K,Q6_K,Q8_0,Q4_0";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--rows"))
      rows = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--reps"))
      reps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--threads"))
      threads = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--tile-rows"))
      tile_rows = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--decode"))
      decode_only = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--types"))
      types_arg = argv[i + 1];
    else if (!strcmp(argv[i], "--clock")) {
      if (strcmp(argv[i + 1], "cpu") && strcmp(argv[i + 1], "wall")) {
        fprintf(stderr, "bench_blocks: --clock takes wall or cpu, not %s\n", argv[i + 1]);
        return 2;
      }
      clock_now = strcmp(argv[i + 1], "cpu") ? bench_now : bench_cpu_now;
    } else if (!strcmp(argv[i], "--seed"))
      rng_state = strtoull(argv[i + 1], NULL, 10) * 2654435761ULL + 1;
    else {
      fprintf(stderr, "bench_blocks: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (rows < 1 || reps < 1 || reps > 32 || tile_rows < 0) {
    fprintf(stderr, "bench_blocks: --rows >= 1, --reps in 1..32, --tile-rows >= 0\n");
    return 2;
  }
  if (decode_only)
    return bench_decoders(types_arg, reps);
  static const shape_t shapes[] = {
      {"q/o 4096x4096", 4096, 4096},
      {"k/v 1024x4096", 1024, 4096},
      {"up/gate 14336x4096", 14336, 4096},
      {"down 4096x14336", 4096, 14336},
  };
  char err[HYDRA_ERR_LEN];
  backend_t *b = backend_create("cpu", threads, err);
  if (!b) {
    fprintf(stderr, "bench_blocks: %s\n", err);
    return 1;
  }
  const size_t max_w = (size_t)14336 * 4096;
  float *x = malloc((size_t)rows * 14336 * sizeof(float));
  float *y = malloc((size_t)rows * 14336 * sizeof(float));
  float *wf = malloc(max_w * sizeof(float));
  uint8_t *w = malloc(max_w * 2); /* the widest block type here takes under 2 bytes a value */
  const size_t scratch_floats = tile_rows ? (size_t)tile_rows * 14336 : max_w;
  float *scratch = malloc(scratch_floats * sizeof(float));
  if (!x || !y || !wf || !w || !scratch) {
    fprintf(stderr, "bench_blocks: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < (size_t)rows * 14336; i++)
    x[i] = (float)rnd();
  printf("bench_blocks: %d rows, %d reps (median), threads %d, scratch %s, %s seconds, %s "
         "decoders\n",
         rows, reps, threads, tile_rows ? "tiles" : "the whole matrix",
         clock_now == bench_cpu_now ? "CPU" : "wall", gguf_quants_simd() ? "AVX2" : "scalar");
  if (tile_rows)
    printf("  tile rows %d\n", tile_rows);
  printf("| type | shape | fp32 sgemm s | GFLOP/s | blocks s | GFLOP/s | blocks / fp32 |\n");
  printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  char list[256];
  snprintf(list, sizeof(list), "%s", types_arg);
  for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
    const uint32_t type = type_named(name);
    if (type == 64 || !model_native_type(type)) {
      fprintf(stderr, "bench_blocks: %s is not a type multiplied in blocks\n", name);
      return 2;
    }
    const gguf_quant_type_t *tt = gguf_quant_type(type);
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
      const shape_t *s = &shapes[k];
      const size_t n_blocks = (size_t)s->out * s->in / tt->block_size;
      random_blocks(type, w, n_blocks, rnd);
      gguf_quants_dequantise(tt, w, wf, n_blocks);
      const size_t sf = tile_rows ? (size_t)tile_rows * s->in : scratch_floats;
      const double flop = 2.0 * rows * s->out * s->in;
      double t32 = time_median(b, reps, 0, y, x, wf, type, rows, s, scratch, sf);
      double tq = time_median(b, reps, 1, y, x, w, type, rows, s, scratch, sf);
      printf("| %s | %s | %.4f | %.1f | %.4f | %.1f | %.2f |\n", name, s->name, t32,
             flop / t32 * 1e-9, tq, flop / tq * 1e-9, t32 / tq);
      fflush(stdout);
    }
  }
  backend_destroy(b);
  free(x), free(y), free(wf), free(w), free(scratch);
  return 0;
}
