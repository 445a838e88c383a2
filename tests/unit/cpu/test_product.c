/* test_product - the CPU backend's matrix product (cpu/product.h) against its
 * stated order of sums and against double precision:
 *   - every element equals the chain fma(x[r][in-1], w[j][in-1], ... fma(x[r][0],
 *     w[j][0], start)) bit for bit (start 0, or y's value when accumulating),
 *     on shapes across every edge of the kernel's blocks (rows around 6 and
 *     12, past 256 and 1008, columns around 16, in around 8 and past 768 and 1536);
 *   - within the chain's rounding bound of the exact sum: |y - sum| <=
 *     gamma(in) * (|start| + sum |x w|), gamma(m) = m u / (1 - m u), u = 2^-24;
 *   - a row's bits do not depend on its batch: alone, inside the batch, with
 *     w cut into column tiles, on 1 to 3 threads, in parallel or not;
 *   - columns past n of y (ldy > n) are never written;
 *   - inf and NaN propagate as the chain's do.
 *   - product_pair_rows (a gated MLP's pair): both sums their chains' bits,
 *     each finished once, after its last k.
 * Run three times by ctest: as picked (AVX-512 or AVX2+FMA where the CPU has
 * them), with HYDRA_NO_AVX512=1 (AVX2+FMA) and with HYDRA_NO_SIMD=1 (plain
 * C). usage: test_product [SEED] */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "product.h"

static uint64_t rng;

static double uniform(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / (double)(1ULL << 53);
}

/* Values of mixed sign and magnitude (1e-3 to 1e3), some exact zeros. */
static void fill(float *a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const double u = uniform();
    a[i] = u < 0.05 ? 0.0f : (float)((uniform() < 0.5 ? -1 : 1) * pow(10.0, 6.0 * uniform() - 3.0));
  }
}

static float chain(const float *x, const float *w, int in, float start) {
  float s = start;
  for (int k = 0; k < in; k++)
    s = fmaf(x[k], w[k], s);
  return s;
}

static int same_bits(float a, float b) {
  return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b));
}

/* One shape: y (ldy = n + 3, the 3 extra columns a sentinel) against the
 * chain and the bound; then each row alone and w in two column tiles. */
static void check_shape(int rows, int n, int in, int accumulate, int threads) {
  const int ldy = n + 3;
  float *x = malloc(sizeof(float) * (size_t)rows * (in ? in : 1));
  float *w = malloc(sizeof(float) * (size_t)n * (in ? in : 1));
  float *y0 = malloc(sizeof(float) * (size_t)rows * ldy),
        *y = malloc(sizeof(float) * (size_t)rows * ldy);
  float *alone = malloc(sizeof(float) * (size_t)ldy);
  if (!x || !w || !y0 || !y || !alone) {
    FAIL("out of memory at %d x %d x %d", rows, n, in);
    goto done;
  }
  fill(x, (size_t)rows * in), fill(w, (size_t)n * in), fill(y0, (size_t)rows * ldy);
  omp_set_num_threads(threads);
  memcpy(y, y0, sizeof(float) * (size_t)rows * ldy);
  product_rows(y, ldy, x, w, rows, n, in, accumulate, 1);
  const double u = ldexp(1.0, -24), gamma = in * u / (1.0 - in * u);
  int bits_bad = 0, bound_bad = 0, pad_bad = 0;
  for (int r = 0; r < rows; r++) {
    for (int j = 0; j < n; j++) {
      const float start = accumulate ? y0[(size_t)r * ldy + j] : 0.0f;
      const float got = y[(size_t)r * ldy + j];
      const float want = chain(x + (size_t)r * in, w + (size_t)j * in, in, start);
      if (!same_bits(got, want) && bits_bad++ < 3)
        FAIL("%d x %d x %d (acc %d, %d threads): y[%d][%d] = %.9g, the chain gives %.9g", rows, n,
             in, accumulate, threads, r, j, got, want);
      double exact = start, mass = fabs(start);
      for (int k = 0; k < in; k++) {
        const double t = (double)x[(size_t)r * in + k] * w[(size_t)j * in + k];
        exact += t, mass += fabs(t);
      }
      if (!(fabs(got - exact) <= gamma * mass) && bound_bad++ < 3)
        FAIL("%d x %d x %d: y[%d][%d] = %.9g, exact %.12g: error %.3g over the bound %.3g", rows, n,
             in, r, j, got, exact, fabs(got - exact), gamma * mass);
    }
    for (int j = n; j < ldy; j++)
      pad_bad += !same_bits(y[(size_t)r * ldy + j], y0[(size_t)r * ldy + j]);
  }
  CHECK(bits_bad == 0, "%d x %d x %d: %d elements differ from their chain", rows, n, in, bits_bad);
  CHECK(bound_bad == 0, "%d x %d x %d: %d elements outside the bound", rows, n, in, bound_bad);
  CHECK(pad_bad == 0, "%d x %d x %d: %d values past column n written", rows, n, in, pad_bad);

  /* each row alone, in the calling thread alone, w in two column tiles */
  const int cut = n / 3;
  int moved = 0;
  for (int r = 0; r < rows; r++) {
    memcpy(alone, y0 + (size_t)r * ldy, sizeof(float) * (size_t)ldy);
    product_rows(alone, ldy, x + (size_t)r * in, w, 1, cut, in, accumulate, 0);
    product_rows(alone + cut, ldy, x + (size_t)r * in, w + (size_t)cut * in, 1, n - cut, in,
                 accumulate, 1);
    moved += memcmp(alone, y + (size_t)r * ldy, sizeof(float) * (size_t)n) != 0;
  }
  CHECK(moved == 0, "%d x %d x %d (%d threads): %d rows differ alone from in the batch", rows, n,
        in, threads, moved);
done:
  free(x), free(w), free(y0), free(y), free(alone);
}

/* product_pair_rows's finish for the test: gate = gate - 2 up (an exact
 * function of both sums, so a slice finished before its sums are complete
 * shows), counting the values it finishes. */
typedef struct {
  long finished;
} pair_count_t;

static void finish_count(void *ctx, float *gate, const float *up, int ld, int rows, int n) {
  pair_count_t *c = ctx;
  for (int r = 0; r < rows; r++)
    for (int i = 0; i < n; i++)
      gate[(size_t)r * ld + i] = gate[(size_t)r * ld + i] - 2.0f * up[(size_t)r * ld + i];
#pragma omp atomic
  c->finished += (long)rows * n;
}

/* product_pair_rows: every gate and up sum its chain's bits (the up's from
 * the bias when up_from_y), each finished exactly once after its last k. */
static void check_pair(int rows, int n, int in, int up_from_y, int threads) {
  float *x = malloc(sizeof(float) * (size_t)rows * in),
        *wg = malloc(sizeof(float) * (size_t)n * in);
  float *wu = malloc(sizeof(float) * (size_t)n * in),
        *up0 = malloc(sizeof(float) * (size_t)rows * n);
  float *gate = malloc(sizeof(float) * (size_t)rows * n),
        *up = malloc(sizeof(float) * (size_t)rows * n);
  if (!x || !wg || !wu || !up0 || !gate || !up) {
    FAIL("out of memory at pair %d x %d x %d", rows, n, in);
    goto done;
  }
  fill(x, (size_t)rows * in), fill(wg, (size_t)n * in), fill(wu, (size_t)n * in);
  fill(up0, (size_t)rows * n), fill(gate, (size_t)rows * n);
  memcpy(up, up0, sizeof(float) * (size_t)rows * n);
  omp_set_num_threads(threads);
  pair_count_t count = {0};
  product_pair_rows(gate, up, x, wg, wu, rows, n, in, up_from_y, finish_count, &count, 1);
  int bad = 0;
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < n; j++) {
      const float *xr = x + (size_t)r * in;
      const float u = chain(xr, wu + (size_t)j * in, in, up_from_y ? up0[(size_t)r * n + j] : 0.0f);
      const float g = chain(xr, wg + (size_t)j * in, in, 0.0f) - 2.0f * u;
      const size_t at = (size_t)r * n + j;
      if ((!same_bits(up[at], u) || !same_bits(gate[at], g)) && bad++ < 3)
        FAIL("pair %d x %d x %d (up from y %d, %d threads): [%d][%d] gate %.9g up %.9g, the "
             "chains give %.9g and %.9g",
             rows, n, in, up_from_y, threads, r, j, gate[at], up[at], g, u);
    }
  CHECK(bad == 0, "pair %d x %d x %d: %d elements differ from their chains", rows, n, in, bad);
  CHECK(count.finished == (long)rows * n, "pair %d x %d x %d: %ld values finished, want %ld", rows,
        n, in, count.finished, (long)rows * n);
done:
  free(x), free(wg), free(wu), free(up0), free(gate), free(up);
}

/* inf and NaN in x or w: the elements they reach are the chain's. */
static void check_specials(void) {
  enum { ROWS = 7, N = 19, IN = 37 };
  float x[ROWS * IN], w[N * IN], y[ROWS * N];
  fill(x, ROWS * IN), fill(w, N * IN);
  x[3 * IN + 5] = INFINITY, x[4 * IN + 0] = NAN, w[2 * IN + 36] = -INFINITY, w[17 * IN + 9] = NAN;
  product_rows(y, N, x, w, ROWS, N, IN, 0, 1);
  int bad = 0;
  for (int r = 0; r < ROWS; r++)
    for (int j = 0; j < N; j++)
      bad += !same_bits(y[r * N + j], chain(x + r * IN, w + j * IN, IN, 0.0f));
  CHECK(bad == 0, "inf/NaN: %d elements differ from their chain", bad);
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
  check_seed(seed);
  rng = seed * 0x9E3779B97F4A7C15ULL + 1;
  const int level = product_simd();
  printf("test_product: seed %llu, %s kernel\n", (unsigned long long)seed,
         level == 2 ? "AVX-512"
         : level    ? "AVX2+FMA"
                    : "plain C");
  const int rows[] = {1, 5, 6, 7, 12, 13, 300}, cols[] = {1, 15, 16, 17, 32, 33, 40};
  const int ins[] = {1, 8, 9, 63, 769, 1601};
  for (size_t a = 0; a < sizeof rows / sizeof *rows; a++)
    for (size_t b = 0; b < sizeof cols / sizeof *cols; b++)
      for (size_t c = 0; c < sizeof ins / sizeof *ins; c++) {
        if (rows[a] * cols[b] * ins[c] > 2000000)
          continue;
        check_shape(rows[a], cols[b], ins[c], (int)((a + b + c) % 2), 1 + (int)((a + c) % 3));
      }
  /* a few larger random shapes, both accumulate modes */
  for (int t = 0; t < 6; t++)
    check_shape(1 + (int)(uniform() * 280), 1 + (int)(uniform() * 70), 1 + (int)(uniform() * 900),
                t % 2, 1 + t % 3);
  /* past the AVX-512 path's block of 1008 rows (and the others' 256) */
  check_shape(1009, 33, 63, 0, 2);
  check_shape(2030, 17, 40, 1, 3);
  check_shape(3, 5, 0, 1, 2); /* in = 0: y unchanged when accumulating */
  check_shape(3, 5, 0, 0, 2); /* ... and 0 otherwise */
  check_specials();
  check_pair(300, 40, 1601, 1, 2); /* three KC blocks, ragged panels, two threads */
  check_pair(13, 17, 63, 0, 1);
  check_pair(1, 1, 1, 1, 3);
  check_pair(25, 1100, 100, 1, 2); /* 69 panels: chunks of 16 a thread, the last ragged */
  check_pair(7, 17, 50, 0, 3);     /* two panels, three threads: one has none */
  check_pair(1013, 40, 70, 1, 2);  /* two blocks of rows on every path */
  check_pair(1013, 33, 800, 0, 2); /* ... and two KC blocks: finished after the second */
  check_pair(12, 33, 0, 1, 2);     /* in = 0: the gate 0, the up its start, still finished */
  return check_exit("test_product");
}
