/* backend_cpu.c - the CPU backend: matrix products summed in one order per
 * element (product.c: a row's result never depends on the batch it sits
 * in), every other op an OpenMP loop over rows. Buffers are host memory. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bf16.h"
#include "gguf_quants.h"
#include "product.h"
#include "vec_math.h"

typedef struct {
  int n_threads;
  int threads_given; /* n_threads asked for at creation (else OpenMP's default) */
} cpu_impl_t;

static void *cpu_alloc(backend_t *b, size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
    err_set(b->err, "out of host memory allocating %zu bytes", bytes);
    return NULL;
  }
  return p;
}

static void cpu_free(backend_t *b, void *p) {
  (void)b;
  free(p);
}

static int cpu_copy(backend_t *b, void *dst, const void *src, size_t bytes) {
  (void)b;
  if (bytes)
    memmove(dst, src, bytes);
  return 0;
}

static int cpu_memset0(backend_t *b, void *dst, size_t bytes) {
  (void)b;
  memset(dst, 0, bytes);
  return 0;
}

static size_t cpu_memory_available(backend_t *b) {
  (void)b;
  return 0; /* host memory: unknown, the engine keeps its default pass size */
}

static int cpu_set_precision(backend_t *b, int tf32) {
  (void)b, (void)tf32;
  return 0; /* products are fp32 */
}

/* OpenMP's thread count is the calling thread's: a new thread starts from
 * the default (all cores). */
static void cpu_attach_thread(backend_t *b) {
  const cpu_impl_t *impl = b->impl;
  if (impl->threads_given) {
    omp_set_num_threads(impl->n_threads);
  }
}

static int cpu_synchronize(backend_t *b) {
  (void)b;
  return 0;
}

/* y = bias (or y += bias): the product then accumulates onto it. Returns
 * whether it did. */
static int fill_bias(float *y, const float *bias, int rows, int out, int accumulate) {
  if (!bias)
    return 0;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    float *yr = y + (size_t)r * out;
    if (accumulate)
      for (int j = 0; j < out; j++)
        yr[j] += bias[j];
    else
      memcpy(yr, bias, (size_t)out * sizeof(float));
  }
  return 1;
}

/* Products of few rows of x (under SMALL_BATCH_ROWS) read w once for little
 * arithmetic: they run in tiles of about TILE_BYTES of fp32 rows of w, one
 * thread a tile, each tile decoded (if w is in blocks) into that thread's
 * slice of scratch, where it is still in cache for its product. Larger
 * batches run one product per tile of as many rows as scratch holds, its
 * columns shared over the threads. Every element is summed in one order
 * (product_rows), so neither the tiles, the thread count nor the other rows
 * of the batch change a row's floats: matmul, matmul_blocks and matmul_bf16
 * on the same fp32 values give the same bits. */
enum { SMALL_BATCH_ROWS = 64, TILE_BYTES = 1 << 20, TILE_MIN_ROWS = 16 };

/* Rows of w per tile (tiles of equal size, the last one ragged): at most
 * `most` (what scratch holds). */
static long product_tile_rows(int rows, int out, int in, long most) {
  long n = most < out ? most : out;
  if (rows < SMALL_BATCH_ROWS) {
    long small = TILE_BYTES / ((long)in * (long)sizeof(float));
    if (small < TILE_MIN_ROWS)
      small = TILE_MIN_ROWS;
    if (n > small)
      n = small;
  }
  const long n_tiles = (out + n - 1) / n;
  return (out + n_tiles - 1) / n_tiles;
}

/* y[:, o0:o0+n] (leading dimension out) = x . w[o0:o0+n]^T (+ beta y) for
 * every tile of `tile` rows: w is fp32 rows at w (tt NULL) or rows of
 * row_bytes in tt's blocks, decoded into scratch (slots of tile * in
 * floats, one per thread at work). */
static void tiled_products(float *y, const float *x, const uint8_t *w, const gguf_quant_type_t *tt,
                           size_t row_bytes, int rows, int out, int in, float beta, long tile,
                           float *scratch, size_t scratch_floats) {
  const size_t row_blocks = tt ? (size_t)in / tt->block_size : 0, tile_floats = (size_t)tile * in;
  const long n_tiles = (out + tile - 1) / tile;
  if (rows >= SMALL_BATCH_ROWS || n_tiles == 1) {
    for (long o0 = 0; o0 < out; o0 += tile) {
      const long n = out - o0 < tile ? out - o0 : tile;
      const uint8_t *src = w + (size_t)o0 * row_bytes;
      if (tt) {
#pragma omp parallel for schedule(static)
        for (long r = 0; r < n; r++)
          tt->decode(src + (size_t)r * row_bytes, scratch + (size_t)r * in, row_blocks);
      }
      product_rows(y + o0, out, x, tt ? scratch : (const float *)src, rows, (int)n, in,
                   beta != 0.0f, 1);
    }
    return;
  }
  /* A whole team, each product on its thread alone, of which `slots`
   * threads work when scratch holds fewer tiles than the team has threads. */
  const size_t slots = tt ? scratch_floats / tile_floats : (size_t)n_tiles;
#pragma omp parallel
  {
    const long team = omp_get_num_threads(), id = omp_get_thread_num();
    const long workers = (size_t)team < slots ? team : (long)slots;
    for (long t = id; id < workers && t < n_tiles; t += workers) {
      const long o0 = t * tile, n = out - o0 < tile ? out - o0 : tile;
      const uint8_t *src = w + (size_t)o0 * row_bytes;
      float *tile_w = tt ? scratch + (size_t)id * tile_floats : NULL;
      if (tt)
        tt->decode(src, tile_w, (size_t)n * row_blocks);
      product_rows(y + o0, out, x, tt ? tile_w : (const float *)src, rows, (int)n, in, beta != 0.0f,
                   0);
    }
  }
}

/* y[rows, out] = x[rows, in] . w[out, in]^T + bias */
static int cpu_matmul(backend_t *b, float *y, const float *x, const float *w, const float *bias,
                      int rows, int out, int in, int accumulate) {
  (void)b;
  if (rows == 0)
    return 0;
  float beta = fill_bias(y, bias, rows, out, accumulate) || accumulate ? 1.0f : 0.0f;
  tiled_products(y, x, (const uint8_t *)w, NULL, (size_t)in * sizeof(float), rows, out, in, beta,
                 product_tile_rows(rows, out, in, out), NULL, 0);
  return 0;
}

/* The same, w widened from bf16 into scratch block by block: y[:, o0:o1]
 * (leading dimension out) = x . w[o0:o1]^T. */
static int cpu_matmul_bf16(backend_t *b, float *y, const float *x, const uint16_t *w,
                           const float *bias, int rows, int out, int in, int accumulate,
                           float *scratch, size_t scratch_floats) {
  if (scratch_floats < (size_t)in)
    return err_set(b->err, "matmul_bf16: scratch of %zu floats is under one row of %d",
                   scratch_floats, in);
  if (rows == 0)
    return 0;
  float beta = fill_bias(y, bias, rows, out, accumulate) || accumulate ? 1.0f : 0.0f;
  const long block = (long)(scratch_floats / (size_t)in);
  for (long o0 = 0; o0 < out; o0 += block) {
    const long n = out - o0 < block ? out - o0 : block;
    const uint16_t *src = w + (size_t)o0 * in;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n * in; i++)
      scratch[i] = bf16_to_float(src[i]);
    product_rows(y + o0, out, x, scratch, rows, (int)n, in, beta != 0.0f, 1);
  }
  return 0;
}

/* The same, w decoded from its blocks into scratch tile by tile
 * (tiled_products; F32 rows are multiplied where they are, in the same
 * tiles). */
static int cpu_matmul_blocks(backend_t *b, float *y, const float *x, const void *w, uint32_t type,
                             const float *bias, int rows, int out, int in, int accumulate,
                             float *scratch, size_t scratch_floats) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  if (!tt || !model_native_type(type) || in % (int)tt->block_size)
    return err_set(b->err, "matmul_blocks: type %s rows of %d cannot be multiplied in blocks",
                   tt ? tt->name : "?", in);
  if (scratch_floats < (size_t)in)
    return err_set(b->err, "matmul_blocks: scratch of %zu floats is under one row of %d",
                   scratch_floats, in);
  if (rows == 0)
    return 0;
  float beta = fill_bias(y, bias, rows, out, accumulate) || accumulate ? 1.0f : 0.0f;
  const size_t row_bytes = (size_t)(in / (int)tt->block_size) * tt->type_size;
  const long tile = product_tile_rows(rows, out, in, (long)(scratch_floats / (size_t)in));
  tiled_products(y, x, (const uint8_t *)w, type == GGUF_TENSOR_F32 ? NULL : tt, row_bytes, rows,
                 out, in, beta, tile, scratch, scratch_floats);
  return 0;
}

/* A span's columns are summed in pieces of this many from its first (a
 * piece of bf16 widened, of blocks decoded, onto the stack), whatever the
 * storage: fp32, bf16 and blocks of the same values give the same floats.
 * The K-quants' 256 is the largest block model_native_type passes. */
enum { COLUMN_PIECE = 256 };

/* Columns [lo, lo + n) of w's row at wr (n <= COLUMN_PIECE) as floats: in
 * place for fp32 (tt NULL), else widened or decoded into piece. */
static const float *column_piece(const uint8_t *wr, const gguf_quant_type_t *tt, int bf16, int lo,
                                 int n, float *piece) {
  if (!tt)
    return (const float *)wr + lo;
  if (bf16) {
    for (int i = 0; i < n; i++)
      piece[i] = bf16_to_float(((const uint16_t *)wr)[lo + i]);
    return piece;
  }
  const int bs = (int)tt->block_size, hi = lo + n;
  float block[COLUMN_PIECE];
  for (int k = lo / bs; k * bs < hi; k++) {
    tt->decode(wr + (size_t)k * tt->type_size, block, 1);
    const int a = k * bs > lo ? k * bs : lo, b = (k + 1) * bs < hi ? (k + 1) * bs : hi;
    memcpy(piece + (a - lo), block + (a - k * bs), sizeof(float) * (size_t)(b - a));
  }
  return piece;
}

/* Eight floats (GCC's and Clang's vector extension: one AVX register, or
 * two SSE ones). */
typedef float lanes_t __attribute__((vector_size(32)));

/* out[r][j] = sum over i < n of x[r][i] w[j][i] for two rows of x and
 * four of w: eight lanes of every eighth column (each in increasing i), added
 * in a fixed tree, then the tail in order, each pair the same sums whichever
 * pairs share the call. AVX2's clone where the CPU has it (no FMA: the same
 * roundings as the default's). */
__attribute__((target_clones("avx2", "default"))) static void
dot_lanes_2x4(const float *const x[2], const float *const w[4], int n, float out[2][4]) {
  lanes_t l[2][4] = {{{0}}};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    lanes_t x0, x1, wv;
    memcpy(&x0, x[0] + i, sizeof(x0));
    memcpy(&x1, x[1] + i, sizeof(x1));
    for (int j = 0; j < 4; j++) {
      memcpy(&wv, w[j] + i, sizeof(wv));
      l[0][j] += x0 * wv;
      l[1][j] += x1 * wv;
    }
  }
  for (int r = 0; r < 2; r++)
    for (int j = 0; j < 4; j++) {
      const lanes_t v = l[r][j];
      float acc = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
      for (int t = i; t < n; t++)
        acc += x[r][t] * w[j][t];
      out[r][j] = acc;
    }
}

/* acc[r][j] += sum over c in [c0, c1) of x[r][c] w[o_j, c] for the rows
 * x[r] (r < rows <= 4) and four rows of w at wr[j] (repeats where fewer):
 * per piece (widened or decoded once for all rows), dot_lanes_2x4's sums
 * added in order (the first onto 0). */
static void column_sums(const float *const x[4], int rows, const uint8_t *const wr[4],
                        const gguf_quant_type_t *tt, int bf16, int c0, int c1, float acc[4][4]) {
  float pieces[4][COLUMN_PIECE], part[2][4], span[4][4] = {{0}};
  for (int lo = c0; lo < c1; lo += COLUMN_PIECE) {
    const int n = c1 - lo < COLUMN_PIECE ? c1 - lo : COLUMN_PIECE;
    const float *w[4];
    for (int j = 0; j < 4; j++)
      w[j] = column_piece(wr[j], tt, bf16, lo, n, pieces[j]);
    if (n < 8) { /* no whole lane (a neuron's column): the tail alone, as dot_lanes_2x4 sums it */
      for (int r = 0; r < rows; r++)
        for (int j = 0; j < 4; j++) {
          float acc = 0.0f;
          for (int t = 0; t < n; t++)
            acc += x[r][lo + t] * w[j][t];
          span[r][j] += acc;
        }
      continue;
    }
    for (int r = 0; r < rows; r += 2) {
      const float *xs[2] = {x[r] + lo, x[r + 1 < rows ? r + 1 : r] + lo};
      dot_lanes_2x4(xs, w, n, part);
      for (int k = 0; k < 2 && r + k < rows; k++)
        for (int j = 0; j < 4; j++)
          span[r + k][j] += part[k][j];
    }
  }
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < 4; j++)
      acc[r][j] += span[r][j];
}

/* The table index after row spans[i].row's spans (i its first). */
static int span_run_end(const column_span_t *spans, int n, int i) {
  int end = i + 1;
  while (end < n && spans[end].row == spans[i].row)
    end++;
  return end;
}

/* Whether the runs [a, a_end) and [b, b_end) name the same columns. */
static int same_columns(const column_span_t *spans, int a, int a_end, int b, int b_end) {
  if (a_end - a != b_end - b)
    return 0;
  for (int k = 0; k < a_end - a; k++)
    if (spans[a + k].col0 != spans[b + k].col0 || spans[a + k].col1 != spans[b + k].col1)
      return 0;
  return 1;
}

/* Rows are taken in groups of up to four of the same columns in a row of
 * the table (the engine orders it by column): the one at table index i
 * (its first span) leads a group when the rows of the same columns right
 * before it number a multiple of four. */
static int group_leader(const column_span_t *spans, int n, int i) {
  int before = 0, j = i;
  while (j > 0) {
    int p = j - 1;
    while (p > 0 && spans[p - 1].row == spans[j - 1].row)
      p--;
    if (!same_columns(spans, p, j, i, span_run_end(spans, n, i)))
      break;
    before++;
    j = p;
  }
  return before % 4 == 0;
}

/* One thread per group of rows, four outputs at a time; each output the
 * float sum of its spans' sums in table order, the same floats whichever
 * rows share its group. */
static int cpu_column_products(backend_t *b, float *y, const float *x, const void *w, uint32_t type,
                               const column_span_t *spans, int n, int out, int in) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  const int f32 = type == GGUF_TENSOR_F32, bf16 = type == GGUF_TENSOR_BF16;
  if (!tt || !model_native_type(type) || in % (int)tt->block_size || tt->block_size > COLUMN_PIECE)
    return err_set(b->err, "column_products: type %s rows of %d cannot be read by column",
                   tt ? tt->name : "?", in);
  for (int i = 0; i < n; i++)
    if (spans[i].row < 0 || spans[i].col0 < 0 || spans[i].col0 > spans[i].col1 ||
        spans[i].col1 > in)
      return err_set(b->err, "column_products: span %d (row %d, columns %d..%d) outside %d columns",
                     i, spans[i].row, spans[i].col0, spans[i].col1, in);
  const size_t row_bytes = (size_t)(in / (int)tt->block_size) * tt->type_size;
#pragma omp parallel for schedule(dynamic, 4)
  for (int i = 0; i < n; i++) {
    if ((i > 0 && spans[i - 1].row == spans[i].row) || !group_leader(spans, n, i))
      continue;
    const int end = span_run_end(spans, n, i);
    const float *xs[4];
    float *ys[4];
    int rows = 0;
    for (int k = i; rows < 4 && k < n; k = span_run_end(spans, n, k)) {
      if (!same_columns(spans, i, end, k, span_run_end(spans, n, k)))
        break;
      xs[rows] = x + (size_t)spans[k].row * in;
      ys[rows++] = y + (size_t)spans[k].row * out;
    }
    for (int o = 0; o < out; o += 4) {
      const uint8_t *wr[4];
      for (int j = 0; j < 4; j++)
        wr[j] = (const uint8_t *)w + (size_t)(o + j < out ? o + j : o) * row_bytes;
      float acc[4][4] = {{0}};
      for (int s = i; s < end; s++)
        column_sums(xs, rows, wr, f32 ? NULL : tt, bf16, spans[s].col0, spans[s].col1, acc);
      for (int r = 0; r < rows; r++)
        for (int j = 0; j < 4 && o + j < out; j++)
          ys[r][o + j] += acc[r][j];
    }
  }
  return 0;
}

/* y[rows, d] = (x - mean) * inv * gamma + beta, inv = 1 / sqrt(var + eps);
 * row r's gamma and beta are those of row r % gamma_rows of gamma[gamma_rows,
 * d] (beta likewise): 1 for a model's norms, n_heads for per-head norms. */
static void layernorm_rows(float *y, float *inv_scale, const float *x, const float *gamma,
                           const float *beta, int rows, int d, int gamma_rows, float eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * d;
    float *yr = y + (size_t)r * d;
    const float *g = gamma + (size_t)(r % gamma_rows) * d;
    const float *be = beta ? beta + (size_t)(r % gamma_rows) * d : NULL;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < d; i++)
      sum += xr[i];
    float mean = (float)(sum / d);
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < d; i++) {
      double c = (double)xr[i] - mean;
      ss += c * c;
    }
    float inv = (float)(1.0 / sqrt(ss / d + eps));
    for (int i = 0; i < d; i++)
      yr[i] = (xr[i] - mean) * inv * g[i] + (be ? be[i] : 0.0f);
    if (inv_scale)
      inv_scale[r] = inv;
  }
}

static int cpu_layernorm(backend_t *b, float *y, float *inv_scale, const float *x,
                         const float *gamma, const float *beta, int rows, int d, float eps) {
  (void)b;
  layernorm_rows(y, inv_scale, x, gamma, beta, rows, d, 1, eps);
  return 0;
}

static int cpu_head_layernorm(backend_t *b, float *x, const float *gamma, const float *beta,
                              int rows, int n_heads, int head_dim, float eps) {
  (void)b;
  layernorm_rows(x, NULL, x, gamma, beta, rows * n_heads, head_dim, n_heads, eps);
  return 0;
}

/* y[rows, d] = x * inv * gamma, inv = 1 / sqrt(mean(x^2) + eps) */
static int cpu_rmsnorm(backend_t *b, float *y, float *inv_scale, const float *x, const float *gamma,
                       int rows, int d, float eps) {
  (void)b;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * d;
    float *yr = y + (size_t)r * d;
    const double ss = vec_sum_squares(xr, (size_t)d);
    float inv = (float)(1.0 / sqrt(ss / d + eps));
    for (int i = 0; i < d; i++)
      yr[i] = xr[i] * inv * gamma[i];
    if (inv_scale)
      inv_scale[r] = inv;
  }
  return 0;
}

/* x[rows, n_heads*head_dim], rotate_half pairing of dims i and i + rotary_dim/2:
 * a row's cos and sin once, then each head's halves as contiguous runs. */
static int cpu_rope(backend_t *b, float *x, const int *position, const float *inv_freq, int rows,
                    int n_heads, int head_dim, int rotary_dim, float attn_scale) {
  const int half = rotary_dim / 2;
  int failed = 0;
#pragma omp parallel
  {
    float *cs = malloc(2 * (size_t)(half > 0 ? half : 1) * sizeof(float));
    if (!cs) {
#pragma omp atomic write
      failed = 1;
    }
    /* A thread's rows are consecutive (a static schedule) and an ablation
     * pass's rows share their prompt's final position in runs: each run's
     * angles are computed once (a function of the position alone). */
    int cs_position = 0, cs_known = 0;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
      if (!cs)
        continue;
      float *cr = cs, *sr = cs + half;
      if (!cs_known || position[r] != cs_position) {
        for (int i = 0; i < half; i++) {
          const double angle = (double)position[r] * inv_freq[i];
          cr[i] = (float)(cos(angle) * attn_scale), sr[i] = (float)(sin(angle) * attn_scale);
        }
        cs_position = position[r], cs_known = 1;
      }
      for (int h = 0; h < n_heads; h++) {
        float *x1 = x + (size_t)r * n_heads * head_dim + (size_t)h * head_dim, *x2 = x1 + half;
#pragma omp simd
        for (int i = 0; i < half; i++) {
          const float a = x1[i], bb = x2[i];
          x1[i] = a * cr[i] - bb * sr[i];
          x2[i] = bb * cr[i] + a * sr[i];
        }
      }
    }
    free(cs);
  }
  return failed ? err_set(b->err, "rope: out of memory for %d frequencies", half) : 0;
}

/* One query head against a run of n keys: scores into score[], max updated
 * (softcap > 0: capped, softcap * tanh(s / softcap)). */
static void scores_run(float *score, const float *qh, const float *kb, size_t kv_stride, int n,
                       int head_dim, float scale, float softcap, float *max) {
  for (int j = 0; j < n; j++) {
    float s = vec_dot(qh, kb + (size_t)j * kv_stride, (size_t)head_dim) * scale;
    if (softcap > 0.0f)
      s = softcap * tanhf(s / softcap);
    score[j] = s;
    if (s > *max)
      *max = s;
  }
}

static void weighted_sum(float *oh, const float *score, const float *vb, size_t kv_stride, int n,
                         int head_dim, float inv) {
  for (int j = 0; j < n; j++)
    vec_axpy(oh, score[j] * inv, vb + (size_t)j * kv_stride, (size_t)head_dim);
}

/* out[rows, H*hd] = softmax(cap(q k^T * scale)) v over each row's one or two
 * key runs, less the keys before its window */
static int cpu_attention(backend_t *b, float *out, const float *q, const float *k, const float *v,
                         const int *key_start, const int *n_keys, const float *k2, const float *v2,
                         const int *key2_start, const int *n_keys2, int rows, int n_heads,
                         int n_kv_heads, int head_dim, float scale, float softcap, int window) {
  (void)b;
  const int group = n_heads / n_kv_heads;
  const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;
  int max_keys = 1;
  for (int r = 0; r < rows; r++) {
    int n = n_keys[r] + (k2 ? n_keys2[r] : 0);
    if (n > max_keys)
      max_keys = n;
  }
#pragma omp parallel
  {
    float *score = malloc((size_t)max_keys * sizeof(float));
#pragma omp for collapse(2) schedule(static)
    for (int r = 0; r < rows; r++) {
      for (int h = 0; h < n_heads; h++) {
        const float *qh = q + (size_t)r * q_stride + (size_t)h * head_dim;
        const size_t kv_off = (size_t)(h / group) * head_dim;
        int n1 = n_keys[r], n2 = k2 ? n_keys2[r] : 0, start1 = key_start[r],
            start2 = k2 ? key2_start[r] : 0;
        if (window > 0 && n1 + n2 > window) { /* the keys before the window, first run first */
          const int skip = n1 + n2 - window, skip1 = skip < n1 ? skip : n1;
          start1 += skip1, n1 -= skip1;
          start2 += skip - skip1, n2 -= skip - skip1;
        }
        const float *kb = k + (size_t)start1 * kv_stride + kv_off;
        const float *vb = v + (size_t)start1 * kv_stride + kv_off;
        float *oh = out + (size_t)r * q_stride + (size_t)h * head_dim;
        float max = -INFINITY;
        scores_run(score, qh, kb, kv_stride, n1, head_dim, scale, softcap, &max);
        if (n2)
          scores_run(score + n1, qh, k2 + (size_t)start2 * kv_stride + kv_off, kv_stride, n2,
                     head_dim, scale, softcap, &max);
        const double sum = vec_exp_shift_sum(score, score, (size_t)(n1 + n2), max);
        const float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
        for (int i = 0; i < head_dim; i++)
          oh[i] = 0.0f;
        weighted_sum(oh, score, vb, kv_stride, n1, head_dim, inv);
        if (n2)
          weighted_sum(oh, score + n1, v2 + (size_t)start2 * kv_stride + kv_off, kv_stride, n2,
                       head_dim, inv);
      }
    }
    free(score);
  }
  return 0;
}

/* Key j of a row's keys (its first run, then its second): the row of k or
 * v (or k2, v2) it is, at the head's kv columns. */
static const float *key_row(const float *x, const float *x2, int start1, int n1, int start2, int j,
                            size_t kv_stride, size_t kv_off) {
  return j < n1 ? x + (size_t)(start1 + j) * kv_stride + kv_off
                : x2 + (size_t)(start2 + j - n1) * kv_stride + kv_off;
}

/* One (row, head)'s pattern over its n1 + n2 keys into p[] (0 before the
 * window), as cpu_attention's softmax. */
static void head_pattern(float *p, const float *qh, const float *k, const float *k2, int start1,
                         int n1, int start2, int n2, size_t kv_stride, size_t kv_off, int head_dim,
                         float scale, float softcap, int window) {
  const int total = n1 + n2, skip = window > 0 && total > window ? total - window : 0;
  float max = -INFINITY;
  for (int j = 0; j < total; j++) {
    if (j < skip) {
      p[j] = 0.0f;
      continue;
    }
    const float *kj = key_row(k, k2, start1, n1, start2, j, kv_stride, kv_off);
    float s = vec_dot(qh, kj, (size_t)head_dim) * scale;
    if (softcap > 0.0f)
      s = softcap * tanhf(s / softcap);
    p[j] = s;
    if (s > max)
      max = s;
  }
  const double sum = vec_exp_shift_sum(p + skip, p + skip, (size_t)(total - skip), max);
  const float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
  for (int j = skip; j < total; j++)
    p[j] *= inv;
}

/* Chosen (row, head)s' patterns read, or their outputs made from a given
 * or scaled pattern row. */
static int cpu_attention_rows(backend_t *b, float *out, float *patterns,
                              const pattern_entry_t *entries, int n_entries, const float *q,
                              const float *k, const float *v, const int *key_start,
                              const int *n_keys, const float *k2, const float *v2,
                              const int *key2_start, const int *n_keys2, int n_heads,
                              int n_kv_heads, int head_dim, float scale, float softcap,
                              int window) {
  const int group = n_heads / n_kv_heads;
  const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;
  int max_keys = 1;
  for (int i = 0; i < n_entries; i++) {
    const int r = entries[i].row, n = n_keys[r] + (k2 ? n_keys2[r] : 0);
    if (n > max_keys)
      max_keys = n;
  }
  float *p = malloc((size_t)max_keys * sizeof(float));
  if (!p)
    return err_set(b->err, "attention_rows: out of memory for %d keys", max_keys);
  for (int i = 0; i < n_entries; i++) {
    const pattern_entry_t *e = &entries[i];
    const int r = e->row, n1 = n_keys[r], n2 = k2 ? n_keys2[r] : 0;
    const int start1 = key_start[r], start2 = k2 ? key2_start[r] : 0;
    const size_t kv_off = (size_t)(e->head / group) * head_dim;
    const float *weights = p;
    if (e->kind == PATTERN_SET) {
      weights = patterns + e->offset;
    } else {
      head_pattern(p, q + (size_t)r * q_stride + (size_t)e->head * head_dim, k, k2, start1, n1,
                   start2, n2, kv_stride, kv_off, head_dim, scale, softcap, window);
      if (e->kind == PATTERN_READ) {
        memcpy(patterns + e->offset, p, sizeof(float) * (n1 + n2));
        continue;
      }
      for (int j = 0; j < n1 + n2; j++)
        p[j] *= e->alpha;
    }
    float *oh = out + (size_t)r * q_stride + (size_t)e->head * head_dim;
    for (int c = 0; c < head_dim; c++)
      oh[c] = 0.0f;
    for (int j = 0; j < n1 + n2; j++) {
      const float *vj = key_row(v, v2, start1, n1, start2, j, kv_stride, kv_off);
      for (int c = 0; c < head_dim; c++)
        oh[c] += weights[j] * vj[c];
    }
  }
  free(p);
  return 0;
}

static int cpu_intervene(backend_t *b, float *x, int width, const intervention_t *entries, int n,
                         const float *src) {
  (void)b;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    const intervention_t *e = &entries[i];
    float *xr = x + (size_t)e->row * width;
    const float *s = src ? src + e->src_offset - e->col0 : NULL;
    switch (e->kind) {
    case INTERVENE_SET:
      for (int c = e->col0; c < e->col1; c++)
        xr[c] = s[c];
      break;
    case INTERVENE_SCALE:
      for (int c = e->col0; c < e->col1; c++)
        xr[c] *= e->alpha;
      break;
    case INTERVENE_ADD:
      for (int c = e->col0; c < e->col1; c++)
        xr[c] += s[c];
      break;
    }
  }
  return 0;
}

static int cpu_row_dots(backend_t *b, float *out, const int *out_index, const float *x,
                        const int *x_row, const float *dirs, const int *dir_row, int n, int d) {
  (void)b;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; i++) {
    const float *xr = x + (size_t)x_row[i] * d, *dr = dirs + (size_t)dir_row[i] * d;
    out[out_index[i]] = (float)vec_dot_double(xr, dr, (size_t)d);
  }
  return 0;
}

static int cpu_logit_stats(backend_t *b, int *best, float *stats, const float *logits, int rows,
                           int vocab, const int *targets, const int *foils) {
  (void)b;
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int r = 0; r < rows; r++) {
    const float *l = logits + (size_t)r * vocab;
    int arg = -1;
    double sum = 0.0;
    for (int t = 0; t < vocab; t++) {
      sum += l[t];
      if (l[t] == l[t] && (arg < 0 || l[t] > l[arg])) /* NaN never wins */
        arg = t;
    }
    best[r] = arg < 0 ? 0 : arg;
    const int target = targets[r] >= 0 ? targets[r] : best[r];
    stats[3 * (size_t)r] = (float)((double)l[target] - sum / vocab);
    stats[3 * (size_t)r + 1] = l[target];
    stats[3 * (size_t)r + 2] = foils && foils[r] >= 0 ? l[foils[r]] : 0.0f;
  }
  return 0;
}

/* A logit as the distribution reads it: soft-capped when cap > 0. */
static inline float capped(float x, float cap) {
  return cap > 0.0f ? cap * tanhf(x / cap) : x;
}

static int cpu_logit_metrics(backend_t *b, float *out, float *lp_out, const float *logits, int rows,
                             int vocab, const int *prompt, const int *targets, const int *foils,
                             const float *ref_lp, float softcap) {
  (void)b;
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int r = 0; r < rows; r++) {
    const float *l = logits + (size_t)r * vocab;
    const int p = prompt[r];
    int arg = -1;
    for (int k = 0; k < vocab; k++)
      if (l[k] == l[k] && (arg < 0 || l[k] > l[arg])) /* NaN never wins */
        arg = k;
    const float max = arg < 0 ? -INFINITY : capped(l[arg], softcap);
    const int t = targets[p] >= 0 ? targets[p] : (arg < 0 ? 0 : arg);
    const float lraw = l[t], lt = capped(lraw, softcap);
    const float *q = ref_lp ? ref_lp + (size_t)p * vocab : NULL;
    double se = 0.0, pql = 0.0, psum = 0.0;
    int rank = 0;
    for (int k = 0; k < vocab; k++) {
      const float lk = capped(l[k], softcap);
      se += expf(lk - max);
      rank += l[k] > lraw; /* the cap keeps the order: ranked before it, free of its rounding */
      if (q) {
        const double pk = expf(q[k]);
        pql += pk * ((double)q[k] - lk);
        psum += pk;
      }
    }
    const double lse = max + log(se);
    float *o = out + 5 * (size_t)r;
    o[0] = (float)(lt - lse);
    o[1] = (float)exp(lt - lse);
    o[2] = q ? (float)(pql + lse * psum) : 0.0f;
    o[3] = (float)rank;
    o[4] = foils && foils[p] >= 0 ? l[t] - l[foils[p]] : 0.0f;
    if (lp_out)
      for (int k = 0; k < vocab; k++)
        lp_out[(size_t)r * vocab + k] = (float)(capped(l[k], softcap) - lse);
  }
  return 0;
}

/* Elementwise ops: each thread runs vec_math's kernel on its share of n,
 * cut at multiples of 8 (the kernels' width) as a static schedule would. */
static void thread_share(size_t n, size_t *begin, size_t *len) {
  const size_t threads = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
  const size_t share = ((n + threads - 1) / threads + 7) / 8 * 8;
  *begin = t * share < n ? t * share : n;
  *len = n - *begin < share ? n - *begin : share;
}

/* x[i] = act(x[i]) over one slice: each element by the same function
 * whatever the slice (vec_math's kernels promise it), so a pass cut into
 * any slices gives the same floats. -1 for an unknown act. */
static int activate_slice(float *x, size_t n, activation_t act) {
  switch (act) {
  case ACT_GELU_TANH:
    vec_gelu_tanh(x, n);
    return 0;
  case ACT_GELU_ERF: /* x erfc(-x / sqrt 2) / 2 in double: 1 + erf(z) in float cancels for
                        negative x (1.3e-5 relative at x near -4) */
    for (size_t i = 0; i < n; i++)
      x[i] = (float)(0.5 * (double)x[i] * erfc(-(double)x[i] * 0.70710678118654752440));
    return 0;
  case ACT_SILU:
    vec_silu(x, n);
    return 0;
  case ACT_RELU: /* NaN kept, as in PyTorch */
    for (size_t i = 0; i < n; i++)
      x[i] = x[i] <= 0.0f ? 0.0f : x[i];
    return 0;
  }
  return -1;
}

static int known_activation(activation_t act) {
  return act == ACT_GELU_TANH || act == ACT_GELU_ERF || act == ACT_SILU || act == ACT_RELU;
}

static int cpu_activation(backend_t *b, float *x, size_t n, activation_t act) {
  if (!known_activation(act))
    return err_set(b->err, "unknown activation %d", (int)act);
#pragma omp parallel
  {
    size_t begin, len;
    thread_share(n, &begin, &len);
    activate_slice(x + begin, len, act);
  }
  return 0;
}

static int cpu_swiglu(backend_t *b, float *gate, const float *up, size_t n) {
  (void)b;
#pragma omp parallel
  {
    size_t begin, len;
    thread_share(n, &begin, &len);
    vec_swiglu(gate + begin, up + begin, len);
  }
  return 0;
}

static int cpu_glu(backend_t *b, float *gate, const float *up, size_t n, activation_t act) {
  if (cpu_activation(b, gate, n, act) != 0)
    return -1;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++)
    gate[i] *= up[i];
  return 0;
}

/* product_pair_rows's finish: swiglu's or glu's floats on one tile. */
static void glu_finish(void *ctx, float *gate, const float *up, int ld, int rows, int n) {
  const activation_t act = *(const activation_t *)ctx;
  if (act == ACT_SILU) {
    vec_swiglu_rows(gate, up, (size_t)ld, (size_t)rows, (size_t)n);
    return;
  }
  for (int r = 0; r < rows; r++) {
    float *g = gate + (size_t)r * ld;
    const float *u = up + (size_t)r * ld;
    activate_slice(g, (size_t)n, act);
    for (int i = 0; i < n; i++)
      g[i] *= u[i];
  }
}

/* Batches of SMALL_BATCH_ROWS and more: one pass of product_pair_rows, the
 * hidden units finished tile by tile; fewer rows take the tiled products
 * (a tile of w a thread) and then the pass. The same floats either way. */
static int cpu_matmul_glu(backend_t *b, float *gate, float *up, const float *x, const float *w_gate,
                          const float *w_up, const float *b_up, int rows, int out, int in,
                          activation_t act) {
  if (!known_activation(act))
    return err_set(b->err, "matmul_glu: unknown activation %d", (int)act);
  if (rows == 0)
    return 0;
  if (rows < SMALL_BATCH_ROWS) {
    if (cpu_matmul(b, gate, x, w_gate, NULL, rows, out, in, 0) ||
        cpu_matmul(b, up, x, w_up, b_up, rows, out, in, 0))
      return -1;
    const size_t n = (size_t)rows * out;
    return act == ACT_SILU ? cpu_swiglu(b, gate, up, n) : cpu_glu(b, gate, up, n, act);
  }
  const int up_from_bias = fill_bias(up, b_up, rows, out, 0);
  product_pair_rows(gate, up, x, w_gate, w_up, rows, out, in, up_from_bias, glu_finish, &act, 1);
  return 0;
}

static int cpu_scale(backend_t *b, float *x, size_t n, float alpha) {
  (void)b;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++)
    x[i] *= alpha;
  return 0;
}

static int cpu_softcap(backend_t *b, float *x, size_t n, float cap) {
  (void)b;
#pragma omp parallel
  {
    size_t begin, len;
    thread_share(n, &begin, &len);
    vec_softcap(x + begin, len, cap);
  }
  return 0;
}

static int cpu_add(backend_t *b, float *y, const float *x, size_t n) {
  (void)b;
#pragma omp parallel
  {
    size_t begin, len;
    thread_share(n, &begin, &len);
    vec_add(y + begin, x + begin, len);
  }
  return 0;
}

static int cpu_gather_rows(backend_t *b, float *dst, const float *src, const int *index, int rows,
                           int d) {
  (void)b;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++)
    memcpy(dst + (size_t)r * d, src + (size_t)index[r] * d, (size_t)d * sizeof(float));
  return 0;
}

static int cpu_scatter_rows(backend_t *b, float *dst, const float *src, const int *index, int rows,
                            int d) {
  (void)b;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++)
    memcpy(dst + (size_t)index[r] * d, src + (size_t)r * d, (size_t)d * sizeof(float));
  return 0;
}

static int cpu_embed(backend_t *b, float *x, const float *tok_embed, const int *ids,
                     const float *pos_embed, const int *position, int rows, int d) {
  (void)b;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    float *xr = x + (size_t)r * d;
    memcpy(xr, tok_embed + (size_t)ids[r] * d, (size_t)d * sizeof(float));
    if (pos_embed) {
      const float *pr = pos_embed + (size_t)position[r] * d;
      for (int i = 0; i < d; i++)
        xr[i] += pr[i];
    }
  }
  return 0;
}

/* cpu_embed with the token table in blocks: row ids[r] decoded into x. */
static int cpu_embed_blocks(backend_t *b, float *x, const void *tok_blocks, uint32_t type,
                            size_t row_bytes, const int *ids, const float *pos_embed,
                            const int *position, int rows, int d) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  if (!tt || !model_native_type(type) || d % (int)tt->block_size ||
      row_bytes != (size_t)(d / (int)tt->block_size) * tt->type_size)
    return err_set(b->err, "embed_blocks: type %s rows of %d in %zu bytes cannot be decoded",
                   tt ? tt->name : "?", d, row_bytes);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    float *xr = x + (size_t)r * d;
    const uint8_t *src = (const uint8_t *)tok_blocks + (size_t)ids[r] * row_bytes;
    if (type == GGUF_TENSOR_F32)
      memcpy(xr, src, (size_t)d * sizeof(float));
    else
      tt->decode(src, xr, (size_t)d / tt->block_size);
    if (pos_embed) {
      const float *pr = pos_embed + (size_t)position[r] * d;
      for (int i = 0; i < d; i++)
        xr[i] += pr[i];
    }
  }
  return 0;
}

static void cpu_destroy(backend_t *b);

static const backend_ops_t cpu_ops = {
    .name = "cpu",
    .batch_invariant = 1,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .memset0 = cpu_memset0,
    .copy = cpu_copy,
    .synchronize = cpu_synchronize,
    .memory_available = cpu_memory_available,
    .set_precision = cpu_set_precision,
    .attach_thread = cpu_attach_thread,
    .matmul = cpu_matmul,
    .matmul_bf16 = cpu_matmul_bf16,
    .matmul_blocks = cpu_matmul_blocks,
    .matmul_glu = cpu_matmul_glu,
    .column_products = cpu_column_products,
    .layernorm = cpu_layernorm,
    .head_layernorm = cpu_head_layernorm,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .attention_rows = cpu_attention_rows,
    .activation = cpu_activation,
    .swiglu = cpu_swiglu,
    .glu = cpu_glu,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .add = cpu_add,
    .gather_rows = cpu_gather_rows,
    .scatter_rows = cpu_scatter_rows,
    .embed = cpu_embed,
    .embed_blocks = cpu_embed_blocks,
    .intervene = cpu_intervene,
    .row_dots = cpu_row_dots,
    .logit_stats = cpu_logit_stats,
    .logit_metrics = cpu_logit_metrics,
};

static backend_t *cpu_create(int n_threads, char *err) {
  backend_t *b = calloc(1, sizeof(*b));
  cpu_impl_t *impl = calloc(1, sizeof(*impl));
  if (!b || !impl) {
    free(b);
    free(impl);
    err_set(err, "out of memory creating the CPU backend");
    return NULL;
  }
  if (n_threads > 0)
    omp_set_num_threads(n_threads);
  impl->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
  impl->threads_given = n_threads > 0;
  b->ops = &cpu_ops;
  b->host_memory = 1;
  b->impl = impl;
  return b;
}

static void cpu_destroy(backend_t *b) {
  if (!b)
    return;
  free(b->impl);
  free(b);
}

static int cpu_device_count(void) {
  return 1;
}

const backend_entry_t backend_cpu_entry = {
    .name = "cpu", .device_count = cpu_device_count, .create = cpu_create};
