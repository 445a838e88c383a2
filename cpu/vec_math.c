/* vec_math.c - elementwise functions: AVX2+FMA kernels chosen at run time,
 * libm loops elsewhere. */
#include "vec_math.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float GELU_C = 0.7978845608028654f; /* sqrt(2/pi) */

static inline float silu1(float x) {
  return x / (1.0f + expf(-x));
}

static inline float gelu_tanh1(float x) {
  const float u = GELU_C * (x + 0.044715f * x * x * x);
  return x / (1.0f + expf(-2.0f * u));
}

/* The row kernels' one source: inlined into a plain and a wide caller, each
 * vectorised for its own target (the double sums' wide path is dot_double4,
 * below). */
#define ROW_KERNEL static inline __attribute__((always_inline))

ROW_KERNEL double sum_squares_row(const float *x, size_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (size_t i = 0; i < n; i++)
    s += (double)x[i] * x[i];
  return s;
}

ROW_KERNEL double dot_double_row(const float *x, const float *y, size_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (size_t i = 0; i < n; i++)
    s += (double)x[i] * y[i];
  return s;
}

ROW_KERNEL float dot_row(const float *x, const float *y, size_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (size_t i = 0; i < n; i++)
    s += x[i] * y[i];
  return s;
}

ROW_KERNEL void axpy_row(float *restrict y, float a, const float *restrict x, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++)
    y[i] += a * x[i];
}

ROW_KERNEL void add_row(float *restrict y, const float *restrict x, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++)
    y[i] += x[i];
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(VEC_MATH_PLAIN)
#include <immintrin.h>

#define WIDE __attribute__((target("avx2,fma")))
enum { LANES = 8 };

int vec_math_wide(void) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* e^r for |r| <= ln2/2 (a little more): Taylor to degree 7, whose
 * remainder (r^8/8! < 6e-9 relative) is under a tenth of an ulp. */
WIDE static inline __m256 exp_reduced(__m256 r) {
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  return _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
}

/* x = n ln2 + r, n = round(x / ln2): ln2 in two parts (Cody and Waite), the
 * products inside FMAs exact. */
WIDE static inline __m256 reduce_ln2(__m256 x, __m256 *n) {
  *n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(*n, _mm256_set1_ps(0.693359375f), x);
  return _mm256_fnmadd_ps(*n, _mm256_set1_ps(-2.12194440e-4f), r);
}

/* 2^n for integral n in [-127, 128], as the float with that exponent field */
WIDE static inline __m256 pow2(__m256i n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}

WIDE static inline __m256 keep_nan(__m256 y, __m256 x) {
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* exp(x): x clamped to [-104, 89] (beyond: 0 and +inf), scaled by 2^n in two
 * halves so that n down to -150 reaches the subnormals with one rounding. */
WIDE static inline __m256 exp8(__m256 x) {
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
  __m256 n;
  const __m256 p = exp_reduced(reduce_ln2(xc, &n));
  const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1);
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, pow2(half)), pow2(_mm256_sub_epi32(ni, half)));
  return keep_nan(y, x);
}

/* tanh(x) = sign(x) t / (t + 2), t = expm1(2|x|) = 2^n (e^r - 1) + (2^n - 1)
 * with e^r - 1 from its own polynomial (no cancellation near 0); |x| clamped
 * to 9.5, where tanh is 1 in float. */
WIDE static inline __m256 tanh8(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
  const __m256 a = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(9.5f));
  __m256 n;
  const __m256 r = reduce_ln2(_mm256_add_ps(a, a), &n);
  __m256 q = _mm256_set1_ps(1.0f / 40320);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 5040));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 720));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 120));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 24));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 6));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
  q = _mm256_fmadd_ps(_mm256_mul_ps(q, r), r, r); /* e^r - 1 */
  const __m256 s = pow2(_mm256_cvtps_epi32(n));
  const __m256 t = _mm256_fmadd_ps(s, q, _mm256_sub_ps(s, _mm256_set1_ps(1.0f)));
  const __m256 y = _mm256_div_ps(t, _mm256_add_ps(t, _mm256_set1_ps(2.0f)));
  return keep_nan(_mm256_or_ps(y, sign), x);
}

WIDE static inline __m256 silu8(__m256 x) {
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

WIDE static inline __m256 gelu_tanh8(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(GELU_C),
                                 _mm256_add_ps(x, _mm256_mul_ps(_mm256_set1_ps(0.044715f), x3)));
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* The last n % 8 elements of an array, padded to a full vector. */
typedef struct {
  float v[LANES];
} lanes_t;

static lanes_t tail_of(const float *x, size_t n, float pad) {
  lanes_t t;
  for (int i = 0; i < LANES; i++)
    t.v[i] = (size_t)i < n ? x[i] : pad;
  return t;
}

WIDE static double exp_shift_sum_wide(float *y, const float *x, size_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + LANES <= n; i += LANES) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(y + i, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double sum_tail = 0.0;
  if (i < n) {
    lanes_t t = tail_of(x + i, n - i, -INFINITY);
    _mm256_storeu_ps(t.v, exp8(_mm256_sub_ps(_mm256_loadu_ps(t.v), s)));
    for (size_t j = 0; j < n - i; j++) {
      y[i + j] = t.v[j];
      sum_tail += t.v[j];
    }
  }
  double part[4];
  _mm256_storeu_pd(part, _mm256_add_pd(lo, hi));
  return part[0] + part[1] + part[2] + part[3] + sum_tail;
}

/* y[i] = f(x[i]) over whole vectors, then the padded tail. */
#define WIDE_MAP(NAME, KERNEL)                                                                     \
  WIDE static void NAME(float *y, const float *x, size_t n) {                                      \
    size_t i = 0;                                                                                  \
    for (; i + LANES <= n; i += LANES)                                                             \
      _mm256_storeu_ps(y + i, KERNEL(_mm256_loadu_ps(x + i)));                                     \
    if (i < n) {                                                                                   \
      lanes_t t = tail_of(x + i, n - i, 0.0f);                                                     \
      _mm256_storeu_ps(t.v, KERNEL(_mm256_loadu_ps(t.v)));                                         \
      memcpy(y + i, t.v, (n - i) * sizeof(float));                                                 \
    }                                                                                              \
  }
WIDE_MAP(tanh_wide, tanh8)
WIDE_MAP(silu_wide, silu8)
WIDE_MAP(gelu_tanh_wide, gelu_tanh8)

WIDE static void swiglu_wide(float *gate, const float *up, size_t n) {
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    _mm256_storeu_ps(gate + i,
                     _mm256_mul_ps(silu8(_mm256_loadu_ps(gate + i)), _mm256_loadu_ps(up + i)));
  if (i < n) {
    lanes_t g = tail_of(gate + i, n - i, 0.0f), u = tail_of(up + i, n - i, 0.0f);
    _mm256_storeu_ps(g.v, _mm256_mul_ps(silu8(_mm256_loadu_ps(g.v)), _mm256_loadu_ps(u.v)));
    memcpy(gate + i, g.v, (n - i) * sizeof(float));
  }
}

WIDE static void softcap_wide(float *x, size_t n, float cap) {
  const __m256 c = _mm256_set1_ps(cap);
  size_t i = 0;
  for (; i + LANES <= n; i += LANES)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(c, tanh8(_mm256_div_ps(_mm256_loadu_ps(x + i), c))));
  if (i < n) {
    lanes_t t = tail_of(x + i, n - i, 0.0f);
    _mm256_storeu_ps(t.v, _mm256_mul_ps(c, tanh8(_mm256_div_ps(_mm256_loadu_ps(t.v), c))));
    memcpy(x + i, t.v, (n - i) * sizeof(float));
  }
}

/* sum x[i] y[i] in double: four running sums of four doubles (16 values a
 * step, so the adds do not wait on one another; one sum kept them waiting
 * on its latency), the rest one at a time. Each product of two floats is
 * exact in double. */
WIDE static double dot_double4(const float *x, const float *y, size_t n) {
  __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                  _mm256_setzero_pd()};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; j++)
      s[j] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * j)),
                             _mm256_cvtps_pd(_mm_loadu_ps(y + i + 4 * j)), s[j]);
  const __m256d t = _mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3]));
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
  double sum = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  for (; i < n; i++)
    sum += (double)x[i] * y[i];
  return sum;
}
WIDE static double sum_squares_wide(const float *x, size_t n) {
  return dot_double4(x, x, n);
}
WIDE static double dot_double_wide(const float *x, const float *y, size_t n) {
  return dot_double4(x, y, n);
}
WIDE static float dot_wide(const float *x, const float *y, size_t n) {
  return dot_row(x, y, n);
}
WIDE static void axpy_wide(float *y, float a, const float *x, size_t n) {
  axpy_row(y, a, x, n);
}
WIDE static void add_wide(float *y, const float *x, size_t n) {
  add_row(y, x, n);
}

/* silu and swiglu 16 lanes wide where the CPU has AVX-512: exp8's and
 * silu8's operations one for one (the same rounding, min and max, the same
 * NaN kept), so each element's float is the 8-lane kernel's. */
#define WIDE512 __attribute__((target("avx512f,fma")))
enum { LANES512 = 16 };

static int wide512(void) {
  static int known = -1;
  if (known < 0) {
    const char *off = getenv("HYDRA_NO_AVX512");
    known =
        vec_math_wide() && __builtin_cpu_supports("avx512f") && !(off && *off && strcmp(off, "0"));
  }
  return known;
}

WIDE512 static inline __m512 exp16(__m512 x) {
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i ni = _mm512_cvtps_epi32(n), half = _mm512_srai_epi32(ni, 1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, half), bias), 23));
  const __m512 y = _mm512_mul_ps(_mm512_mul_ps(p, s1), s2);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}

WIDE512 static inline __m512 silu16(__m512 x) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* gate = silu(gate) * up (up NULL: gate = silu(gate)); the last n % 16
 * through a padded vector (masked loads fill the rest with 0). */
WIDE512 static void swiglu_512(float *gate, const float *up, size_t n) {
  size_t i = 0;
  for (; i + LANES512 <= n; i += LANES512) {
    const __m512 h = silu16(_mm512_loadu_ps(gate + i));
    _mm512_storeu_ps(gate + i, up ? _mm512_mul_ps(h, _mm512_loadu_ps(up + i)) : h);
  }
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    const __m512 h = silu16(_mm512_maskz_loadu_ps(m, gate + i));
    _mm512_mask_storeu_ps(gate + i, m, up ? _mm512_mul_ps(h, _mm512_maskz_loadu_ps(m, up + i)) : h);
  }
}

/* A product's tile (rows of n values ld apart): rows of whole vectors in one
 * loop, exp16's constants loaded once for the tile (a call per row loaded
 * them for each); the same floats as swiglu_512. */
WIDE512 static void swiglu_rows_512(float *gate, const float *up, size_t ld, size_t rows,
                                    size_t n) {
  if (n % LANES512) {
    for (size_t r = 0; r < rows; r++)
      swiglu_512(gate + r * ld, up + r * ld, n);
    return;
  }
  for (size_t r = 0; r < rows; r++)
    for (size_t i = 0; i < n; i += LANES512) {
      float *g = gate + r * ld + i;
      _mm512_storeu_ps(g,
                       _mm512_mul_ps(silu16(_mm512_loadu_ps(g)), _mm512_loadu_ps(up + r * ld + i)));
    }
}

#define HAVE_WIDE 1
#else
#define HAVE_WIDE 0
int vec_math_wide(void) {
  return 0;
}
#endif

double vec_exp_shift_sum(float *y, const float *x, size_t n, float shift) {
#if HAVE_WIDE
  if (vec_math_wide())
    return exp_shift_sum_wide(y, x, n, shift);
#endif
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    y[i] = expf(x[i] - shift);
    sum += y[i];
  }
  return sum;
}

void vec_tanh(float *y, const float *x, size_t n) {
#if HAVE_WIDE
  if (vec_math_wide()) {
    tanh_wide(y, x, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++)
    y[i] = tanhf(x[i]);
}

void vec_softcap(float *x, size_t n, float cap) {
#if HAVE_WIDE
  if (vec_math_wide()) {
    softcap_wide(x, n, cap);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++)
    x[i] = cap * tanhf(x[i] / cap);
}

void vec_silu(float *x, size_t n) {
#if HAVE_WIDE
  if (wide512()) {
    swiglu_512(x, NULL, n);
    return;
  }
  if (vec_math_wide()) {
    silu_wide(x, x, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++)
    x[i] = silu1(x[i]);
}

void vec_swiglu(float *gate, const float *up, size_t n) {
#if HAVE_WIDE
  if (wide512()) {
    swiglu_512(gate, up, n);
    return;
  }
  if (vec_math_wide()) {
    swiglu_wide(gate, up, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++)
    gate[i] = silu1(gate[i]) * up[i];
}

void vec_swiglu_rows(float *gate, const float *up, size_t ld, size_t rows, size_t n) {
#if HAVE_WIDE
  if (wide512()) {
    swiglu_rows_512(gate, up, ld, rows, n);
    return;
  }
#endif
  for (size_t r = 0; r < rows; r++)
    vec_swiglu(gate + r * ld, up + r * ld, n);
}

void vec_gelu_tanh(float *x, size_t n) {
#if HAVE_WIDE
  if (vec_math_wide()) {
    gelu_tanh_wide(x, x, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++)
    x[i] = gelu_tanh1(x[i]);
}

#if HAVE_WIDE
#define PICK(wide_call, plain_call) (vec_math_wide() ? (wide_call) : (plain_call))
#else
#define PICK(wide_call, plain_call) (plain_call)
#endif

double vec_sum_squares(const float *x, size_t n) {
  return PICK(sum_squares_wide(x, n), sum_squares_row(x, n));
}

double vec_dot_double(const float *x, const float *y, size_t n) {
  return PICK(dot_double_wide(x, y, n), dot_double_row(x, y, n));
}

float vec_dot(const float *x, const float *y, size_t n) {
  return PICK(dot_wide(x, y, n), dot_row(x, y, n));
}

void vec_axpy(float *y, float a, const float *x, size_t n) {
  PICK(axpy_wide(y, a, x, n), axpy_row(y, a, x, n));
}

void vec_add(float *y, const float *x, size_t n) {
  PICK(add_wide(y, x, n), add_row(y, x, n));
}
