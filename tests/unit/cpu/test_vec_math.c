/* test_vec_math - the CPU backend's elementwise kernels (cpu/vec_math.h)
 * against double-precision libm on a dense sweep of float inputs (every
 * STRIDE-th bit pattern over each function's range, both signs), in ulps of
 * the correctly rounded result; then the extremes (overflow, underflow,
 * saturation, NaN) and independence from the array's length and split.
 * Prints each function's max error. usage: test_vec_math */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "vec_math.h"

enum { STRIDE = 97, BATCH = 4096 };

typedef enum { F_EXP, F_TANH, F_SILU, F_GELU_TANH, F_SOFTCAP } func_t;
static const char *const NAMES[] = {"exp", "tanh", "silu", "gelu_tanh", "softcap(3)"};
static const float CAP = 3.0f;

static double reference(func_t f, float xf) {
  const double x = xf;
  switch (f) {
  case F_EXP:
    return exp(x);
  case F_TANH:
    return tanh(x);
  case F_SILU:
    return x / (1.0 + exp(-x));
  case F_GELU_TANH:
    return x / (1.0 + exp(-2.0 * sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  case F_SOFTCAP:
    return CAP * tanh(x / CAP);
  }
  return NAN;
}

static void apply(func_t f, float *x, size_t n) {
  switch (f) {
  case F_EXP:
    vec_exp_shift_sum(x, x, n, 0.0f);
    return;
  case F_TANH:
    vec_tanh(x, x, n);
    return;
  case F_SILU:
    vec_silu(x, n);
    return;
  case F_GELU_TANH:
    vec_gelu_tanh(x, n);
    return;
  case F_SOFTCAP:
    vec_softcap(x, n, CAP);
    return;
  }
}

/* |got - want| in units of the float spacing at want (subnormal spacing at
 * the bottom); a float overflow must be +-inf. */
static double ulp_error(float got, double want) {
  if (fabs(want) > FLT_MAX)
    return isinf(got) && (got > 0) == (want > 0) ? 0.0 : INFINITY;
  if (!isfinite(got))
    return INFINITY;
  int e;
  frexp(want, &e);
  const double ulp = ldexp(1.0, (e - 24 < -149 ? -149 : e - 24));
  return fabs((double)got - want) / ulp;
}

/* Max ulp error of f over the floats of magnitude below `top` (every STRIDE-th
 * bit pattern, both signs), skipping |want| under `floor_abs` (checked
 * there by absolute error instead, under abs_bound). */
static double sweep(func_t f, float top, double floor_abs, double abs_bound, float *worst_x) {
  static float x[BATCH], in[BATCH];
  double worst = 0.0;
  size_t n = 0, count = 0;
  uint32_t top_bits;
  memcpy(&top_bits, &top, 4);
  for (int sign = 0; sign < 2; sign++)
    for (uint64_t u = 0; u <= top_bits; u += STRIDE) {
      const uint32_t bits = (uint32_t)u | (sign ? 0x80000000u : 0u);
      memcpy(&in[n], &bits, 4);
      x[n] = in[n];
      if (++n < BATCH && !(sign == 1 && u + STRIDE > top_bits))
        continue;
      apply(f, x, n);
      for (size_t i = 0; i < n; i++) {
        const double want = reference(f, in[i]);
        if (fabs(want) < floor_abs) {
          CHECK(fabs(x[i] - want) <= abs_bound, "%s(%a) = %a, want %a (abs bound %g)", NAMES[f],
                in[i], x[i], want, abs_bound);
          continue;
        }
        const double e = ulp_error(x[i], want);
        if (e > worst)
          worst = e, *worst_x = in[i];
      }
      count += n;
      n = 0;
    }
  printf("%-10s max %.2f ulp over %zu inputs |x| <= %g (at x = %.9g)\n", NAMES[f], worst, count,
         top, *worst_x);
  return worst;
}

static float one(func_t f, float x) {
  apply(f, &x, 1);
  return x;
}

static void test_extremes(void) {
  CHECK(isinf(one(F_EXP, INFINITY)) && one(F_EXP, INFINITY) > 0, "exp(inf) not +inf");
  CHECK(one(F_EXP, -INFINITY) == 0.0f, "exp(-inf) = %g", one(F_EXP, -INFINITY));
  CHECK(isinf(one(F_EXP, 89.0f)), "exp(89) = %g, want inf", one(F_EXP, 89.0f));
  CHECK(isinf(one(F_EXP, 1e30f)), "exp(1e30) = %g, want inf", one(F_EXP, 1e30f));
  CHECK(one(F_EXP, -104.0f) == 0.0f && one(F_EXP, -1e30f) == 0.0f, "exp(-104), exp(-1e30) not 0");
  CHECK(one(F_EXP, 0.0f) == 1.0f, "exp(0) = %a", one(F_EXP, 0.0f));
  CHECK(one(F_EXP, -103.0f) > 0.0f, "exp(-103) is a subnormal, got 0");
  CHECK(one(F_TANH, 20.0f) == 1.0f && one(F_TANH, -1e30f) == -1.0f, "tanh does not saturate");
  CHECK(one(F_TANH, INFINITY) == 1.0f && one(F_TANH, -INFINITY) == -1.0f, "tanh(+-inf) not +-1");
  CHECK(signbit(one(F_TANH, -0.0f)) && one(F_TANH, -0.0f) == 0.0f, "tanh(-0) not -0");
  CHECK(one(F_TANH, 1e-30f) == 1e-30f, "tanh(1e-30) = %a", one(F_TANH, 1e-30f));
  CHECK(one(F_SILU, 1e30f) == 1e30f && one(F_SILU, 100.0f) == 100.0f, "silu(large) not x");
  CHECK(one(F_SILU, -1e30f) == 0.0f && one(F_SILU, -200.0f) == 0.0f, "silu(very negative) not 0");
  CHECK(one(F_SILU, INFINITY) == INFINITY, "silu(inf) not inf");
  CHECK(one(F_GELU_TANH, 1e30f) == 1e30f && one(F_GELU_TANH, -1e30f) == 0.0f,
        "gelu_tanh does not saturate: %g, %g", one(F_GELU_TANH, 1e30f), one(F_GELU_TANH, -1e30f));
  CHECK(one(F_SOFTCAP, 1e30f) == CAP && one(F_SOFTCAP, -1e30f) == -CAP, "softcap not +-cap");
  for (int f = F_EXP; f <= F_SOFTCAP; f++)
    CHECK(isnan(one(f, NAN)) && isnan(one(f, -NAN)), "%s(NaN) not NaN", NAMES[f]);
  float g = NAN, u = 2.0f;
  vec_swiglu(&g, &u, 1);
  CHECK(isnan(g), "swiglu(NaN, 2) not NaN");
  g = 1e30f, u = 2.0f;
  vec_swiglu(&g, &u, 1);
  CHECK(g == 2e30f, "swiglu(1e30, 2) = %g", g);
  float e[3] = {1.0f, NAN, 2.0f};
  CHECK(isnan(vec_exp_shift_sum(e, e, 3, 0.0f)), "exp sum over a NaN not NaN");
}

/* Any length, any split: element i is the same float whether computed alone
 * or at any place in an array (the tails go through the same kernel), and
 * exp_shift_sum returns the sum of what it wrote. */
static void test_lengths(void) {
  enum { N = 37 };
  float x[N], alone[N], u[N];
  for (int i = 0; i < N; i++)
    x[i] = (float)((i * 7919 % 101) - 50) * 0.37f, u[i] = (float)(i % 5) - 2.1f;
  for (int f = F_EXP; f <= F_SOFTCAP; f++) {
    for (int i = 0; i < N; i++)
      alone[i] = one(f, x[i]);
    int bad = 0;
    for (int n = 0; n <= N; n++)
      for (int start = 0; start + n <= N && start < 9; start++) {
        float y[N];
        memcpy(y, x + start, (size_t)n * 4);
        apply(f, y, (size_t)n);
        bad += memcmp(y, alone + start, (size_t)n * 4) != 0;
      }
    CHECK(bad == 0, "%s: %d of the lengths and offsets gave another float than alone", NAMES[f],
          bad);
  }
  float g[N], sw[N], y[N];
  memcpy(g, x, sizeof(g));
  vec_swiglu(g, u, 13);
  for (int i = 0; i < 13; i++) {
    sw[i] = x[i];
    vec_swiglu(&sw[i], &u[i], 1);
  }
  CHECK(memcmp(g, sw, 13 * 4) == 0, "swiglu over 13 differs from one at a time");
  /* a product's tiles: rows of n values ld apart, whole vectors (16, 32) and
   * ragged (13, 20); each row as vec_swiglu gives it, the gaps untouched */
  static const int tile_n[] = {16, 32, 13, 20};
  for (size_t t = 0; t < sizeof(tile_n) / sizeof(tile_n[0]); t++) {
    enum { ROWS = 12, LD = 40 };
    const int n = tile_n[t];
    float tile[ROWS * LD], up[ROWS * LD], want[ROWS * LD];
    for (int i = 0; i < ROWS * LD; i++) {
      tile[i] = want[i] = x[i % N] * (1.0f + (float)(i / N));
      up[i] = u[(i * 7) % N];
    }
    vec_swiglu_rows(tile, up, LD, ROWS, (size_t)n);
    for (int r = 0; r < ROWS; r++)
      vec_swiglu(want + r * LD, up + r * LD, (size_t)n);
    CHECK(memcmp(tile, want, sizeof(tile)) == 0,
          "swiglu_rows over %d rows of %d (ld %d) differs from vec_swiglu row by row", ROWS, n, LD);
  }
  for (int n = 0; n <= N; n++) {
    const double sum = vec_exp_shift_sum(y, x, (size_t)n, 1.5f);
    double want = 0.0;
    for (int i = 0; i < n; i++)
      want += y[i];
    CHECK(fabs(sum - want) <= 1e-12 * want, "exp sum of %d: %.17g, its elements sum to %.17g", n,
          sum, want);
    for (int i = 0; i < n; i++)
      CHECK(y[i] == one(F_EXP, x[i] - 1.5f), "exp(x - shift) at %d of %d", i, n);
  }
}

/* The double sums (RMSNorm's sum of squares, the direct effects' dot) at
 * every length 0 to 40 (whole steps of 16 values and every tail): on small
 * integers, whose sums double holds exactly, the exact sum. */
static void test_double_sums(void) {
  enum { N = 40 };
  float x[N], y[N];
  for (int i = 0; i < N; i++)
    x[i] = (float)(i % 9) - 4.0f, y[i] = (float)((i * 5) % 7) - 3.0f;
  for (int n = 0; n <= N; n++) {
    double squares = 0.0, dot = 0.0;
    for (int i = 0; i < n; i++)
      squares += (double)x[i] * x[i], dot += (double)x[i] * y[i];
    CHECK(vec_sum_squares(x, (size_t)n) == squares, "sum of squares of %d: %.17g, want %.17g", n,
          vec_sum_squares(x, (size_t)n), squares);
    CHECK(vec_dot_double(x, y, (size_t)n) == dot, "double dot of %d: %.17g, want %.17g", n,
          vec_dot_double(x, y, (size_t)n), dot);
  }
}

/* --dump: silu and swiglu of 2^22 bit patterns (every 1024th, NaN, inf and
 * subnormals among them), of a ragged tail and of product tiles (swiglu
 * 12 rows of 32 at a time), written to stdout as floats,
 * for the ctest that compares the AVX-512 kernels' bytes with the AVX2
 * ones' (HYDRA_NO_AVX512=1): the same floats. */
static int dump(void) {
  enum { CHUNK = 4096 };
  float x[CHUNK], u[CHUNK];
  for (uint64_t base = 0; base < (1ULL << 32); base += (uint64_t)CHUNK * 1024) {
    for (int i = 0; i < CHUNK; i++) {
      const uint32_t bits = (uint32_t)(base + (uint64_t)i * 1024 + 7);
      memcpy(&x[i], &bits, 4);
      u[i] = (float)(i % 7) - 3.3f;
    }
    float y[CHUNK];
    memcpy(y, x, sizeof(y));
    vec_silu(y, CHUNK - 5); /* the last 5 left as they are, the 11 before a ragged tail */
    fwrite(y, sizeof(float), CHUNK, stdout);
    memcpy(y, x, sizeof(y));
    vec_swiglu(y, u, CHUNK - 3);
    fwrite(y, sizeof(float), CHUNK, stdout);
    memcpy(y, x, sizeof(y)); /* as a product's tiles: 12 rows of 32, ld 48 */
    for (int t = 0; t + 12 * 48 <= CHUNK; t += 12 * 48)
      vec_swiglu_rows(y + t, u + t, 48, 12, 32);
    fwrite(y, sizeof(float), CHUNK, stdout);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--dump") == 0)
    return dump();
  printf("test_vec_math: %s kernels\n", vec_math_wide() ? "AVX2+FMA" : "libm");
  float at;
  /* exp: the whole range where it is neither 0 nor inf, and past it */
  CHECK(sweep(F_EXP, 110.0f, 0.0, 0.0, &at) <= 1.5, "exp: above 1.5 ulp at %.9g", at);
  CHECK(sweep(F_TANH, 12.0f, 0.0, 0.0, &at) <= 3.0, "tanh: above 3 ulp at %.9g", at);
  CHECK(sweep(F_SOFTCAP, 40.0f, 0.0, 0.0, &at) <= 4.0, "softcap: above 4 ulp at %.9g", at);
  /* silu and gelu: below ~1e-30 in magnitude (x < -68 and x < -8.2) the
   * result is checked by absolute error */
  CHECK(sweep(F_SILU, 120.0f, 1e-30, 1e-30, &at) <= 3.0, "silu: above 3 ulp at %.9g", at);
  /* gelu_tanh's u = sqrt(2/pi) (x + 0.044715 x^3) is rounded in float: exp(-2u) magnifies that
   * rounding by |2u| (~70 ulp at x = -9, where gelu is ~1e-30) */
  CHECK(sweep(F_GELU_TANH, 1.0f, 0.0, 0.0, &at) <= 4.0, "gelu_tanh: above 4 ulp at %.9g", at);
  CHECK(sweep(F_GELU_TANH, 20.0f, 1e-30, 1e-30, &at) <= 256.0, "gelu_tanh: above 256 ulp at %.9g",
        at);
  test_extremes();
  test_lengths();
  test_double_sums();
  return check_exit("test_vec_math");
}
