/* product.c - y = x . w^T, every element one chain of fused multiply-adds in
 * increasing k.
 *
 * The blocking is BLIS's: w's columns are packed, KC values of k at a time,
 * into panels of NR = 16 columns laid out k-major (the panel a k-step needs
 * is two vectors); MR = 6 rows of x are broadcast against it, twelve
 * accumulators in registers. A thread packs NC panels of its columns once
 * per KC block (in a store it keeps), and every block of rows x KC values
 * of x passes over them. On AVX2 (MC rows a block) panel by panel: the
 * panel stays near (L1/L2 of a Zen 3: 48 KiB against 32 KiB and 512 KiB)
 * while the block of x, in L2, passes. On AVX-512 (MC512 rows a block) tile
 * by tile: a tile of x's rows (36 KiB) stays in L1 while the chunk's panels
 * pass over it from L2 (on the Xeon it was tuned on, 48 KiB L1 and 2 MiB
 * L2 a core: 1.00 -> 1.11x OpenBLAS at 4096 rows on one core; a pair of
 * panels is 96 KiB, over L1, so the other order streamed both). Between KC
 * blocks an element's running sum is stored to y and loaded back unchanged,
 * so the blocking never enters the order of sums: element (r, j) is
 * fma(x[r][in-1], w[j][in-1], ... fma(x[r][0], w[j][0], start)) whatever
 * rows, columns, tiles or threads share the call. The edges take the same
 * kernel with fewer rows (compile-time counts) and zero-padded columns, which
 * leaves the real columns' sums alone. Where the CPU has AVX-512, a kernel
 * of 12 rows against two panels at once (24 accumulators of 16); where it
 * has no AVX2 with FMA, plain C with fmaf, which rounds as vfmadd does: the
 * same bits from all three. */
#include "product.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* KC and MC: a block of x (MC rows of KC floats) and a panel (KC x NR)
 * measured best at 768 and 256 on SmolLM2's and Llama's shapes (Zen 3:
 * 32 KiB L1, 512 KiB L2 per core; KC 768 again on the Xeon, 256-1024
 * tried); NC panels packed at once (1.5 MiB). */
enum { MR = 6, NR = 16, KC = 768, MC = 256, NC = 32 };
/* The AVX-512 path keeps a tile of x in L1, not a block in L2: its blocks of
 * rows are longer, 84 tiles of MR512 = 12 (one short tile per 1008 rows, not
 * per 256: the one-thread sweep 6.49 -> 6.32 s). */
enum { MC512 = 1008 };
/* How many k-steps ahead a kernel asks for its panel's values (a k-step's
 * 64 bytes are a new cache line of a panel that is not in L1): measured at
 * 4, 8, 16 and 32 on SmolLM2's shapes, 16 best. */
enum { PF = 16 };
/* The kernels' k loops are unrolled 4 times (pragmas below): on AVX-512,
 * 4096 rows 157 -> 160 GFLOP/s and 512 rows 162 -> 170 (one Xeon core,
 * bench_product), the loop's own instructions and a reloaded row pointer
 * taken off the FMA ports' way. */

/* panel[k][c] = w[c][k0 + k] for c < nr, 0 for nr <= c < NR; k < kc. */
static void pack_plain(float *panel, const float *w, int in, int nr, int k0, int kc) {
  for (int k = 0; k < kc; k++) {
    for (int c = 0; c < nr; c++)
      panel[(size_t)k * NR + c] = w[(size_t)c * in + k0 + k];
    for (int c = nr; c < NR; c++)
      panel[(size_t)k * NR + c] = 0.0f;
  }
}

/* y[i][c] (+)= the panel's product with rb rows of x, for c < nr. */
static void kernel_plain(float *y, int ldy, const float *x, int ldx, const float *panel, int rb,
                         int nr, int kc, int start_from_y) {
  for (int i = 0; i < rb; i++)
    for (int c = 0; c < nr; c++) {
      float s = start_from_y ? y[(size_t)i * ldy + c] : 0.0f;
      for (int k = 0; k < kc; k++)
        s = fmaf(x[(size_t)i * ldx + k], panel[(size_t)k * NR + c], s);
      y[(size_t)i * ldy + c] = s;
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1

/* The 8 x 8 block of rows r[0..7] at k (each 8 floats) transposed into
 * out[kk * NR] = (r[0][kk], ..., r[7][kk]). */
__attribute__((target("avx2,fma"))) static inline void transpose8(float *out, const __m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_store_ps(out + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_store_ps(out + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_store_ps(out + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_store_ps(out + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_store_ps(out + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_store_ps(out + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_store_ps(out + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_store_ps(out + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* pack_plain's layout (panel 32-byte aligned), eight columns by eight k at
 * a time. */
__attribute__((target("avx2,fma"))) static void pack_avx2(float *panel, const float *w, int in,
                                                          int nr, int k0, int kc) {
  const int kc8 = kc - kc % 8;
  for (int c0 = 0; c0 < NR; c0 += 8) {
    const float *src[8];
    for (int c = 0; c < 8; c++)
      src[c] = c0 + c < nr ? w + (size_t)(c0 + c) * in + k0 : NULL;
    for (int k = 0; k < kc8; k += 8) {
      __m256 r[8];
      for (int c = 0; c < 8; c++)
        r[c] = src[c] ? _mm256_loadu_ps(src[c] + k) : _mm256_setzero_ps();
      transpose8(panel + (size_t)k * NR + c0, r);
    }
    for (int k = kc8; k < kc; k++)
      for (int c = 0; c < 8; c++)
        panel[(size_t)k * NR + c0 + c] = src[c] ? src[c][k] : 0.0f;
  }
}

/* Lane masks for the first nr % 8 columns of a vector. */
__attribute__((target("avx2,fma"))) static inline __m256i lanes_below(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

/* RB rows (constant after inlining) of kernel_plain's work. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
kernel_avx2(float *y, int ldy, const float *x, int ldx, const float *panel, int RB, int nr, int kc,
            int start_from_y) {
  __m256 acc[MR][2];
  const __m256i m0 = lanes_below(nr), m1 = lanes_below(nr - 8);
#pragma GCC unroll 6
  for (int i = 0; i < RB; i++) {
    if (!start_from_y) {
      acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    } else if (nr == NR) {
      acc[i][0] = _mm256_loadu_ps(y + (size_t)i * ldy);
      acc[i][1] = _mm256_loadu_ps(y + (size_t)i * ldy + 8);
    } else {
      acc[i][0] = _mm256_maskload_ps(y + (size_t)i * ldy, m0);
      acc[i][1] = _mm256_maskload_ps(y + (size_t)i * ldy + 8, m1);
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < kc; k++) {
    _mm_prefetch((const char *)(panel + (size_t)(k + PF) * NR), _MM_HINT_T0);
    const __m256 b0 = _mm256_load_ps(panel + (size_t)k * NR);
    const __m256 b1 = _mm256_load_ps(panel + (size_t)k * NR + 8);
#pragma GCC unroll 6
    for (int i = 0; i < RB; i++) {
      const __m256 a = _mm256_broadcast_ss(x + (size_t)i * ldx + k);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < RB; i++) {
    if (nr == NR) {
      _mm256_storeu_ps(y + (size_t)i * ldy, acc[i][0]);
      _mm256_storeu_ps(y + (size_t)i * ldy + 8, acc[i][1]);
    } else {
      _mm256_maskstore_ps(y + (size_t)i * ldy, m0, acc[i][0]);
      _mm256_maskstore_ps(y + (size_t)i * ldy + 8, m1, acc[i][1]);
    }
  }
}

#define KERNEL_FN(RB)                                                                              \
  __attribute__((target("avx2,fma"))) static void kernel_##RB(float *y, int ldy, const float *x,   \
                                                              int ldx, const float *panel, int nr, \
                                                              int kc, int start_from_y) {          \
    kernel_avx2(y, ldy, x, ldx, panel, RB, nr, kc, start_from_y);                                  \
  }
KERNEL_FN(1)
KERNEL_FN(2)
KERNEL_FN(3)
KERNEL_FN(4)
KERNEL_FN(5)
KERNEL_FN(6)

typedef void (*kernel_fn)(float *, int, const float *, int, const float *, int, int, int);
static const kernel_fn kernels[MR] = {kernel_1, kernel_2, kernel_3, kernel_4, kernel_5, kernel_6};

/* The AVX-512 kernel (where the CPU has AVX512F): MR512 rows against two
 * panels at once (32 columns, 24 accumulators), each panel's sums going to
 * its own tile of y (ya, yb: the next 16 columns of one product, or a gated
 * MLP's gate and up tiles), with its own start. The same fused
 * multiply-adds in the same order as kernel_avx2 and kernel_plain: the same
 * bits, twice the width. */
enum { MR512 = 12 };

__attribute__((target("avx512f,fma"), always_inline)) static inline void
kernel_avx512(float *ya, float *yb, int ldy, const float *x, int ldx, const float *pa,
              const float *pb, int RB, int TWO, int nra, int nrb, int kc, int start_a,
              int start_b) {
  __m512 acc[MR512][2];
  const __mmask16 ma = (__mmask16)((1u << nra) - 1u), mb = (__mmask16)((1u << nrb) - 1u);
#pragma GCC unroll 12
  for (int i = 0; i < RB; i++) {
    acc[i][0] = start_a ? _mm512_maskz_loadu_ps(ma, ya + (size_t)i * ldy) : _mm512_setzero_ps();
    if (TWO)
      acc[i][1] = start_b ? _mm512_maskz_loadu_ps(mb, yb + (size_t)i * ldy) : _mm512_setzero_ps();
  }
  /* Rows 3g, 3g + 1 and 3g + 2 of x as xg[g][k], xg[g][ldx + k] and
   * xg[g][2 ldx + k]: four base pointers and one index, where twelve row
   * pointers left the compiler short of registers (spilled inside the k
   * loop). A group past the tile's RB rows points at row 0 (never read). */
  const float *xg[4];
  for (int g = 0; g < 4; g++)
    xg[g] = 3 * g < RB ? x + (size_t)(3 * g) * ldx : x;
  const size_t ld = (size_t)ldx;
#pragma GCC unroll 4
  for (int k = 0; k < kc; k++) {
    _mm_prefetch((const char *)(pa + (size_t)(k + PF) * NR), _MM_HINT_T0);
    if (TWO)
      _mm_prefetch((const char *)(pb + (size_t)(k + PF) * NR), _MM_HINT_T0);
    const __m512 a = _mm512_load_ps(pa + (size_t)k * NR);
    const __m512 b = TWO ? _mm512_load_ps(pb + (size_t)k * NR) : a;
#pragma GCC unroll 12
    for (int i = 0; i < RB; i++) {
      const __m512 xi = _mm512_set1_ps(xg[i / 3][(i % 3) * ld + (size_t)k]);
      acc[i][0] = _mm512_fmadd_ps(xi, a, acc[i][0]);
      if (TWO)
        acc[i][1] = _mm512_fmadd_ps(xi, b, acc[i][1]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < RB; i++) {
    _mm512_mask_storeu_ps(ya + (size_t)i * ldy, ma, acc[i][0]);
    if (TWO)
      _mm512_mask_storeu_ps(yb + (size_t)i * ldy, mb, acc[i][1]);
  }
}

typedef void (*kernel512_fn)(float *, float *, int, const float *, int, const float *,
                             const float *, int, int, int, int, int);
#define KERNEL512_FN(RB, TWO)                                                                      \
  __attribute__((target("avx512f,fma"))) static void kernel512_##RB##_##TWO(                       \
      float *ya, float *yb, int ldy, const float *x, int ldx, const float *pa, const float *pb,    \
      int nra, int nrb, int kc, int start_a, int start_b) {                                        \
    kernel_avx512(ya, yb, ldy, x, ldx, pa, pb, RB, TWO, nra, nrb, kc, start_a, start_b);           \
  }
#define KERNEL512_PAIR(RB) KERNEL512_FN(RB, 0) KERNEL512_FN(RB, 1)
KERNEL512_PAIR(1)
KERNEL512_PAIR(2)
KERNEL512_PAIR(3)
KERNEL512_PAIR(4)
KERNEL512_PAIR(5)
KERNEL512_PAIR(6)
KERNEL512_PAIR(7)
KERNEL512_PAIR(8)
KERNEL512_PAIR(9)
KERNEL512_PAIR(10)
KERNEL512_PAIR(11)
KERNEL512_PAIR(12)
#define KERNEL512_ROW(RB)                                                                          \
  { kernel512_##RB##_0, kernel512_##RB##_1 }
static const kernel512_fn kernels512[MR512][2] = {
    KERNEL512_ROW(1), KERNEL512_ROW(2),  KERNEL512_ROW(3),  KERNEL512_ROW(4),
    KERNEL512_ROW(5), KERNEL512_ROW(6),  KERNEL512_ROW(7),  KERNEL512_ROW(8),
    KERNEL512_ROW(9), KERNEL512_ROW(10), KERNEL512_ROW(11), KERNEL512_ROW(12)};

/* Whether HYDRA_NO_SIMD or HYDRA_NO_AVX512 is set to anything but "0". */
static int env_off(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0");
}

/* The widest kernel this CPU runs: 2 AVX-512, 1 AVX2 with FMA, 0 plain C
 * (HYDRA_NO_SIMD: plain C; HYDRA_NO_AVX512: at most AVX2). */
static int simd_level(void) {
  static int known = -1;
  if (known < 0) {
    known = 0;
    if (!env_off("HYDRA_NO_SIMD") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
      known = __builtin_cpu_supports("avx512f") && !env_off("HYDRA_NO_AVX512") ? 2 : 1;
  }
  return known;
}

static int have_avx2(void) {
  return simd_level() >= 1;
}
#endif

int product_simd(void) {
#ifdef HAVE_AVX2_PATH
  return simd_level();
#else
  return 0;
#endif
}

/* Rows a block of x holds: MC512 on the AVX-512 path, MC on the others. */
static int row_block(void) {
  return product_simd() == 2 ? MC512 : MC;
}

/* Panels [p0, p1) of w, k from k0 for kc, packed one after another (KC *
 * NR floats apart) at panels. */
static void pack_panels(float *panels, const float *w, int n, int in, int p0, int p1, int k0,
                        int kc) {
#ifdef HAVE_AVX2_PATH
  const int avx2 = have_avx2();
#endif
  for (int p = p0; p < p1; p++) {
    const int j0 = p * NR, nr = n - j0 < NR ? n - j0 : NR;
    float *panel = panels + (size_t)(p - p0) * KC * NR;
#ifdef HAVE_AVX2_PATH
    if (avx2) {
      pack_avx2(panel, w + (size_t)j0 * in, in, nr, k0, kc);
      continue;
    }
#endif
    pack_plain(panel, w + (size_t)j0 * in, in, nr, k0, kc);
  }
}

/* Rows [0, m) of x (rows of ldx floats, from the block's first k) against
 * the packed panels [p0, p1): y's columns p0 * NR on. */
static void multiply_panels(float *y, int ldy, const float *x, int ldx, const float *panels, int m,
                            int n, int p0, int p1, int kc, int start_from_y) {
#ifdef HAVE_AVX2_PATH
  const int avx2 = have_avx2();
  if (simd_level() == 2) { /* two panels at a time, MR512 rows */
    for (int i0 = 0; i0 < m; i0 += MR512) {
      const int rb = m - i0 < MR512 ? m - i0 : MR512;
      for (int p = p0; p < p1; p += 2) {
        const int two = p + 1 < p1, j0 = p * NR, nra = n - j0 < NR ? n - j0 : NR;
        const int nrb = two ? (n - j0 - NR < NR ? n - j0 - NR : NR) : 0;
        const float *pa = panels + (size_t)(p - p0) * KC * NR, *pb = two ? pa + KC * NR : NULL;
        float *yt = y + (size_t)i0 * ldy + j0;
        for (int i = 0; i < rb && p + 2 < p1; i++) { /* the next pair's tile of y */
          __builtin_prefetch(yt + (size_t)i * ldy + 2 * NR, 1);
          __builtin_prefetch(yt + (size_t)i * ldy + 3 * NR, 1);
        }
        kernels512[rb - 1][two](yt, yt + NR, ldy, x + (size_t)i0 * ldx, ldx, pa, pb, nra, nrb, kc,
                                start_from_y, start_from_y);
      }
    }
    return;
  }
#endif
  for (int p = p0; p < p1; p++) {
    const int j0 = p * NR, nr = n - j0 < NR ? n - j0 : NR;
    const float *panel = panels + (size_t)(p - p0) * KC * NR;
    for (int i0 = 0; i0 < m; i0 += MR) {
      const int rb = m - i0 < MR ? m - i0 : MR;
      float *yt = y + (size_t)i0 * ldy + j0;
      /* The next tile's rows of y: fetched while this one multiplies (y is
       * read and written once per KC block, too large for L2 when the rows
       * are many). */
      for (int i = MR; i < 2 * MR && i0 + i < m; i++) {
        __builtin_prefetch(yt + (size_t)i * ldy, 1);
        __builtin_prefetch(yt + (size_t)i * ldy + NR - 1, 1);
      }
      const float *xt = x + (size_t)i0 * ldx;
#ifdef HAVE_AVX2_PATH
      if (avx2) {
        kernels[rb - 1](yt, ldy, xt, ldx, panel, nr, kc, start_from_y);
        continue;
      }
#endif
      kernel_plain(yt, ldy, xt, ldx, panel, rb, nr, kc, start_from_y);
    }
  }
}

/* Each thread's store of packed panels (NC panels of KC x NR floats: 1.5
 * MiB), kept between calls and freed when the thread ends; NULL when it
 * cannot be had (then one panel at a time on the stack: each packed once a
 * KC block as before, x read again for every panel). */
static pthread_key_t store_key;
static pthread_once_t store_once = PTHREAD_ONCE_INIT;
static int store_ok;

static void store_key_make(void) {
  store_ok = pthread_key_create(&store_key, free) == 0;
}

static float *thread_store(void) {
  pthread_once(&store_once, store_key_make);
  if (!store_ok)
    return NULL;
  float *store = pthread_getspecific(store_key);
  if (!store) {
    store = aligned_alloc(64, sizeof(float) * NC * KC * NR);
    if (store && pthread_setspecific(store_key, store) != 0) {
      free(store);
      store = NULL;
    }
  }
  return store;
}

void product_rows(float *y, int ldy, const float *x, const float *w, int rows, int n, int in,
                  int accumulate, int parallel) {
  if (rows <= 0 || n <= 0)
    return;
  const int n_panels = (n + NR - 1) / NR, mc = row_block();
  if (in <= 0) {
    for (int r = 0; r < rows && !accumulate; r++)
      memset(y + (size_t)r * ldy, 0, (size_t)n * sizeof(float));
    return;
  }
#pragma omp parallel if (parallel && n_panels > 1)
  {
    /* Each thread its own run of panels: no element is touched by two. A
     * chunk of them packed once per KC block serves every block of rows. */
    const long team = omp_get_num_threads(), id = omp_get_thread_num();
    const int p0 = (int)(n_panels * id / team), p1 = (int)(n_panels * (id + 1) / team);
    float one_panel[KC * NR] __attribute__((aligned(64))); /* the AVX-512 loads */
    float *store = p0 < p1 ? thread_store() : NULL, *panels = store ? store : one_panel;
    const int chunk = store ? NC : 1;
    for (int c0 = p0; c0 < p1; c0 += chunk) {
      const int c1 = c0 + chunk < p1 ? c0 + chunk : p1;
      for (int k0 = 0; k0 < in; k0 += KC) {
        const int kc = in - k0 < KC ? in - k0 : KC;
        pack_panels(panels, w, n, in, c0, c1, k0, kc);
        for (int r0 = 0; r0 < rows; r0 += mc)
          multiply_panels(y + (size_t)r0 * ldy, ldy, x + (size_t)r0 * in + k0, in, panels,
                          rows - r0 < mc ? rows - r0 : mc, n, c0, c1, kc, accumulate || k0 > 0);
      }
    }
  }
}

/* multiply_panels for a gated MLP's pair: the gate's panels at pg and the
 * up's at pu (the same columns), tile by tile; on the last KC block
 * (finish not NULL) each finished tile's rows go to finish while they are
 * in L1. */
static void multiply_pair(float *gate, float *up, int ldy, const float *x, int ldx, const float *pg,
                          const float *pu, int m, int n, int p0, int p1, int kc, int gate_from_y,
                          int up_from_y, product_finish_fn finish, void *ctx) {
#ifdef HAVE_AVX2_PATH
  const int avx2 = have_avx2();
#endif
#ifdef HAVE_AVX2_PATH
  const int wide = simd_level() == 2, mr = wide ? MR512 : MR;
#else
  const int wide = 0, mr = MR;
#endif
  /* multiply_panels' orders: on AVX-512 tiles of rows outer (x's tile in
   * L1), elsewhere panels outer (the panel pair in L1 or L2, x's rows
   * passing) */
  const int n_tiles = (m + mr - 1) / mr, n_p = p1 - p0;
  for (int outer = 0; outer < (wide ? n_tiles : n_p); outer++)
    for (int inner = 0; inner < (wide ? n_p : n_tiles); inner++) {
      const int i0 = (wide ? outer : inner) * mr, p = p0 + (wide ? inner : outer);
      const int rb = m - i0 < mr ? m - i0 : mr, j0 = p * NR, nr = n - j0 < NR ? n - j0 : NR;
      const float *panel_g = pg + (size_t)(p - p0) * KC * NR,
                  *panel_u = pu + (size_t)(p - p0) * KC * NR;
      float *gt = gate + (size_t)i0 * ldy + j0, *ut = up + (size_t)i0 * ldy + j0;
      const float *xt = x + (size_t)i0 * ldx;
#ifdef HAVE_AVX2_PATH
      if (wide) { /* the gate's panel and the up's as the kernel's two */
        kernels512[rb - 1][1](gt, ut, ldy, xt, ldx, panel_g, panel_u, nr, nr, kc, gate_from_y,
                              up_from_y);
      } else if (avx2) {
        kernels[rb - 1](gt, ldy, xt, ldx, panel_g, nr, kc, gate_from_y);
        kernels[rb - 1](ut, ldy, xt, ldx, panel_u, nr, kc, up_from_y);
      } else
#endif
      {
        kernel_plain(gt, ldy, xt, ldx, panel_g, rb, nr, kc, gate_from_y);
        kernel_plain(ut, ldy, xt, ldx, panel_u, rb, nr, kc, up_from_y);
      }
      if (finish)
        finish(ctx, gt, ut, ldy, rb, nr);
    }
}

void product_pair_rows(float *gate, float *up, const float *x, const float *wg, const float *wu,
                       int rows, int n, int in, int up_from_y, product_finish_fn finish, void *ctx,
                       int parallel) {
  if (rows <= 0 || n <= 0)
    return;
  const int n_panels = (n + NR - 1) / NR, mc = row_block();
  if (in <= 0) { /* empty sums: the gate 0, the up its start */
    for (int r = 0; r < rows; r++) {
      memset(gate + (size_t)r * n, 0, (size_t)n * sizeof(float));
      if (!up_from_y)
        memset(up + (size_t)r * n, 0, (size_t)n * sizeof(float));
    }
    for (int r0 = 0; finish && r0 < rows; r0 += MR) /* tiles of rows, as below */
      finish(ctx, gate + (size_t)r0 * n, up + (size_t)r0 * n, n, rows - r0 < MR ? rows - r0 : MR,
             n);
    return;
  }
#pragma omp parallel if (parallel && n_panels > 1)
  {
    /* product_rows's sharing, half the store for each of the pair. */
    const long team = omp_get_num_threads(), id = omp_get_thread_num();
    const int p0 = (int)(n_panels * id / team), p1 = (int)(n_panels * (id + 1) / team);
    float one_pair[2 * KC * NR] __attribute__((aligned(64)));
    float *store = p0 < p1 ? thread_store() : NULL, *panels = store ? store : one_pair;
    const int chunk = store ? NC / 2 : 1;
    float *panels_u = panels + (size_t)chunk * KC * NR;
    for (int c0 = p0; c0 < p1; c0 += chunk) {
      const int c1 = c0 + chunk < p1 ? c0 + chunk : p1;
      for (int k0 = 0; k0 < in; k0 += KC) {
        const int kc = in - k0 < KC ? in - k0 : KC, last = k0 + kc >= in;
        pack_panels(panels, wg, n, in, c0, c1, k0, kc);
        pack_panels(panels_u, wu, n, in, c0, c1, k0, kc);
        for (int r0 = 0; r0 < rows; r0 += mc)
          multiply_pair(gate + (size_t)r0 * n, up + (size_t)r0 * n, n, x + (size_t)r0 * in + k0, in,
                        panels, panels_u, rows - r0 < mc ? rows - r0 : mc, n, c0, c1, kc, k0 > 0,
                        up_from_y || k0 > 0, last ? finish : NULL, ctx);
      }
    }
  }
}
