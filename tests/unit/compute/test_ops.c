/* test_ops - every backend op on seeded random inputs against a naive
 * reference written here in double precision.
 * usage: test_ops [backend] [seed]   (backend: cpu (default), cuda, auto) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "bf16.h"
#include "check.h"
#include "gguf_quants.h"
#include "random_blocks.h"

static uint64_t rng_state;
static double rnd(void) { /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) / (double)(1ULL << 52) - 1.0;
}
static void fill(float *x, size_t n, double scale) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(rnd() * scale);
}

static backend_t *B;

/* One line of the op table: the output's error relative to its scale. */
static void compare(const char *op, const float *got, const double *want, size_t n, double bound) {
  double e = check_rel_error(got, want, n);
  printf("%-14s rel err %.3g (bound %.0e)  %s\n", op, e, bound, e <= bound ? "ok" : "FAIL");
  CHECK(e <= bound, "%s: rel err %.3g above the bound %.0e", op, e, bound);
}

/* Device copies of host arrays. */
static void *dev(const void *host, size_t bytes) {
  void *d = B->ops->alloc(B, bytes);
  if (!d || B->ops->upload(B, d, host, bytes)) {
    fprintf(stderr, "alloc/upload: %s\n", B->err);
    exit(1);
  }
  return d;
}
static void back(void *host, const void *d, size_t bytes) {
  if (B->ops->download(B, host, d, bytes) || B->ops->synchronize(B)) {
    fprintf(stderr, "download: %s\n", B->err);
    exit(1);
  }
}
static void run(int rc, const char *op) {
  if (rc) {
    fprintf(stderr, "%s failed: %s\n", op, B->err);
    exit(1);
  }
}

static void test_matmul(int rows, int out, int in, int bias, int acc, int tf32) {
  if (tf32 && B->ops->set_precision(B, 1) != 1) {
    printf("  matmul tf32: not offered by backend %s (fp32 only)\n", B->ops->name);
    return;
  }
  size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
  float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc(out * 4), *y = malloc(ny * 4);
  double *ref = malloc(ny * 8);
  fill(x, nx, 1), fill(w, nw, 1), fill(b, out, 1), fill(y, ny, 1);
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < out; o++) {
      double s = acc ? y[(size_t)r * out + o] : 0.0;
      for (int i = 0; i < in; i++)
        s += (double)x[(size_t)r * in + i] * w[(size_t)o * in + i];
      ref[(size_t)r * out + o] = s + (bias ? b[o] : 0.0);
    }
  float *dx = dev(x, nx * 4), *dw = dev(w, nw * 4), *db = dev(b, out * 4), *dy = dev(y, ny * 4);
  run(B->ops->matmul(B, dy, dx, dw, bias ? db : NULL, rows, out, in, acc), "matmul");
  back(y, dy, ny * 4);
  char name[64];
  snprintf(name, sizeof(name), "matmul%s%s%s", bias ? "+b" : "", acc ? "+acc" : "",
           tf32 ? " tf32" : "");
  /* TF32 keeps 10 mantissa bits of each operand: about 1e-3 of the output's scale */
  compare(name, y, ref, ny, tf32 ? 5e-3 : 1e-5);
  CHECK(!tf32 || B->ops->set_precision(B, 0) == 0, "matmul: the backend did not return to fp32");
  B->ops->free(B, dx), B->ops->free(B, dw), B->ops->free(B, db), B->ops->free(B, dy);
  free(x), free(w), free(b), free(y), free(ref);
}

/* Rounding to bf16 at the edges: every expected value is what torch 2.x's
 * .to(torch.bfloat16) gives (a NaN's bits differ between torch's code paths:
 * only NaN-ness is checked). */
static void test_bf16_rounding(void) {
  const struct {
    float in;
    uint16_t want;
  } cases[] = {
      {1.0f, 0x3f80},           {1.00390625f, 0x3f80}, /* 1 + 2^-8: a tie, down to even */
      {1.01171875f, 0x3f82},                           /* 1 + 3 * 2^-8: a tie, up to even */
      {-2.5f, 0xc020},          {-0.0f, 0x8000},
      {3.3895314e38f, 0x7f7f},  /* bf16's largest finite */
      {3.40282347e38f, 0x7f80}, /* FLT_MAX: beyond it, to infinity */
      {1e-40f, 0x0001},         /* a subnormal keeps its top bits */
  };
  const int before = check_failures();
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    CHECK(bf16_from_float(cases[i].in) == cases[i].want,
          "bf16 rounding of %.9g: got 0x%04x, want 0x%04x", (double)cases[i].in,
          bf16_from_float(cases[i].in), cases[i].want);
  CHECK(bf16_from_float(nextafterf(1.00390625f, 2.0f)) == 0x3f81 && /* just above a tie: up */
            isnan(bf16_to_float(bf16_from_float(NAN))) && bf16_to_float(0x3f82) == 1.015625f,
        "bf16: NaN or widening");
  printf("bf16 rounding   %s\n", check_failures() > before ? "FAIL" : "ok");
}

/* matmul_bf16 with a scratch of scratch_rows rows of w: one block, or
 * several with a ragged last one; the reference widens the same bf16 values. */
static void test_matmul_bf16(int rows, int out, int in, int bias, int acc, int scratch_rows) {
  size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
  size_t ns = (size_t)scratch_rows * in;
  float *x = malloc(nx * 4), *wf = malloc(nw * 4), *b = malloc(out * 4), *y = malloc(ny * 4);
  uint16_t *w = malloc(nw * 2);
  double *ref = malloc(ny * 8);
  fill(x, nx, 1), fill(wf, nw, 1), fill(b, out, 1), fill(y, ny, 1);
  for (size_t i = 0; i < nw; i++)
    w[i] = bf16_from_float(wf[i]);
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < out; o++) {
      double s = acc ? y[(size_t)r * out + o] : 0.0;
      for (int i = 0; i < in; i++)
        s += (double)x[(size_t)r * in + i] * bf16_to_float(w[(size_t)o * in + i]);
      ref[(size_t)r * out + o] = s + (bias ? b[o] : 0.0);
    }
  float *dx = dev(x, nx * 4), *db = dev(b, out * 4), *dy = dev(y, ny * 4);
  uint16_t *dw = dev(w, nw * 2);
  float *scratch = B->ops->alloc(B, ns * 4);
  run(!scratch, "alloc scratch");
  run(B->ops->matmul_bf16(B, dy, dx, dw, bias ? db : NULL, rows, out, in, acc, scratch, ns),
      "matmul_bf16");
  back(y, dy, ny * 4);
  char name[64];
  snprintf(name, sizeof(name), "matmul_bf16%s%s /%d", bias ? "+b" : "", acc ? "+acc" : "",
           (out + scratch_rows - 1) / scratch_rows);
  compare(name, y, ref, ny, 1e-5);
  /* a scratch under one row of w is refused, not overrun */
  CHECK(B->ops->matmul_bf16(B, dy, dx, dw, NULL, rows, out, in, 0, scratch, (size_t)in - 1) != 0,
        "matmul_bf16: a scratch of in - 1 floats was accepted");
  B->ops->free(B, dx), B->ops->free(B, dw), B->ops->free(B, db), B->ops->free(B, dy);
  B->ops->free(B, scratch);
  free(x), free(wf), free(w), free(b), free(y), free(ref);
}

/* matmul_blocks with w in `type`'s blocks and a scratch of scratch_rows
 * rows: against the double reference on the decoded weights (1e-5); and,
 * when one tile holds all of w (as the transformer's scratch does), against
 * matmul on those decoded weights, the dequantised-at-load product: the same
 * floats, bit for bit (the same sgemm call on the same values). Several
 * tiles may round otherwise (sgemm's order of sums depends on the width),
 * so then against matmul_blocks on the decoded weights as F32 rows with the
 * same scratch size (the unembedding's two paths): the same tiles, the same
 * floats, bit for bit. */
static void test_matmul_blocks(uint32_t type, int rows, int out, int in, int bias, int acc,
                               int scratch_rows) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  const size_t row_blocks = (size_t)in / tt->block_size, row_bytes = row_blocks * tt->type_size;
  size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
  size_t ns = (size_t)scratch_rows * in;
  float *x = malloc(nx * 4), *wf = malloc(nw * 4), *b = malloc(out * 4), *y = malloc(ny * 4);
  float *y_load = malloc(ny * 4), *y0 = malloc(ny * 4);
  uint8_t *w = malloc((size_t)out * row_bytes);
  double *ref = malloc(ny * 8);
  fill(x, nx, 1), fill(b, out, 1), fill(y0, ny, 1);
  random_blocks(type, w, (size_t)out * row_blocks, rnd);
  tt->decode(w, wf, (size_t)out * row_blocks);
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < out; o++) {
      double s = acc ? y0[(size_t)r * out + o] : 0.0;
      for (int i = 0; i < in; i++)
        s += (double)x[(size_t)r * in + i] * wf[(size_t)o * in + i];
      ref[(size_t)r * out + o] = s + (bias ? b[o] : 0.0);
    }
  float *dx = dev(x, nx * 4), *db = dev(b, out * 4), *dy = dev(y0, ny * 4), *dwf = dev(wf, nw * 4);
  float *dy_load = dev(y0, ny * 4);
  uint8_t *dw = dev(w, (size_t)out * row_bytes);
  float *scratch = B->ops->alloc(B, ns * 4);
  run(!scratch, "alloc scratch");
  run(B->ops->matmul_blocks(B, dy, dx, dw, type, bias ? db : NULL, rows, out, in, acc, scratch, ns),
      "matmul_blocks");
  if (scratch_rows >= out)
    run(B->ops->matmul(B, dy_load, dx, dwf, bias ? db : NULL, rows, out, in, acc), "matmul");
  else /* F32 rows need no scratch: NULL, its size sets the tiles */
    run(B->ops->matmul_blocks(B, dy_load, dx, dwf, GGUF_TENSOR_F32, bias ? db : NULL, rows, out, in,
                              acc, NULL, ns),
        "matmul_blocks F32");
  back(y, dy, ny * 4);
  back(y_load, dy_load, ny * 4);
  char name[64];
  snprintf(name, sizeof(name), "mm_%s%s%s /%d", tt->name, bias ? "+b" : "", acc ? "+acc" : "",
           (out + scratch_rows - 1) / scratch_rows);
  compare(name, y, ref, ny, 1e-5);
  size_t differ = 0;
  for (size_t i = 0; i < ny; i++)
    differ += memcmp(&y[i], &y_load[i], 4) != 0;
  CHECK(differ == 0, "%s: %zu of %zu outputs differ from the dequantised-at-load product", name,
        differ, ny);
  /* a scratch under one row of w is refused, not overrun (F32 needs none) */
  CHECK(type == GGUF_TENSOR_F32 || B->ops->matmul_blocks(B, dy, dx, dw, type, NULL, rows, out, in,
                                                         0, scratch, (size_t)in - 1) != 0,
        "%s: a scratch of in - 1 floats was accepted", name);
  B->ops->free(B, dx), B->ops->free(B, dw), B->ops->free(B, db), B->ops->free(B, dy);
  B->ops->free(B, dwf), B->ops->free(B, dy_load), B->ops->free(B, scratch);
  free(x), free(wf), free(w), free(b), free(y), free(y_load), free(y0), free(ref);
}

/* Every type the backends multiply in their blocks, in shapes of one and of
 * several tiles (a ragged last one), with and without bias and
 * accumulation; a type or row width they cannot is refused. */
static void test_matmul_blocks_all(void) {
  static const uint32_t types[] = {GGUF_TENSOR_Q8_0, GGUF_TENSOR_Q4_0, GGUF_TENSOR_Q4_1,
                                   GGUF_TENSOR_Q5_0, GGUF_TENSOR_Q5_1, GGUF_TENSOR_Q4_K,
                                   GGUF_TENSOR_Q5_K, GGUF_TENSOR_Q6_K, GGUF_TENSOR_F16,
                                   GGUF_TENSOR_BF16, GGUF_TENSOR_F32};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    test_matmul_blocks(types[i], 37, 53, 512, 0, 0, 53);
    test_matmul_blocks(types[i], 5, 300, 256, 1, 1, 7);
    test_matmul_blocks(types[i], 1, 40, 768, 1, 0, 40);
    test_matmul_blocks(types[i], 19, 1000, 256, 1, 0, 96); /* an unembedding's tiles: 11 of 91 */
    /* a batch of few rows: w in tiles of 1 MiB of fp32 (3 of 700 rows), a thread each, with a
     * scratch for all of w, and for one tile only (one thread at work, the others idle) */
    test_matmul_blocks(types[i], 3, 2100, 256, 1, 0, 2100);
    test_matmul_blocks(types[i], 3, 2100, 256, 0, 1, 1000);
  }
  float *s = B->ops->alloc(B, 4096 * 4), *y = B->ops->alloc(B, 64 * 4), *x = B->ops->alloc(B, 256);
  CHECK(B->ops->matmul_blocks(B, y, x, s, GGUF_TENSOR_IQ2_XS, NULL, 1, 1, 256, 0, s, 4096) != 0,
        "matmul_blocks: IQ2_XS was accepted");
  CHECK(B->ops->matmul_blocks(B, y, x, s, GGUF_TENSOR_Q4_K, NULL, 1, 1, 32, 0, s, 4096) != 0,
        "matmul_blocks: Q4_K rows of 32 were accepted");
  B->ops->free(B, s), B->ops->free(B, y), B->ops->free(B, x);
}

/* column_products: rows of random spans (none, one column, a head's
 * width, several apart, as a group's; heads at one of two places, so that
 * rows share their columns), ordered by column as the engine orders them, against
 * the double sum over the decoded weights (1e-5 of the scale); rows without
 * spans untouched; each row's floats, alone in a call, bit for bit those of
 * the whole table, and those of the decoded weights given as F32. */
static void test_column_products(uint32_t type, int rows, int out, int in, int width) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  const size_t row_blocks = (size_t)in / tt->block_size, row_bytes = row_blocks * tt->type_size;
  const size_t nx = (size_t)rows * in, ny = (size_t)rows * out;
  float *x = malloc(nx * 4), *wf = malloc((size_t)out * in * 4), *y0 = malloc(ny * 4);
  float *y = malloc(ny * 4), *y1 = malloc(ny * 4);
  uint8_t *w = malloc((size_t)out * row_bytes);
  double *ref = malloc(ny * 8);
  int *order = malloc(sizeof(int) * rows);
  column_span_t *spans = malloc(sizeof(column_span_t) * (size_t)rows * 4);
  fill(x, nx, 1), fill(y0, ny, 1);
  random_blocks(type, w, (size_t)out * row_blocks, rnd);
  tt->decode(w, wf, (size_t)out * row_blocks);
  for (int r = 0; r < rows; r++)
    order[r] = r;
  for (int r = rows - 1; r > 0; r--) {
    const int j = (int)((rnd() + 1.0) / 2.0 * (r + 1)) % (r + 1), t = order[r];
    order[r] = order[j], order[j] = t;
  }
  int n = 0;
  for (int i = 0; i < rows; i++) {
    const int r = order[i], kind = r % 4; /* 0: none, 1: a column, 2: a head, 3: three heads */
    const int quarter = in / 4;
    for (int k = 0; k < (kind == 3 ? 3 : kind != 0); k++) {
      const int wide = kind == 1 ? 1 : width;
      const int lo = k * quarter, room = quarter - wide; /* span k lies in quarter k */
      /* a head at one of two places: rows of the same columns, grouped below */
      const int c0 = lo + (kind == 1 ? (int)((rnd() + 1.0) / 2.0 * (room + 1)) % (room + 1)
                                     : (rnd() < 0.0 ? 0 : room));
      spans[n++] = (column_span_t){.row = r, .col0 = c0, .col1 = c0 + wide};
    }
  }
  /* the engine's order: rows by their first column (ties by row), so rows of
   * the same columns follow each other (the op takes them in groups) */
  column_span_t *sorted = malloc(sizeof(column_span_t) * (size_t)(n > 0 ? n : 1));
  for (int done = 0; done < n;) {
    int best = -1, best_end = -1;
    for (int i = 0; i < n;) { /* the least run not yet taken (col0 < 0: taken) */
      int end = i + 1;
      while (end < n && spans[end].row == spans[i].row)
        end++;
      if (spans[i].col0 >= 0 &&
          (best < 0 || spans[i].col0 < spans[best].col0 ||
           (spans[i].col0 == spans[best].col0 && spans[i].row < spans[best].row)))
        best = i, best_end = end;
      i = end;
    }
    for (int k = best; k < best_end; k++) {
      sorted[done++] = spans[k];
      spans[k].col0 = -1;
    }
  }
  memcpy(spans, sorted, sizeof(column_span_t) * (size_t)n);
  free(sorted);
  for (size_t i = 0; i < ny; i++)
    ref[i] = y0[i];
  for (int i = 0; i < n; i++)
    for (int o = 0; o < out; o++) {
      double sum = 0.0;
      for (int c = spans[i].col0; c < spans[i].col1; c++)
        sum += (double)x[(size_t)spans[i].row * in + c] * wf[(size_t)o * in + c];
      ref[(size_t)spans[i].row * out + o] += sum;
    }
  float *dx = dev(x, nx * 4), *dy = dev(y0, ny * 4);
  uint8_t *dw = dev(w, (size_t)out * row_bytes);
  column_span_t *ds = dev(spans, sizeof(column_span_t) * (size_t)(n > 0 ? n : 1));
  run(B->ops->column_products(B, dy, dx, dw, type, ds, n, out, in), "column_products");
  back(y, dy, ny * 4);
  char name[64];
  snprintf(name, sizeof(name), "cols_%s %dx%d", tt->name, out, in);
  compare(name, y, ref, ny, 1e-5);
  size_t touched = 0, differ = 0;
  for (int r = 0; r < rows; r++)
    for (int o = 0; r % 4 == 0 && o < out; o++)
      touched += memcmp(&y[(size_t)r * out + o], &y0[(size_t)r * out + o], 4) != 0;
  CHECK(touched == 0, "%s: %zu outputs of rows without spans changed", name, touched);
  run(B->ops->upload(B, dy, y0, ny * 4), "upload");
  for (int i = 0; i < n;) { /* each row alone */
    int end = i + 1;
    while (end < n && spans[end].row == spans[i].row)
      end++;
    run(B->ops->column_products(B, dy, dx, dw, type, ds + i, end - i, out, in),
        "column_products (a row)");
    i = end;
  }
  back(y1, dy, ny * 4);
  for (size_t i = 0; i < ny; i++)
    differ += memcmp(&y[i], &y1[i], 4) != 0;
  CHECK(differ == 0, "%s: %zu of %zu outputs differ between rows alone and the table", name, differ,
        ny);
  /* the decoded weights as F32 give the same floats (as matmul_blocks does) */
  float *dwf = dev(wf, (size_t)out * in * 4);
  run(B->ops->upload(B, dy, y0, ny * 4) ||
          B->ops->column_products(B, dy, dx, dwf, GGUF_TENSOR_F32, ds, n, out, in),
      "column_products F32");
  back(y1, dy, ny * 4);
  differ = 0;
  for (size_t i = 0; i < ny; i++)
    differ += memcmp(&y[i], &y1[i], 4) != 0;
  CHECK(differ == 0, "%s: %zu of %zu outputs differ from the decoded weights' as F32", name, differ,
        ny);
  B->ops->free(B, dwf);
  /* a type with no columns to read, and rows not in whole blocks, are refused */
  CHECK(B->ops->column_products(B, dy, dx, dw, GGUF_TENSOR_IQ2_XS, ds, n, out, in) != 0,
        "%s: IQ2_XS was accepted", name);
  CHECK(tt->block_size == 1 ||
            B->ops->column_products(B, dy, dx, dw, type, ds, n, out, in - 1) != 0,
        "%s: rows of %d were accepted", name, in - 1);
  B->ops->free(B, dx), B->ops->free(B, dy), B->ops->free(B, dw), B->ops->free(B, ds);
  free(x), free(wf), free(y0), free(y), free(y1), free(w), free(ref), free(order), free(spans);
}

static void test_column_products_all(void) {
  static const uint32_t types[] = {GGUF_TENSOR_F32,  GGUF_TENSOR_BF16, GGUF_TENSOR_F16,
                                   GGUF_TENSOR_Q8_0, GGUF_TENSOR_Q4_0, GGUF_TENSOR_Q4_1,
                                   GGUF_TENSOR_Q5_0, GGUF_TENSOR_Q5_1, GGUF_TENSOR_Q4_K,
                                   GGUF_TENSOR_Q5_K, GGUF_TENSOR_Q6_K};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    test_column_products(types[i], 37, 96, 1024, 64); /* a down projection's shape, heads of 64 */
    test_column_products(types[i], 9, 577, 512, 48);  /* spans across block edges */
    test_column_products(types[i], 6, 64, 2048, 300); /* spans of two pieces, unaligned */
  }
  test_column_products(GGUF_TENSOR_F32, 70, 576, 1536, 64); /* SmolLM2's MLP, no blocks */
  test_column_products(GGUF_TENSOR_F32, 12, 40, 12, 2);     /* tiny */
}

/* One of test_matmul_batch_invariance's products on rows [r0, r0 + rows)
 * of x into the same rows of y (from y0 where it accumulates). */
typedef struct {
  int out, in;
  const float *x, *y0, *wf, *bias;
  const uint16_t *wh;
  const uint8_t *wq;
  float *y, *scratch;
  size_t scratch_floats;
} invariance_t;

static int invariance_product(const invariance_t *t, int kind, int r0, int rows) {
  const float *x = t->x + (size_t)r0 * t->in;
  float *y = t->y + (size_t)r0 * t->out;
  const int out = t->out, in = t->in;
  if (B->ops->upload(B, y, t->y0 + (size_t)r0 * out, sizeof(float) * (size_t)rows * out))
    return -1;
  switch (kind) {
  case 0:
    return B->ops->matmul(B, y, x, t->wf, t->bias, rows, out, in, 0);
  case 1:
    return B->ops->matmul_blocks(B, y, x, t->wq, GGUF_TENSOR_Q4_1, NULL, rows, out, in, 1,
                                 t->scratch, t->scratch_floats);
  case 2:
    return B->ops->matmul_blocks(B, y, x, t->wf, GGUF_TENSOR_F32, t->bias, rows, out, in, 0, NULL,
                                 t->scratch_floats);
  default:
    return B->ops->matmul_bf16(B, y, x, t->wh, NULL, rows, out, in, 1, t->scratch,
                               t->scratch_floats);
  }
}

/* A row's product does not depend on the batch it sits in. Each of N_ROWS
 * rows alone, then inside batches of 1..70 rows and some larger (under and
 * over the CPU's small-batch tiling, at offsets that move it within the
 * batch), for matmul, matmul_blocks (Q4_1 tiles decoded into a scratch of a
 * third of w's rows; F32 rows where they are) and matmul_bf16, with a bias
 * and accumulation: bit for bit on a backend that promises it
 * (ops->batch_invariant, the CPU), else each batch's rows within
 * BATCH_PRODUCT_BOUND of the same rows alone (cuBLAS picks its kernel by
 * the shape: another order of sums), the bitwise differences counted. */
#define BATCH_PRODUCT_BOUND 1e-5 /* relative: the fp32 product's bound */
static void test_matmul_batch_invariance(int out, int in) {
  enum { N_ROWS = 200, N_KINDS = 4 };
  static const char *names[N_KINDS] = {"matmul+b", "mm_Q4_1+acc", "mm_F32+b", "mm_bf16+acc"};
  const gguf_quant_type_t *q = gguf_quant_type(GGUF_TENSOR_Q4_1);
  const size_t row_blocks = (size_t)in / q->block_size, nw = (size_t)out * in;
  const size_t wq_bytes = row_blocks * q->type_size * out;
  const size_t nx = (size_t)N_ROWS * in, ny = (size_t)N_ROWS * out, ns = (size_t)(out / 3) * in;
  float *x = malloc(nx * 4), *wf = malloc(nw * 4), *b = malloc(out * 4), *y0 = malloc(ny * 4);
  float *alone = malloc(ny * 4), *y = malloc(ny * 4);
  uint16_t *wh = malloc(nw * 2);
  uint8_t *wq = malloc(wq_bytes);
  fill(x, nx, 1), fill(wf, nw, 1), fill(b, out, 1), fill(y0, ny, 1);
  random_blocks(GGUF_TENSOR_Q4_1, wq, row_blocks * out, rnd);
  for (size_t i = 0; i < nw; i++)
    wh[i] = bf16_from_float(wf[i]);
  invariance_t t = {.out = out,
                    .in = in,
                    .x = dev(x, nx * 4),
                    .y0 = y0,
                    .wf = dev(wf, nw * 4),
                    .bias = dev(b, out * 4),
                    .wh = dev(wh, nw * 2),
                    .wq = dev(wq, wq_bytes),
                    .y = dev(y0, ny * 4),
                    .scratch = B->ops->alloc(B, ns * 4),
                    .scratch_floats = ns};
  run(!t.scratch, "alloc scratch");
  for (int kind = 0; kind < N_KINDS; kind++) {
    for (int r = 0; r < N_ROWS; r++)
      run(invariance_product(&t, kind, r, 1), names[kind]);
    back(alone, t.y, ny * 4);
    int batches = 0, differ = 0, first_rows = 0, first_offset = 0;
    double worst = 0; /* the largest relative error of a batch against its rows alone */
    for (int rows = 1; rows <= N_ROWS; rows += rows < 70 ? 1 : 43) {
      const int r0 = (rows * 7) % (N_ROWS - rows + 1);
      run(invariance_product(&t, kind, r0, rows), names[kind]);
      back(y, t.y, ny * 4);
      const int bad = memcmp(y + (size_t)r0 * out, alone + (size_t)r0 * out,
                             sizeof(float) * (size_t)rows * out) != 0;
      worst = fmax(worst, check_rel_error_f32(y + (size_t)r0 * out, alone + (size_t)r0 * out,
                                              (size_t)rows * out));
      if (bad && !differ)
        first_rows = rows, first_offset = r0;
      differ += bad;
      batches++;
    }
    const int bitwise = B->ops->batch_invariant;
    const int ok = bitwise ? differ == 0 : worst <= BATCH_PRODUCT_BOUND;
    printf("%-14s batch invariance: %d of %d batches differ from their rows alone, rel err %.3g "
           "(bound: %s)  %s\n",
           names[kind], differ, batches, worst, bitwise ? "bit for bit" : "1e-5",
           ok ? "ok" : "FAIL");
    if (bitwise)
      CHECK(differ == 0,
            "%s (out %d, in %d): %d of %d batches differ bitwise from their rows computed alone "
            "(first: %d rows from row %d)",
            names[kind], out, in, differ, batches, first_rows, first_offset);
    else
      CHECK(worst <= BATCH_PRODUCT_BOUND,
            "%s (out %d, in %d): batches against their rows computed alone: rel err %.3g above "
            "the bound %.0e",
            names[kind], out, in, worst, BATCH_PRODUCT_BOUND);
  }
  B->ops->free(B, (void *)t.x), B->ops->free(B, (void *)t.wf), B->ops->free(B, (void *)t.bias);
  B->ops->free(B, (void *)t.wh), B->ops->free(B, (void *)t.wq), B->ops->free(B, t.y);
  B->ops->free(B, t.scratch);
  free(x), free(wf), free(b), free(y0), free(alone), free(y), free(wh), free(wq);
}

/* Uploads and downloads of many sizes, in sequence (the CUDA backend stages
 * them through a ring of pinned segments: wrap-around and direct copies of
 * large buffers), each checked exactly after all were queued. */
static void test_transfers(void) {
  const size_t sizes[] = {1,       1000,    300000,  2000000, 2000000, 2000000,
                          5000000, 2000000, 7000000, 3,       2000000, 2000000};
  const int n = sizeof(sizes) / sizeof(sizes[0]);
  float *host[12], *d[12];
  for (int i = 0; i < n; i++) {
    host[i] = malloc(sizes[i] * 4);
    fill(host[i], sizes[i], 10);
    d[i] = B->ops->alloc(B, sizes[i] * 4);
    run(!d[i] || B->ops->upload(B, d[i], host[i], sizes[i] * 4), "upload");
  }
  int bad = 0;
  for (int i = 0; i < n; i++) {
    float *back_ = malloc(sizes[i] * 4);
    back(back_, d[i], sizes[i] * 4);
    bad += memcmp(back_, host[i], sizes[i] * 4) != 0;
    free(back_), free(host[i]);
    B->ops->free(B, d[i]);
  }
  printf("%s transfers (%d buffers, 4 B to 28 MB)\n", bad ? "FAIL" : "  ok", n);
  CHECK(bad == 0, "transfers: %d of %d buffers came back changed", bad, n);
  const size_t avail = B->ops->memory_available(B);
  CHECK(B->host_memory || avail != 0, "memory_available: a device backend reports no free memory");
}

static void test_norms(int rows, int d) {
  size_t n = (size_t)rows * d;
  float *x = malloc(n * 4), *g = malloc(d * 4), *be = malloc(d * 4), *y = malloc(n * 4),
        *s = malloc(rows * 4);
  double *ref = malloc(n * 8), *sref = malloc(rows * 8);
  fill(x, n, 3), fill(g, d, 1), fill(be, d, 1);
  for (size_t i = 0; i < n; i++)
    x[i] += 0.5f; /* a non-zero mean */
  float *dx = dev(x, n * 4), *dg = dev(g, d * 4), *db = dev(be, d * 4), *dy = dev(y, n * 4),
        *ds = dev(s, rows * 4);
  for (int kind = 0; kind < 2; kind++) {
    for (int r = 0; r < rows; r++) {
      const float *xr = x + (size_t)r * d;
      double mean = 0, var = 0;
      for (int i = 0; i < d; i++)
        mean += xr[i];
      mean = kind == 0 ? mean / d : 0.0;
      for (int i = 0; i < d; i++)
        var += (xr[i] - mean) * (xr[i] - mean);
      double inv = 1.0 / sqrt(var / d + 1e-5);
      sref[r] = inv;
      for (int i = 0; i < d; i++)
        ref[(size_t)r * d + i] = (xr[i] - mean) * inv * g[i] + (kind == 0 ? be[i] : 0.0);
    }
    if (kind == 0)
      run(B->ops->layernorm(B, dy, ds, dx, dg, db, rows, d, 1e-5f), "layernorm");
    else
      run(B->ops->rmsnorm(B, dy, ds, dx, dg, rows, d, 1e-5f), "rmsnorm");
    back(y, dy, n * 4);
    back(s, ds, rows * 4);
    compare(kind == 0 ? "layernorm" : "rmsnorm", y, ref, n, 1e-5);
    compare(kind == 0 ? "layernorm.scale" : "rmsnorm.scale", s, sref, rows, 1e-5);
  }
  B->ops->free(B, dx), B->ops->free(B, dg), B->ops->free(B, db), B->ops->free(B, dy);
  B->ops->free(B, ds);
  free(x), free(g), free(be), free(y), free(s), free(ref), free(sref);
}

/* head_layernorm: in place, every head of every row LayerNormed over its
 * head_dim with that head's own weights (and biases). */
static void test_head_layernorm(int rows, int heads, int hd, int bias) {
  const size_t n = (size_t)rows * heads * hd, w = (size_t)heads * hd;
  float *x = malloc(n * 4), *g = malloc(w * 4), *be = malloc(w * 4);
  double *ref = malloc(n * 8);
  fill(x, n, 3), fill(g, w, 1.5), fill(be, w, 1);
  for (size_t i = 0; i < n; i++)
    x[i] += (float)(i / hd % 7) - 3.0f; /* each head's own non-zero mean */
  for (size_t r = 0; r < (size_t)rows * heads; r++) {
    const float *xr = x + r * hd, *gh = g + (r % heads) * hd, *bh = be + (r % heads) * hd;
    double mean = 0, var = 0;
    for (int i = 0; i < hd; i++)
      mean += xr[i];
    mean /= hd;
    for (int i = 0; i < hd; i++)
      var += (xr[i] - mean) * (xr[i] - mean);
    const double inv = 1.0 / sqrt(var / hd + 1e-5);
    for (int i = 0; i < hd; i++)
      ref[r * hd + i] = (xr[i] - mean) * inv * gh[i] + (bias ? bh[i] : 0.0);
  }
  float *dx = dev(x, n * 4), *dg = dev(g, w * 4), *db = dev(be, w * 4);
  run(B->ops->head_layernorm(B, dx, dg, bias ? db : NULL, rows, heads, hd, 1e-5f),
      "head_layernorm");
  back(x, dx, n * 4);
  compare(bias ? "head_layernorm+b" : "head_layernorm", x, ref, n, 1e-5);
  B->ops->free(B, dx), B->ops->free(B, dg), B->ops->free(B, db);
  free(x), free(g), free(be), free(ref);
}

/* scaled: every pair's frequency multiplied by its own factor in [0.5, 1.5)
 * (as the scalings do) and cos and sin by attn_scale (yarn). */
static void test_rope(int rows, int heads, int hd, int rot, float theta, int scaled,
                      float attn_scale) {
  size_t n = (size_t)rows * heads * hd;
  float *x = malloc(n * 4), *freq = malloc((size_t)rot / 2 * 4);
  int *pos = malloc(rows * 4);
  double *ref = malloc(n * 8);
  fill(x, n, 1);
  for (int i = 0; i < rot / 2; i++)
    freq[i] = (float)(pow(theta, -2.0 * i / rot) * (scaled ? 1.0 + rnd() * 0.5 : 1.0));
  for (int r = 0; r < rows; r++) /* runs of a position (an ablation pass's rows) and changes */
    pos[r] = r > 0 && rnd() < 0.0 ? pos[r - 1] : (int)((rnd() + 1.0) * 1000);
  for (int r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++) {
      const float *xh = x + ((size_t)r * heads + h) * hd;
      double *rh = ref + ((size_t)r * heads + h) * hd;
      for (int i = 0; i < hd; i++)
        rh[i] = xh[i];
      /* rotate_half: out = (x*cos + concat(-x2, x1)*sin) * attn_scale, pair i mod rot/2 */
      for (int i = 0; i < rot; i++) {
        int j = i % (rot / 2);
        double a = pos[r] * (double)freq[j];
        double other = i < rot / 2 ? -xh[i + rot / 2] : xh[i - rot / 2];
        rh[i] = (xh[i] * cos(a) + other * sin(a)) * attn_scale;
      }
    }
  float *df = dev(freq, (size_t)rot / 2 * 4);
  float *dx = dev(x, n * 4);
  int *dp = dev(pos, rows * 4);
  run(B->ops->rope(B, dx, dp, df, rows, heads, hd, rot, attn_scale), "rope");
  back(x, dx, n * 4);
  compare(scaled ? "rope.scaled" : rot == hd ? "rope" : "rope.partial", x, ref, n, 2e-5);
  B->ops->free(B, dx), B->ops->free(B, dp), B->ops->free(B, df);
  free(x), free(pos), free(ref), free(freq);
}

/* Three sequences packed. With split, each row reads its first keys from k/v
 * and the rest from a second copy (k2/v2), as a variant reads its clean
 * prefix and its own suffix. */
/* softcap > 0: scores capped; window > 0: each row's last `window` keys. */
static void test_attention(int heads, int kv_heads, int hd, int split, float softcap, int window) {
  const int lens[3] = {5, 17, 1}, n_seq = 3;
  int rows = 0;
  for (int s = 0; s < n_seq; s++)
    rows += lens[s];
  size_t nq = (size_t)rows * heads * hd, nkv = (size_t)rows * kv_heads * hd;
  float *q = malloc(nq * 4), *k = malloc(nkv * 4), *v = malloc(nkv * 4), *o = malloc(nq * 4);
  int *ks = malloc(rows * 4), *nk = malloc(rows * 4), *ks2 = malloc(rows * 4),
      *nk2 = malloc(rows * 4);
  double *ref = malloc(nq * 8);
  fill(q, nq, 2), fill(k, nkv, 2), fill(v, nkv, 1);
  int r = 0;
  for (int s = 0; s < n_seq; s++)
    for (int t = 0; t < lens[s]; t++, r++)
      ks[r] = r - t, nk[r] = t + 1;
  double *p = malloc(rows * 8);
  /* a scale other than 1/sqrt(hd) (query_pre_attn_scalar) with the soft-cap */
  const double scale = softcap > 0 ? 1.0 / sqrt(hd * 0.75) : 1.0 / sqrt(hd);
  for (r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++) {
      int g = h / (heads / kv_heads);
      double mx = -1e300, sum = 0;
      const int j0 = window > 0 && nk[r] > window ? nk[r] - window : 0;
      for (int j = j0; j < nk[r]; j++) {
        double s = 0;
        for (int i = 0; i < hd; i++)
          s += (double)q[((size_t)r * heads + h) * hd + i] *
               k[((size_t)(ks[r] + j) * kv_heads + g) * hd + i];
        p[j] = s * scale;
        if (softcap > 0)
          p[j] = softcap * tanh(p[j] / softcap);
        mx = fmax(mx, p[j]);
      }
      for (int j = j0; j < nk[r]; j++)
        sum += (p[j] = exp(p[j] - mx));
      for (int i = 0; i < hd; i++) {
        double acc = 0;
        for (int j = j0; j < nk[r]; j++)
          acc += p[j] / sum * v[((size_t)(ks[r] + j) * kv_heads + g) * hd + i];
        ref[((size_t)r * heads + h) * hd + i] = acc;
      }
    }
  for (r = 0; r < rows; r++) { /* the first half of each range from k, the rest from k2 */
    int first = split ? (nk[r] + 1) / 2 : nk[r];
    ks2[r] = ks[r] + first;
    nk2[r] = nk[r] - first;
    nk[r] = first;
  }
  float *dq = dev(q, nq * 4), *dk = dev(k, nkv * 4), *dv = dev(v, nkv * 4), *dout = dev(o, nq * 4);
  float *dk2 = dev(k, nkv * 4), *dv2 = dev(v, nkv * 4);
  int *dks = dev(ks, rows * 4), *dnk = dev(nk, rows * 4), *dks2 = dev(ks2, rows * 4),
      *dnk2 = dev(nk2, rows * 4);
  run(B->ops->attention(B, dout, dq, dk, dv, dks, dnk, split ? dk2 : NULL, split ? dv2 : NULL, dks2,
                        dnk2, rows, heads, kv_heads, hd, (float)scale, softcap, window),
      "attention");
  back(o, dout, nq * 4);
  char name[64];
  snprintf(name, sizeof(name), "attention%s%s%s%s", split ? ".split" : "",
           kv_heads < heads ? ".gqa" : "", softcap > 0 ? ".softcap" : "",
           window > 0 ? ".window" : "");
  compare(name, o, ref, nq, 1e-5);
  B->ops->free(B, dq), B->ops->free(B, dk), B->ops->free(B, dv), B->ops->free(B, dout);
  B->ops->free(B, dk2), B->ops->free(B, dv2), B->ops->free(B, dks), B->ops->free(B, dnk);
  B->ops->free(B, dks2), B->ops->free(B, dnk2);
  free(q), free(k), free(v), free(o), free(ks), free(nk), free(ks2), free(nk2), free(ref), free(p);
}

/* An intervention table: set, scale and add on disjoint column ranges. */
/* attention_rows: chosen (row, head)s of three packed sequences read
 * their pattern, or get their output from a given pattern row (random
 * weights, not a distribution: the op takes any row) or from their own
 * pattern scaled; every other output stays as it was. Reference: the
 * pattern in double, as test_attention's softmax. */
static void test_attention_rows(int heads, int kv_heads, int hd, int split, float softcap,
                                int window) {
  const int lens[3] = {6, 13, 1}, n_seq = 3, rows = 20;
  const size_t nq = (size_t)rows * heads * hd, nkv = (size_t)rows * kv_heads * hd;
  float *q = malloc(nq * 4), *k = malloc(nkv * 4), *v = malloc(nkv * 4), *o = malloc(nq * 4);
  int ks[20], nk[20], ks2[20], nk2[20];
  fill(q, nq, 2), fill(k, nkv, 2), fill(v, nkv, 1), fill(o, nq, 1);
  for (int s = 0, r = 0; s < n_seq; s++)
    for (int t = 0; t < lens[s]; t++, r++)
      ks[r] = r - t, nk[r] = t + 1;
  /* entries: every third (row, head), kinds in turn; patterns of 20 floats each */
  pattern_entry_t e[20 * 16];
  int n = 0;
  for (int r = 0; r < rows; r++)
    for (int h = 0; h < heads; h++)
      if ((r * heads + h) % 3 == 0 && n < 20 * 16) {
        e[n] = (pattern_entry_t){
            .row = r, .head = h, .kind = n % 3, .offset = n * 20, .alpha = (float)rnd()};
        n++;
      }
  const size_t np = (size_t)n * 20;
  float *pat = malloc(np * 4);
  double *ref = malloc(nq * 8), *ref_pat = malloc(np * 8), p[20];
  fill(pat, np, 1);
  for (size_t i = 0; i < nq; i++)
    ref[i] = o[i];
  for (size_t i = 0; i < np; i++)
    ref_pat[i] = pat[i];
  const double scale = softcap > 0 ? 1.0 / sqrt(hd * 0.75) : 1.0 / sqrt(hd);
  for (int i = 0; i < n; i++) {
    const int r = e[i].row, h = e[i].head, g = h / (heads / kv_heads);
    const int j0 = window > 0 && nk[r] > window ? nk[r] - window : 0;
    double mx = -1e300, sum = 0;
    for (int j = 0; j < nk[r]; j++) {
      double sc = 0;
      for (int c = 0; c < hd; c++)
        sc += (double)q[((size_t)r * heads + h) * hd + c] *
              k[((size_t)(ks[r] + j) * kv_heads + g) * hd + c];
      p[j] = softcap > 0 ? softcap * tanh(sc * scale / softcap) : sc * scale;
      if (j >= j0)
        mx = fmax(mx, p[j]);
    }
    for (int j = 0; j < nk[r]; j++)
      sum += (p[j] = j < j0 ? 0.0 : exp(p[j] - mx));
    for (int j = 0; j < nk[r]; j++)
      p[j] /= sum;
    if (e[i].kind == PATTERN_READ) {
      for (int j = 0; j < nk[r]; j++)
        ref_pat[e[i].offset + j] = p[j];
      continue;
    }
    for (int c = 0; c < hd; c++) {
      double acc = 0;
      for (int j = 0; j < nk[r]; j++)
        acc += (e[i].kind == PATTERN_SET ? (double)pat[e[i].offset + j] : e[i].alpha * p[j]) *
               v[((size_t)(ks[r] + j) * kv_heads + g) * hd + c];
      ref[((size_t)r * heads + h) * hd + c] = acc;
    }
  }
  for (int r = 0; r < rows; r++) { /* the first half of each range from k, the rest from k2 */
    const int first = split ? (nk[r] + 1) / 2 : nk[r];
    ks2[r] = ks[r] + first;
    nk2[r] = nk[r] - first;
    nk[r] = first;
  }
  float *dq = dev(q, nq * 4), *dk = dev(k, nkv * 4), *dv = dev(v, nkv * 4), *dout = dev(o, nq * 4);
  float *dk2 = dev(k, nkv * 4), *dv2 = dev(v, nkv * 4), *dpat = dev(pat, np * 4);
  int *dks = dev(ks, sizeof ks), *dnk = dev(nk, sizeof nk), *dks2 = dev(ks2, sizeof ks2),
      *dnk2 = dev(nk2, sizeof nk2);
  pattern_entry_t *de = dev(e, sizeof(e[0]) * n);
  run(B->ops->attention_rows(B, dout, dpat, de, n, dq, dk, dv, dks, dnk, split ? dk2 : NULL,
                             split ? dv2 : NULL, split ? dks2 : NULL, split ? dnk2 : NULL, heads,
                             kv_heads, hd, (float)scale, softcap, window),
      "attention_rows");
  back(o, dout, nq * 4);
  back(pat, dpat, np * 4);
  char name[64];
  snprintf(name, sizeof(name), "attn_rows%s%s%s%s", split ? ".split" : "",
           kv_heads < heads ? ".gqa" : "", softcap > 0 ? ".softcap" : "",
           window > 0 ? ".window" : "");
  compare(name, o, ref, nq, 1e-5);
  snprintf(name, sizeof(name), "attn_rows.read%s%s", split ? ".split" : "",
           window > 0 ? ".window" : "");
  compare(name, pat, ref_pat, np, 1e-5);
  B->ops->free(B, dq), B->ops->free(B, dk), B->ops->free(B, dv), B->ops->free(B, dout);
  B->ops->free(B, dk2), B->ops->free(B, dv2), B->ops->free(B, dpat), B->ops->free(B, dks);
  B->ops->free(B, dnk), B->ops->free(B, dks2), B->ops->free(B, dnk2), B->ops->free(B, de);
  free(q), free(k), free(v), free(o), free(pat), free(ref), free(ref_pat);
}

static void test_intervene(int rows, int width) {
  size_t n = (size_t)rows * width;
  float *x = malloc(n * 4), *src = malloc(n * 4), *y = malloc(n * 4);
  double *ref = malloc(n * 8);
  fill(x, n, 1), fill(src, n, 1);
  for (size_t i = 0; i < n; i++)
    ref[i] = x[i];
  intervention_t e[64];
  int ne = 0;
  for (int r = 0; r < rows && ne < 60; r += 2) {
    int c0 = (r * 7) % (width / 2), c1 = c0 + 1 + (r % 5), off = (r * 13) % (int)(n - width);
    int kind = r % 3;
    e[ne++] = (intervention_t){r, c0, c1, kind, off, 0.25f * (r + 1)};
    for (int c = c0; c < c1; c++) {
      double *t = &ref[(size_t)r * width + c];
      *t = kind == INTERVENE_SET     ? src[off + c - c0]
           : kind == INTERVENE_SCALE ? *t * (0.25f * (r + 1))
                                     : *t + src[off + c - c0];
    }
  }
  e[ne++] = (intervention_t){1, 0, width, INTERVENE_SCALE, 0, 0.0f}; /* a zero ablation */
  for (int c = 0; c < width; c++)
    ref[width + c] = 0.0;
  float *dx = dev(x, n * 4), *ds = dev(src, n * 4);
  intervention_t *de = dev(e, sizeof(intervention_t) * ne);
  run(B->ops->intervene(B, dx, width, de, ne, ds), "intervene");
  back(y, dx, n * 4);
  compare("intervene", y, ref, n, 1e-7);
  B->ops->free(B, dx), B->ops->free(B, ds), B->ops->free(B, de);
  free(x), free(src), free(y), free(ref);
}

static void test_row_dots(int n_rows, int n_dirs, int n, int d) {
  float *x = malloc((size_t)n_rows * d * 4), *dirs = malloc((size_t)n_dirs * d * 4);
  float *out = calloc(2 * n, 4);
  int *oi = malloc(n * 4), *xr = malloc(n * 4), *dr = malloc(n * 4);
  double *ref = calloc(2 * n, 8);
  fill(x, (size_t)n_rows * d, 3), fill(dirs, (size_t)n_dirs * d, 1);
  for (int i = 0; i < n; i++) {
    oi[i] = 2 * i + 1, xr[i] = (i * 5 + 1) % n_rows, dr[i] = (i * 3) % n_dirs;
    double s = 0;
    for (int c = 0; c < d; c++)
      s += (double)x[(size_t)xr[i] * d + c] * dirs[(size_t)dr[i] * d + c];
    ref[oi[i]] = s;
  }
  float *dx = dev(x, (size_t)n_rows * d * 4), *dd = dev(dirs, (size_t)n_dirs * d * 4),
        *dout = dev(out, 2 * n * 4);
  int *doi = dev(oi, n * 4), *dxr = dev(xr, n * 4), *ddr = dev(dr, n * 4);
  run(B->ops->row_dots(B, dout, doi, dx, dxr, dd, ddr, n, d), "row_dots");
  back(out, dout, 2 * n * 4);
  compare("row_dots", out, ref, 2 * n, 1e-5);
  B->ops->free(B, dx), B->ops->free(B, dd), B->ops->free(B, dout), B->ops->free(B, doi);
  B->ops->free(B, dxr), B->ops->free(B, ddr);
  free(x), free(dirs), free(out), free(oi), free(xr), free(dr), free(ref);
}

static double act_ref(double t, activation_t a) {
  return a == ACT_GELU_TANH  ? 0.5 * t * (1 + tanh(sqrt(2 / M_PI) * (t + 0.044715 * t * t * t)))
         : a == ACT_GELU_ERF ? 0.5 * t * (1 + erf(t / sqrt(2)))
         : a == ACT_RELU     ? (t > 0 ? t : 0)
                             : t / (1 + exp(-t));
}

/* matmul_glu: against a double reference of act(x . w_gate^T) * (x .
 * w_up^T + b_up), and against the three calls it stands for (matmul, matmul,
 * swiglu or glu): bit for bit on a batch_invariant backend, else within
 * BATCH_PRODUCT_BOUND. Shapes over and under the CPU's small-batch rows
 * (64), with k across its KC blocks (768), ragged panels and tiles. */
static void test_matmul_glu(int rows, int out, int in, int bias, activation_t act) {
  const size_t nx = (size_t)rows * in, nw = (size_t)out * in, ny = (size_t)rows * out;
  float *x = malloc(nx * 4), *wg = malloc(nw * 4), *wu = malloc(nw * 4), *b = malloc(out * 4);
  float *y = malloc(ny * 4), *y3 = malloc(ny * 4);
  double *ref = malloc(ny * 8);
  fill(x, nx, 1), fill(wg, nw, 1.0 / sqrt(in)), fill(wu, nw, 1.0 / sqrt(in)), fill(b, out, 1);
  fill(y, ny, 100); /* gate and up start as garbage the op must not add to */
  for (int r = 0; r < rows; r++)
    for (int o = 0; o < out; o++) {
      double g = 0, u = bias ? b[o] : 0;
      for (int i = 0; i < in; i++) {
        g += (double)x[(size_t)r * in + i] * wg[(size_t)o * in + i];
        u += (double)x[(size_t)r * in + i] * wu[(size_t)o * in + i];
      }
      ref[(size_t)r * out + o] = act_ref(g, act) * u;
    }
  float *dx = dev(x, nx * 4), *dwg = dev(wg, nw * 4), *dwu = dev(wu, nw * 4), *db = dev(b, out * 4);
  float *dg = dev(y, ny * 4), *du = dev(y, ny * 4);
  run(B->ops->matmul_glu(B, dg, du, dx, dwg, dwu, bias ? db : NULL, rows, out, in, act),
      "matmul_glu");
  back(y, dg, ny * 4);
  char name[64];
  snprintf(name, sizeof(name), "mm_glu%s %d", bias ? "+b" : "", (int)act);
  compare(name, y, ref, ny, 1e-5);
  run(B->ops->matmul(B, dg, dx, dwg, NULL, rows, out, in, 0), "matmul gate");
  run(B->ops->matmul(B, du, dx, dwu, bias ? db : NULL, rows, out, in, 0), "matmul up");
  run(act == ACT_SILU ? B->ops->swiglu(B, dg, du, ny) : B->ops->glu(B, dg, du, ny, act), "glu");
  back(y3, dg, ny * 4);
  const int bitwise = B->ops->batch_invariant, same = memcmp(y, y3, ny * 4) == 0;
  const double e = check_rel_error_f32(y, y3, ny);
  const int ok = bitwise ? same : e <= BATCH_PRODUCT_BOUND;
  printf("%-14s against its three ops: %s, rel err %.3g (bound: %s)  %s\n", name,
         same ? "same bits" : "bits differ", e, bitwise ? "bit for bit" : "1e-5",
         ok ? "ok" : "FAIL");
  CHECK(ok,
        "matmul_glu (rows %d, out %d, in %d, act %d): against matmul, matmul and the glu: %s, "
        "rel err %.3g",
        rows, out, in, (int)act, same ? "same bits" : "bits differ", e);
  CHECK(B->ops->matmul_glu(B, dg, du, dx, dwg, dwu, NULL, rows, out, in, (activation_t)99) != 0,
        "matmul_glu took an unknown activation");
  B->ops->free(B, dx), B->ops->free(B, dwg), B->ops->free(B, dwu), B->ops->free(B, db);
  B->ops->free(B, dg), B->ops->free(B, du);
  free(x), free(wg), free(wu), free(b), free(y), free(y3), free(ref);
}

static void test_elementwise(size_t n) {
  float *x = malloc(n * 4), *u = malloc(n * 4), *y = malloc(n * 4);
  double *ref = malloc(n * 8);
  fill(x, n, 4), fill(u, n, 2);
  float *dx = dev(x, n * 4), *du = dev(u, n * 4);
  const char *names[] = {"gelu_tanh", "gelu_erf", "silu", "relu"};
  const activation_t acts[] = {ACT_GELU_TANH, ACT_GELU_ERF, ACT_SILU, ACT_RELU};
  for (int a = 0; a < 4; a++) {
    for (size_t i = 0; i < n; i++) {
      double t = x[i];
      ref[i] = acts[a] == ACT_GELU_TANH
                   ? 0.5 * t * (1 + tanh(sqrt(2 / M_PI) * (t + 0.044715 * t * t * t)))
               : acts[a] == ACT_GELU_ERF ? 0.5 * t * (1 + erf(t / sqrt(2)))
               : acts[a] == ACT_RELU     ? (t > 0 ? t : 0)
                                         : t / (1 + exp(-t));
    }
    float *dy = dev(x, n * 4);
    run(B->ops->activation(B, dy, n, acts[a]), names[a]);
    back(y, dy, n * 4);
    compare(names[a], y, ref, n, 1e-6);
    B->ops->free(B, dy);
  }
  /* NaN stays NaN through every activation, as in PyTorch (relu too: a
   * comparison with 0 that NaN fails gave 0) */
  for (int a = 0; a < 4; a++) {
    const float in[3] = {NAN, -1.0f, 2.0f};
    float out[3];
    float *dn = dev(in, sizeof in);
    run(B->ops->activation(B, dn, 3, acts[a]), names[a]);
    back(out, dn, sizeof out);
    CHECK(isnan(out[0]), "%s(NaN) = %g, not NaN", names[a], out[0]);
    B->ops->free(B, dn);
  }
  for (size_t i = 0; i < n; i++)
    ref[i] = (double)x[i] / (1 + exp(-(double)x[i])) * u[i];
  float *dg = dev(x, n * 4);
  run(B->ops->swiglu(B, dg, du, n), "swiglu");
  back(y, dg, n * 4);
  compare("swiglu", y, ref, n, 1e-6);
  for (int a = 0; a < 2; a++) { /* GeGLU with either GELU */
    for (size_t i = 0; i < n; i++) {
      double t = x[i];
      ref[i] = (acts[a] == ACT_GELU_TANH
                    ? 0.5 * t * (1 + tanh(sqrt(2 / M_PI) * (t + 0.044715 * t * t * t)))
                    : 0.5 * t * (1 + erf(t / sqrt(2)))) *
               u[i];
    }
    float *dy = dev(x, n * 4);
    run(B->ops->glu(B, dy, du, n, acts[a]), "glu");
    back(y, dy, n * 4);
    compare(a ? "glu gelu_erf" : "glu gelu_tanh", y, ref, n, 1e-6);
    B->ops->free(B, dy);
  }
  {
    const float alpha = 6.928203f, cap = 3.0f; /* sqrt(48); a cap that bites at |x| ~ 4 */
    float *dy = dev(x, n * 4);
    for (size_t i = 0; i < n; i++)
      ref[i] = (double)x[i] * alpha;
    run(B->ops->scale(B, dy, n, alpha), "scale");
    back(y, dy, n * 4);
    compare("scale", y, ref, n, 1e-7);
    B->ops->free(B, dy);
    dy = dev(x, n * 4);
    for (size_t i = 0; i < n; i++)
      ref[i] = cap * tanh((double)x[i] / cap);
    run(B->ops->softcap(B, dy, n, cap), "softcap");
    back(y, dy, n * 4);
    compare("softcap", y, ref, n, 1e-6);
    B->ops->free(B, dy);
  }
  for (size_t i = 0; i < n; i++)
    ref[i] = (double)x[i] + u[i];
  run(B->ops->add(B, dx, du, n), "add");
  back(y, dx, n * 4);
  compare("add", y, ref, n, 1e-7);
  B->ops->free(B, dx), B->ops->free(B, du), B->ops->free(B, dg);
  free(x), free(u), free(y), free(ref);
}

/* Activations at the edges of float: NaN stays NaN, very large inputs
 * saturate (silu and gelu to x or 0, softcap to +-cap), at every place of
 * an array whose length is not a multiple of a vector's. The last input is
 * a plain value among them (checked against its reference). */
static void test_elementwise_extremes(void) {
  static const float in[] = {NAN,   1e30f, -1e30f, 100.0f, -200.0f, 0.0f,
                             -0.0f, -NAN,  3e4f,   -3e4f,  0.5f};
  /* the last entry (PLAIN) is never read: that input is checked against plain[] */
  static const float silu_want[] = {NAN,  1e30f, 0.0f, 100.0f, 0.0f, 0.0f,
                                    0.0f, NAN,   3e4f, 0.0f,   0.0f};
  static const float cap_want[] = {NAN,  3.0f, -3.0f, 3.0f,  -3.0f, 0.0f,
                                   0.0f, NAN,  3.0f,  -3.0f, 0.0f};
  enum { N = sizeof(in) / sizeof(in[0]), PLAIN = N - 1 };
  _Static_assert(sizeof(silu_want) == sizeof(in) && sizeof(cap_want) == sizeof(in),
                 "one expected value per input");
  const char *names[] = {"silu", "gelu_tanh", "swiglu", "softcap"};
  const double t = 0.5, silu = t / (1 + exp(-t));
  const double plain[] = {silu, 0.5 * t * (1 + tanh(sqrt(2 / M_PI) * (t + 0.044715 * t * t * t))),
                          2 * silu, 3 * tanh(t / 3)};
  int bad = 0;
  for (int op = 0; op < 4; op++)
    for (int shift = 0; shift < N; shift += 3) { /* each value at several places */
      float x[N], y[N], up[N];
      for (int i = 0; i < N; i++)
        x[i] = in[(i + shift) % N], up[i] = 2.0f;
      float *dx = dev(x, sizeof(x)), *du = dev(up, sizeof(up));
      run(op == 0   ? B->ops->activation(B, dx, N, ACT_SILU)
          : op == 1 ? B->ops->activation(B, dx, N, ACT_GELU_TANH)
          : op == 2 ? B->ops->swiglu(B, dx, du, N)
                    : B->ops->softcap(B, dx, N, 3.0f),
          names[op]);
      back(y, dx, sizeof(y));
      for (int i = 0; i < N; i++) {
        const int j = (i + shift) % N;
        const float want = op == 3 ? cap_want[j] : op == 2 ? 2.0f * silu_want[j] : silu_want[j];
        const int ok = j == PLAIN    ? fabs(y[i] - plain[op]) <= 1e-6 * fabs(plain[op])
                       : isnan(want) ? isnan(y[i])
                                     : y[i] == want;
        bad += !ok;
        CHECK(ok, "%s(%g) = %.9g, want %.9g", names[op], x[i], y[i], j == PLAIN ? plain[op] : want);
      }
      B->ops->free(B, dx), B->ops->free(B, du);
    }
  printf("%s elementwise extremes (NaN, +-1e30, +-3e4, 100, -200, +-0)\n", bad ? "FAIL" : "  ok");
}

/* embed_blocks: the rows of a table in `type`'s blocks, decoded, plus a
 * position table: every float as gguf_quants decodes it, plus the same
 * fp32 addition (bit for bit); rows of another size refused. */
static void test_embed_blocks(uint32_t type, int vocab, int rows, int d) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  const size_t row_blocks = (size_t)d / tt->block_size, row_bytes = row_blocks * tt->type_size;
  uint8_t *table = malloc((size_t)vocab * row_bytes);
  float *decoded = malloc((size_t)vocab * d * 4), *pos = malloc((size_t)7 * d * 4);
  float *x = malloc((size_t)rows * d * 4), *want = malloc((size_t)rows * d * 4);
  int *ids = malloc(rows * 4), *position = malloc(rows * 4);
  random_blocks(type, table, (size_t)vocab * row_blocks, rnd);
  tt->decode(table, decoded, (size_t)vocab * row_blocks);
  fill(pos, (size_t)7 * d, 1);
  for (int r = 0; r < rows; r++)
    ids[r] = (int)((rnd() + 1) / 2 * vocab) % vocab, position[r] = r % 7;
  ids[rows - 1] = vocab - 1; /* the table's last row */
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < d; i++)
      want[(size_t)r * d + i] = decoded[(size_t)ids[r] * d + i] + pos[(size_t)position[r] * d + i];
  uint8_t *dt = dev(table, (size_t)vocab * row_bytes);
  float *dpos = dev(pos, (size_t)7 * d * 4), *dx = dev(x, (size_t)rows * d * 4);
  int *di = dev(ids, rows * 4), *dp = dev(position, rows * 4);
  run(B->ops->embed_blocks(B, dx, dt, type, row_bytes, di, dpos, dp, rows, d), "embed_blocks");
  back(x, dx, (size_t)rows * d * 4);
  size_t differ = 0;
  for (size_t i = 0; i < (size_t)rows * d; i++)
    differ += memcmp(&x[i], &want[i], 4) != 0;
  printf("embed_%-8s %zu of %zu values differ from the decoded rows  %s\n", tt->name, differ,
         (size_t)rows * d, differ ? "FAIL" : "ok");
  CHECK(differ == 0, "embed_blocks %s: %zu values differ from the decoded rows", tt->name, differ);
  CHECK(B->ops->embed_blocks(B, dx, dt, type, row_bytes + 1, di, NULL, NULL, rows, d) != 0,
        "embed_blocks %s: rows of the wrong size were accepted", tt->name);
  B->ops->free(B, dt), B->ops->free(B, dpos), B->ops->free(B, dx), B->ops->free(B, di);
  B->ops->free(B, dp);
  free(table), free(decoded), free(pos), free(x), free(want), free(ids), free(position);
}

static void test_embed_blocks_all(void) {
  static const uint32_t types[] = {GGUF_TENSOR_Q8_0, GGUF_TENSOR_Q4_0, GGUF_TENSOR_Q4_1,
                                   GGUF_TENSOR_Q5_0, GGUF_TENSOR_Q5_1, GGUF_TENSOR_Q4_K,
                                   GGUF_TENSOR_Q5_K, GGUF_TENSOR_Q6_K, GGUF_TENSOR_F16,
                                   GGUF_TENSOR_BF16, GGUF_TENSOR_F32};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    test_embed_blocks(types[i], 300, 23, 512);
}

static void test_rows(int n_src, int rows, int d) {
  float *src = malloc((size_t)n_src * d * 4), *dst = malloc((size_t)n_src * d * 4);
  int *idx = malloc(rows * 4), *pos = malloc(rows * 4);
  double *ref = malloc((size_t)n_src * d * 8);
  fill(src, (size_t)n_src * d, 1);
  for (int r = 0; r < rows; r++)
    idx[r] = (int)((rnd() + 1) / 2 * n_src) % n_src, pos[r] = (int)((rnd() + 1) / 2 * 7) % 7;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < d; i++)
      ref[(size_t)r * d + i] = src[(size_t)idx[r] * d + i];
  float *ds = dev(src, (size_t)n_src * d * 4), *dd = dev(src, (size_t)n_src * d * 4);
  int *di = dev(idx, rows * 4), *dp = dev(pos, rows * 4);
  run(B->ops->gather_rows(B, dd, ds, di, rows, d), "gather_rows");
  back(dst, dd, (size_t)rows * d * 4);
  compare("gather_rows", dst, ref, (size_t)rows * d, 0);
  /* embed: token table src, position table = src as well */
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < d; i++)
      ref[(size_t)r * d + i] = (double)src[(size_t)idx[r] * d + i] + src[(size_t)pos[r] * d + i];
  run(B->ops->embed(B, dd, ds, di, ds, dp, rows, d), "embed");
  back(dst, dd, (size_t)rows * d * 4);
  compare("embed", dst, ref, (size_t)rows * d, 1e-7);
  /* scatter: a permutation of the first `rows` rows */
  for (int r = 0; r < rows; r++)
    idx[r] = (r * 7 + 3) % rows;
  B->ops->upload(B, di, idx, rows * 4);
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < d; i++)
      ref[(size_t)idx[r] * d + i] = src[(size_t)r * d + i];
  run(B->ops->scatter_rows(B, dd, ds, di, rows, d), "scatter_rows");
  back(dst, dd, (size_t)rows * d * 4);
  compare("scatter_rows", dst, ref, (size_t)rows * d, 0);
  B->ops->free(B, ds), B->ops->free(B, dd), B->ops->free(B, di), B->ops->free(B, dp);
  free(src), free(dst), free(idx), free(pos), free(ref);
}

/* logit_stats over rows of vocab logits: argmaxes exact (ties to the first,
 * NaNs skipped, an all-NaN row 0), centred target logits and the target/foil
 * logits to 1e-6 of the scale. Rows: random; a tie planted at two positions; a NaN planted
 * above every value; all NaN. */
static void test_logit_stats(int rows, int vocab) {
  const size_t n = (size_t)rows * vocab;
  float *l = malloc(n * 4), *stats = malloc((size_t)rows * 3 * 4);
  int *targets = malloc(rows * sizeof(int)), *foils = malloc(rows * sizeof(int));
  int *best = malloc(rows * sizeof(int)), *want_best = malloc(rows * sizeof(int));
  double *want = malloc((size_t)rows * 3 * 8);
  fill(l, n, 8);
  for (int r = 0; r < rows; r++) {
    float *lr = l + (size_t)r * vocab;
    if (r % 4 == 1) { /* a tie at the maximum: the first index wins */
      lr[vocab - 2] = 100.0f;
      lr[vocab / 3] = 100.0f;
    } else if (r % 4 == 2) /* NaN beside the true maximum */
      lr[0] = NAN, lr[vocab / 2] = 50.0f;
    else if (r == rows - 1)
      for (int t = 0; t < vocab; t++)
        lr[t] = NAN;
    targets[r] = r % 3 == 0 ? -1 : (int)((r * 7919L) % vocab);
    foils[r] = r % 5 == 0 ? -1 : (int)((r * 104729L) % vocab);
  }
  float *dl = dev(l, n * 4), *dstats = dev(stats, (size_t)rows * 3 * 4);
  int *dt = dev(targets, rows * sizeof(int)), *df = dev(foils, rows * sizeof(int)),
      *dbest = dev(best, rows * sizeof(int));
  for (int with_foils = 0; with_foils < 2; with_foils++) {
    for (int r = 0; r < rows; r++) {
      const float *lr = l + (size_t)r * vocab;
      int arg = -1;
      double sum = 0.0;
      for (int t = 0; t < vocab; t++) {
        sum += lr[t];
        if (!isnan(lr[t]) && (arg < 0 || lr[t] > lr[arg]))
          arg = t;
      }
      want_best[r] = arg < 0 ? 0 : arg;
      want[3 * r + 1] = lr[targets[r] >= 0 ? targets[r] : want_best[r]];
      want[3 * r] = want[3 * r + 1] - sum / vocab;
      want[3 * r + 2] = with_foils && foils[r] >= 0 ? lr[foils[r]] : 0.0;
    }
    run(B->ops->logit_stats(B, dbest, dstats, dl, rows, vocab, dt, with_foils ? df : NULL),
        "logit_stats");
    back(best, dbest, rows * sizeof(int));
    back(stats, dstats, (size_t)rows * 3 * 4);
    for (int r = 0; r < rows; r++) {
      CHECK(best[r] == want_best[r], "logit_stats row %d: argmax %d, want %d", r, best[r],
            want_best[r]);
      for (int k = 0; k < 3; k++) /* a NaN where one is due (a mean over a NaN) */
        if (isnan(want[3 * r + k])) {
          CHECK(isnan(stats[3 * r + k]), "logit_stats row %d stat %d: %g, want NaN", r, k,
                stats[3 * r + k]);
          stats[3 * r + k] = 0.0f, want[3 * r + k] = 0.0;
        }
    }
    char name[64];
    snprintf(name, sizeof(name), "logit_stats%s", with_foils ? "+foils" : "");
    compare(name, stats, want, (size_t)rows * 3, 1e-6);
  }
  B->ops->free(B, dl), B->ops->free(B, dstats), B->ops->free(B, dt), B->ops->free(B, df),
      B->ops->free(B, dbest);
  free(l), free(stats), free(targets), free(foils), free(best), free(want_best), free(want);
}

/* logit_metrics over rows of vocab logits, each a run of one of n_prompts
 * prompts, against a double-precision reference: log-prob, prob, KL against
 * the prompt's reference log-probs, rank (exact), target - foil logit, and
 * the log-probs written with lp_out. Rows: random; a tie at the maximum with
 * the argmax as target; a peaked row whose target is its argmax (log-prob
 * near 0: checked element-wise, relative); a row equal to its prompt's
 * reference (KL ~ 0); logits shifted by +80. Outputs poisoned (NaN) first. */
/* The logit as a soft-capped distribution reads it (cap 0: as it is). */
static double capped(double x, float cap) {
  return cap > 0 ? cap * tanh(x / cap) : x;
}

/* softcap > 0: the rows are a final-logit soft-cap's input. */
static void test_logit_metrics(int rows, int vocab, int n_prompts, float softcap) {
  const size_t n = (size_t)rows * vocab, nq = (size_t)n_prompts * vocab;
  float *l = malloc(n * 4), *q = malloc(nq * 4), *out = malloc((size_t)rows * 5 * 4);
  float *lp = malloc(n * 4);
  int *prompt = malloc(rows * sizeof(int)), *targets = malloc(n_prompts * sizeof(int)),
      *foils = malloc(n_prompts * sizeof(int));
  double *want = malloc((size_t)rows * 5 * 8), *want_lp = malloc(n * 8);
  fill(l, n, 6);
  fill(q, nq, 6);
  for (int p = 0; p < n_prompts; p++) { /* q: a log-softmax, in double */
    float *qp = q + (size_t)p * vocab;
    double m = qp[0], se = 0.0;
    for (int k = 1; k < vocab; k++)
      m = qp[k] > m ? qp[k] : m;
    for (int k = 0; k < vocab; k++)
      se += exp(qp[k] - m);
    for (int k = 0; k < vocab; k++)
      qp[k] = (float)(qp[k] - m - log(se));
    targets[p] = p % 3 == 0 ? -1 : (int)((p * 7919L) % vocab);
    foils[p] = p % 4 == 1 ? -1 : (int)((p * 104729L) % vocab);
  }
  for (int r = 0; r < rows; r++) {
    float *lr = l + (size_t)r * vocab;
    prompt[r] = (int)((r * 31L + 7) % n_prompts);
    if (r == 1) /* a tie at the maximum; prompt 0's target is the argmax */
      prompt[r] = 0, lr[vocab - 2] = 40.0f, lr[vocab / 3] = 40.0f;
    else if (r == 2) /* peaked: log-prob ~ -1e-8 .. -1e-4 */
      prompt[r] = 0, lr[vocab / 2] = 30.0f;
    else if (r == 3) /* the prompt's own reference: KL ~ 0 */
      memcpy(lr, q + (size_t)prompt[r] * vocab, vocab * 4);
    else if (r == 4)
      for (int k = 0; k < vocab; k++)
        lr[k] += 80.0f;
  }
  float *dl = dev(l, n * 4), *dq = dev(q, nq * 4);
  int *dp = dev(prompt, rows * sizeof(int)), *dt = dev(targets, n_prompts * sizeof(int)),
      *df = dev(foils, n_prompts * sizeof(int));
  for (int with = 0; with < 2; with++) { /* with foils, reference and lp_out; without */
    for (int r = 0; r < rows; r++) {
      const float *lr = l + (size_t)r * vocab;
      const int p = prompt[r];
      int arg = 0;
      for (int k = 1; k < vocab; k++)
        if (lr[k] > lr[arg])
          arg = k;
      const int t = targets[p] >= 0 ? targets[p] : arg;
      const double ct = capped(lr[t], softcap), cmax = capped(lr[arg], softcap);
      double se = 0.0, kl = 0.0;
      int rank = 0;
      for (int k = 0; k < vocab; k++) {
        se += exp(capped(lr[k], softcap) - cmax);
        rank += lr[k] > lr[t]; /* the cap keeps the order */
      }
      const double lse = cmax + log(se);
      for (int k = 0; k < vocab && with; k++) {
        const double qk = q[(size_t)p * vocab + k];
        kl += exp(qk) * (qk - capped(lr[k], softcap) + lse);
      }
      for (int k = 0; k < vocab; k++)
        want_lp[(size_t)r * vocab + k] = capped(lr[k], softcap) - lse;
      double *w = want + 5 * (size_t)r;
      w[0] = ct - lse, w[1] = exp(ct - lse), w[2] = kl, w[3] = rank;
      w[4] = with && foils[p] >= 0 ? (double)lr[t] - lr[foils[p]] : 0.0;
    }
    for (size_t i = 0; i < (size_t)rows * 5; i++)
      out[i] = NAN;
    for (size_t i = 0; i < n; i++)
      lp[i] = NAN;
    float *dout = dev(out, (size_t)rows * 5 * 4), *dlp = dev(lp, n * 4);
    run(B->ops->logit_metrics(B, dout, with ? dlp : NULL, dl, rows, vocab, dp, dt, with ? df : NULL,
                              with ? dq : NULL, softcap),
        "logit_metrics");
    back(out, dout, (size_t)rows * 5 * 4);
    back(lp, dlp, n * 4);
    static const char *const names[5] = {"logprob", "prob", "kl", "rank", "logit_diff"};
    static const double bounds[5] = {1e-5, 1e-5, 1e-5, 0.0, 1e-6};
    float *got = malloc(rows * 4);
    double *col = malloc(rows * 8);
    for (int m = 0; m < 5; m++) {
      for (int r = 0; r < rows; r++)
        got[r] = out[5 * r + m], col[r] = want[5 * r + m];
      char name[64];
      snprintf(name, sizeof(name), "metrics %s%s%s", names[m], with ? "+ref" : "",
               softcap > 0 ? "+cap" : "");
      compare(name, got, col, rows, bounds[m]);
    }
    const double lp2 = out[5 * 2], w2 = want[5 * 2], kl3 = out[5 * 3 + 2];
    const int near0 = fabs(lp2 - w2) <= 1e-4 * fabs(w2) + 1e-12 && w2 < 0 && w2 > -1e-3;
    if (softcap == 0) { /* a cap flattens rows 2 and 3 */
      printf("  log-prob near 0: %.6g, want %.6g  %s\n", lp2, w2, near0 ? "ok" : "FAIL");
      CHECK(near0, "log-prob near 0: %.6g, want %.6g (bound 1e-4 of it)", lp2, w2);
    }
    if (with && softcap == 0) {
      const int self = fabs(kl3) <= 1e-6;
      printf("  KL of a row against itself: %.3g  %s\n", kl3, self ? "ok" : "FAIL");
      CHECK(self, "KL of a row against itself: %.3g (bound 1e-6)", kl3);
    }
    if (with)
      compare(softcap > 0 ? "metrics lp_out+cap" : "metrics lp_out", lp, want_lp, n, 1e-6);
    B->ops->free(B, dout), B->ops->free(B, dlp);
    free(got), free(col);
  }
  B->ops->free(B, dl), B->ops->free(B, dq), B->ops->free(B, dp), B->ops->free(B, dt),
      B->ops->free(B, df);
  free(l), free(q), free(out), free(lp), free(prompt), free(targets), free(foils), free(want),
      free(want_lp);
}

int main(int argc, char **argv) {
  const char *name = argc > 1 ? argv[1] : "cpu";
  uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)time(NULL);
  rng_state = seed * 2654435761ULL + 1;
  check_seed(seed);
  char err[HYDRA_ERR_LEN];
  B = backend_create(name, 0, err);
  if (!B) {
    fprintf(stderr, "test_ops: %s\n", err);
    return strcmp(name, "cpu") == 0 ? 1 : 77; /* no such backend here: skip */
  }
  printf("test_ops: backend %s, seed %llu\n", B->ops->name, (unsigned long long)seed);
  test_matmul(37, 53, 71, 0, 0, 0);
  test_matmul(64, 96, 64, 1, 0, 0);
  test_matmul(5, 1000, 64, 1, 1, 0);
  test_matmul(1, 7, 3, 0, 1, 0);
  test_matmul(257, 300, 576, 1, 0, 1);
  test_bf16_rounding();
  test_matmul_bf16(37, 53, 71, 0, 0, 53);
  test_matmul_bf16(64, 96, 64, 1, 0, 7);
  test_matmul_bf16(5, 1000, 64, 1, 1, 300);
  test_matmul_bf16(3, 5, 2, 0, 1, 1);
  test_matmul_blocks_all();
  test_column_products_all();
  test_matmul_batch_invariance(600, 1024); /* under 64 rows: tiles of 256 rows of w */
  test_matmul_batch_invariance(97, 576);
  test_transfers();
  test_norms(13, 576);
  test_norms(3, 64);
  test_head_layernorm(11, 4, 16, 1);
  test_head_layernorm(5, 3, 64, 0);
  test_rope(9, 4, 64, 64, 10000.0f, 0, 1.0f);
  test_rope(6, 3, 32, 16, 5000.0f, 0, 1.0f);
  test_rope(7, 2, 32, 24, 500000.0f, 1, 1.2f);
  test_attention(4, 4, 16, 0, 0.0f, 0);
  test_attention(9, 3, 64, 0, 0.0f, 0);
  test_attention(9, 3, 64, 1, 0.0f, 0);
  test_attention(4, 2, 32, 0, 1.5f, 0);
  test_attention(4, 2, 32, 1, 0.0f, 4); /* the window ends in the first run or spans both */
  test_attention(8, 4, 16, 1, 2.0f, 9);
  test_attention_rows(4, 4, 16, 0, 0.0f, 0);
  test_attention_rows(9, 3, 64, 1, 0.0f, 0);
  test_attention_rows(4, 2, 32, 0, 1.5f, 0);
  test_attention_rows(8, 4, 16, 1, 2.0f, 5); /* the window ends in the first run or spans both */
  test_intervene(40, 96);
  test_row_dots(30, 4, 50, 576);
  test_logit_stats(13, 50257);
  test_logit_stats(6, 37);
  test_logit_metrics(13, 50257, 5, 0.0f);
  test_logit_metrics(7, 37, 3, 0.0f);
  test_logit_metrics(13, 50257, 5, 30.0f); /* Gemma 2's cap: bites on the rows at 40 and 80 */
  test_logit_metrics(7, 37, 3, 4.0f);
  test_matmul_glu(70, 100, 576, 1, ACT_SILU); /* one pass, ragged panel and tile */
  test_matmul_glu(75, 1100, 96, 1, ACT_SILU); /* over 16 panels a thread: several chunks */
  test_matmul_glu(200, 37, 800, 0, ACT_SILU); /* two KC blocks: finished on the last */
  test_matmul_glu(131, 48, 1600, 1, ACT_GELU_TANH);
  test_matmul_glu(64, 17, 9, 1, ACT_GELU_ERF);
  test_matmul_glu(66, 16, 33, 0, ACT_RELU);
  test_matmul_glu(5, 33, 64, 1, ACT_SILU); /* under 64 rows: the tiled products */
  test_matmul_glu(1, 7, 3, 0, ACT_GELU_TANH);
  test_elementwise(10007);
  test_elementwise(13);
  test_elementwise(1);
  test_elementwise_extremes();
  test_rows(50, 23, 64);
  test_embed_blocks_all();
  backend_destroy(B);
  return check_exit("test_ops");
}
