#include "gguf_quants_avx2.h"

#if HYDRA_QUANTS_AVX2

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

/* Every function here is compiled for AVX2 and F16C alone (no FMA: each
 * product and sum rounds once, as in gguf_quants.c), whatever the build's
 * -march; gguf_quants.c calls them only where the CPU has both. The layouts
 * and the fp32 operations per value are the scalar decoders' (see there). */
#define AVX2_FN __attribute__((target("avx2,f16c")))

/* AVX2 (which also says the OS saves the ymm registers) and F16C (CPUID
 * leaf 1, ecx: Clang's __builtin_cpu_supports does not know "f16c"). */
int gguf_quants_avx2_supported(void) {
  unsigned eax, ebx, ecx, edx;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) &&
         (ecx & bit_F16C);
}

/* F16C's widening is exact for every fp16 (subnormals made normal, inf
 * kept; a signalling NaN comes back quiet, which no decoded value shows: a
 * NaN scale only reaches the output through a product, which quiets it). */
AVX2_FN static inline __m256 f16_scale(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return _mm256_set1_ps(_cvtsh_ss(h));
}

AVX2_FN static inline __m256 widen8(__m128i q8) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
}

/* dst[0..16) = d * q for 16 int8 q. */
AVX2_FN static inline void store16(float *dst, __m128i q, __m256 d) {
  _mm256_storeu_ps(dst, _mm256_mul_ps(d, widen8(q)));
  _mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, widen8(_mm_srli_si128(q, 8))));
}

/* dst[0..32) = d * q for 32 int8 q. */
AVX2_FN static inline void store32(float *dst, __m256i q, __m256 d) {
  store16(dst, _mm256_castsi256_si128(q), d);
  store16(dst + 16, _mm256_extracti128_si256(q, 1), d);
}

/* dst[0..32) = d * q + m (Q4_1, Q5_1). */
AVX2_FN static inline void store32_plus(float *dst, __m256i q, __m256 d, __m256 m) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int k = 0; k < 4; k++)
    _mm256_storeu_ps(dst + 8 * k, _mm256_add_ps(_mm256_mul_ps(d, widen8(part[k])), m));
}

/* dst[0..32) = dl * q - ml (Q4_K, Q5_K). */
AVX2_FN static inline void store32_minus(float *dst, __m256i q, __m256 dl, __m256 ml) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int k = 0; k < 4; k++)
    _mm256_storeu_ps(dst + 8 * k, _mm256_sub_ps(_mm256_mul_ps(dl, widen8(part[k])), ml));
}

/* A 32-element block's 16 nibble bytes as its 32 values: low nibbles
 * (elements 0..15), then high nibbles (16..31). */
AVX2_FN static inline __m256i nibbles32(const uint8_t *qs) {
  const __m128i bytes = _mm_loadu_si128((const __m128i *)qs), low4 = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(bytes, low4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
  return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Byte e = 0x10 where bit e of qh is set, else 0 (Q5_0, Q5_1). */
AVX2_FN static inline __m256i fifth_bits32(const uint8_t *qh_bytes) {
  uint32_t qh;
  memcpy(&qh, qh_bytes, 4);
  const __m256i byte_of =
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i bit_of = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), byte_of);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of), bit_of);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

/* Eight fp16 to fp32, bit for bit the scalar widening: F16C returns a
 * signalling NaN quiet, so its quiet bit is cleared again. */
AVX2_FN static inline __m256 widen_f16x8(__m128i h) {
  const __m256i h32 = _mm256_cvtepu16_epi32(h);
  const __m256i exponent_ones_not_quiet = _mm256_cmpeq_epi32(
      _mm256_and_si256(h32, _mm256_set1_epi32(0x7e00)), _mm256_set1_epi32(0x7c00));
  const __m256i payload_zero =
      _mm256_cmpeq_epi32(_mm256_and_si256(h32, _mm256_set1_epi32(0x1ff)), _mm256_setzero_si256());
  const __m256i signalling = _mm256_andnot_si256(payload_zero, exponent_ones_not_quiet);
  const __m256i clear = _mm256_and_si256(signalling, _mm256_set1_epi32(0x00400000));
  return _mm256_castsi256_ps(_mm256_andnot_si256(clear, _mm256_castps_si256(_mm256_cvtph_ps(h))));
}

AVX2_FN void decode_f16_avx2(const uint8_t *src, float *dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, widen_f16x8(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
  if (i < n) {
    uint8_t rest[16] = {0};
    float out[8];
    memcpy(rest, src + 2 * i, 2 * (n - i));
    _mm256_storeu_ps(out, widen_f16x8(_mm_loadu_si128((const __m128i *)rest)));
    memcpy(dst + i, out, (n - i) * sizeof(float));
  }
}

AVX2_FN void decode_q4_0_avx2(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 18, dst += 32)
    store32(dst, _mm256_sub_epi8(nibbles32(src + 2), _mm256_set1_epi8(8)), f16_scale(src));
}

AVX2_FN void decode_q4_1_avx2(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 20, dst += 32)
    store32_plus(dst, nibbles32(src + 4), f16_scale(src), f16_scale(src + 2));
}

AVX2_FN void decode_q5_0_avx2(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 22, dst += 32) {
    const __m256i q = _mm256_or_si256(nibbles32(src + 6), fifth_bits32(src + 2));
    store32(dst, _mm256_sub_epi8(q, _mm256_set1_epi8(16)), f16_scale(src));
  }
}

AVX2_FN void decode_q5_1_avx2(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 24, dst += 32) {
    const __m256i q = _mm256_or_si256(nibbles32(src + 8), fifth_bits32(src + 4));
    store32_plus(dst, q, f16_scale(src), f16_scale(src + 2));
  }
}

AVX2_FN void decode_q8_0_avx2(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 34, dst += 32)
    store32(dst, _mm256_loadu_si256((const __m256i *)(src + 2)), f16_scale(src));
}

/* The 8 6-bit scales and mins packed in 12 bytes (Q4_K, Q5_K), as
 * gguf_quants.c's k_scale_min. */
static void k_scale_min(const uint8_t *s, int j, int *scale, int *min) {
  if (j < 4) {
    *scale = s[j] & 0x3f;
    *min = s[j + 4] & 0x3f;
  } else {
    *scale = (s[j + 4] & 0x0f) | (s[j - 4] >> 2 & 0x30);
    *min = (s[j + 4] >> 4) | (s[j] >> 2 & 0x30);
  }
}

/* Sub-block j's factors: dl = d * scale, ml = dmin * min, as fp32 scalars. */
AVX2_FN static inline void k_factors(const uint8_t *src, int j, float d, float dmin, __m256 *dl,
                                     __m256 *ml) {
  int scale, min;
  k_scale_min(src + 4, j, &scale, &min);
  const float dl_scalar = d * (float)scale, ml_scalar = dmin * (float)min;
  *dl = _mm256_set1_ps(dl_scalar);
  *ml = _mm256_set1_ps(ml_scalar);
}

/* A K-quant's fp16 d and dmin (its first 4 bytes). */
AVX2_FN static inline void k_d_dmin(const uint8_t *src, float *d, float *dmin) {
  uint16_t h[2];
  memcpy(h, src, 4);
  *d = _cvtsh_ss(h[0]);
  *dmin = _cvtsh_ss(h[1]);
}

AVX2_FN void decode_q4_k_avx2(const uint8_t *src, float *dst, size_t n) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (size_t b = 0; b < n; b++, src += 144, dst += 256) {
    float d, dmin;
    k_d_dmin(src, &d, &dmin);
    for (int pair = 0; pair < 4; pair++) {
      const __m256i bytes = _mm256_loadu_si256((const __m256i *)(src + 16 + 32 * pair));
      const __m256i q[2] = {_mm256_and_si256(bytes, low4),
                            _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4)};
      for (int s = 0; s < 2; s++) {
        __m256 dl, ml;
        k_factors(src, 2 * pair + s, d, dmin, &dl, &ml);
        store32_minus(dst + 64 * pair + 32 * s, q[s], dl, ml);
      }
    }
  }
}

AVX2_FN void decode_q5_k_avx2(const uint8_t *src, float *dst, size_t n) {
  const __m256i low4 = _mm256_set1_epi8(0x0f), fifth = _mm256_set1_epi8(0x10);
  for (size_t b = 0; b < n; b++, src += 176, dst += 256) {
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(src + 16));
    float d, dmin;
    k_d_dmin(src, &d, &dmin);
    for (int pair = 0; pair < 4; pair++) {
      const __m256i bytes = _mm256_loadu_si256((const __m256i *)(src + 48 + 32 * pair));
      const __m256i low[2] = {_mm256_and_si256(bytes, low4),
                              _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4)};
      for (int s = 0; s < 2; s++) {
        const int j = 2 * pair + s;
        const __m256i bit = _mm256_set1_epi8((char)(1 << j));
        const __m256i high =
            _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), fifth);
        __m256 dl, ml;
        k_factors(src, j, d, dmin, &dl, &ml);
        store32_minus(dst + 32 * j, _mm256_or_si256(low[s], high), dl, ml);
      }
    }
  }
}

/* Per 128-element half: element 32 k + i takes its low nibble from ql[32 (k
 * % 2) + i] (high nibble when k >= 2) and its high bits from qh[i] >> 2 k;
 * its scale is scales[8 half + 2 k + i / 16]. */
AVX2_FN void decode_q6_k_avx2(const uint8_t *src, float *dst, size_t n) {
  const __m256i low4 = _mm256_set1_epi8(0x0f), low2 = _mm256_set1_epi8(3),
                bias = _mm256_set1_epi8(32);
  for (size_t b = 0; b < n; b++, src += 210) {
    const uint8_t *scales = src + 192;
    uint16_t h;
    memcpy(&h, src + 208, 2);
    const float d = _cvtsh_ss(h);
    for (int half = 0; half < 2; half++, dst += 128) {
      const uint8_t *ql = src + half * 64;
      const __m256i qh = _mm256_loadu_si256((const __m256i *)(src + 128 + half * 32));
      for (int k = 0; k < 4; k++) {
        const __m256i lo_bytes = _mm256_loadu_si256((const __m256i *)(ql + 32 * (k % 2)));
        const __m256i lo =
            _mm256_and_si256(k < 2 ? lo_bytes : _mm256_srli_epi16(lo_bytes, 4), low4);
        const __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), low2);
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), bias);
        for (int s = 0; s < 2; s++) {
          const float dl = d * (float)(int8_t)scales[half * 8 + 2 * k + s];
          store16(dst + 32 * k + 16 * s,
                  s ? _mm256_extracti128_si256(q, 1) : _mm256_castsi256_si128(q),
                  _mm256_set1_ps(dl));
        }
      }
    }
  }
}

#else

int gguf_quants_avx2_supported(void) {
  return 0;
}

#endif
