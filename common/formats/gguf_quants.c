#include "gguf_quants.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "gguf_quants_avx2.h"
#include "gguf_quants_grids.h"

/* Every decoder below computes each value with the same fp32 operations, in
 * the same order, as gguf-py's numpy dequantisation (gguf/quants.py), so that
 * the two agree bit for bit: a scale times an integer, then times the next
 * factor, never fused (this file is compiled with -ffp-contract=off).
 * Sub-blocks and bit planes are laid out as in llama.cpp's ggml-common.h. */

#define QK_K 256

/* IEEE 754 binary16 to binary32, exact for every input (subnormals, inf, NaN). */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0x1f)
    return f32_from_bits(sign | 0x7f800000u | mant << 13);
  if (exp != 0)
    return f32_from_bits(sign | (exp + 112) << 23 | mant << 13);
  if (mant == 0)
    return f32_from_bits(sign);
  uint32_t shift = 0;
  while (!(mant & 0x400)) {
    mant <<= 1;
    shift++;
  }
  return f32_from_bits(sign | (113 - shift) << 23 | (mant & 0x3ff) << 13);
}

static float load_f16(const uint8_t *p) {
  return f16_to_f32(load_u16(p));
}

static int int8_value(uint8_t q) {
  return (int)q - (q & 0x80 ? 256 : 0);
}

/* Byte k of grid row `row`, as the grid's value type. */
static int grid_u8(uint64_t row, int k) {
  return (int)(row >> (8 * k) & 0xff);
}

/* ggml's ksigns: 7 sign bits and an eighth that makes the count of minus
 * signs even. */
static unsigned even_signs(unsigned index7) {
  unsigned parity = index7 ^ index7 >> 4;
  parity ^= parity >> 2;
  parity ^= parity >> 1;
  return index7 | (parity & 1) << 7;
}

static float signed_value(float v, unsigned signs, int k) {
  return signs >> k & 1 ? -v : v;
}

/* ---- plain floats ---- */

static void decode_f32(const uint8_t *src, float *dst, size_t n) {
  memcpy(dst, src, n * sizeof(float));
}

static void decode_f16(const uint8_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    dst[i] = load_f16(src + 2 * i);
}

static void decode_bf16(const uint8_t *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++)
    dst[i] = f32_from_bits((uint32_t)load_u16(src + 2 * i) << 16);
}

/* ---- 32-element blocks ---- */

/* fp16 d, 16 bytes of nibbles: x[j] = d (lo - 8), x[j + 16] = d (hi - 8) */
static void decode_q4_0(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 18, dst += 32) {
    const float d = load_f16(src);
    for (int j = 0; j < 16; j++) {
      dst[j] = d * (float)((src[2 + j] & 0x0f) - 8);
      dst[j + 16] = d * (float)((src[2 + j] >> 4) - 8);
    }
  }
}

/* fp16 d, fp16 m, nibbles: x = d q + m */
static void decode_q4_1(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 20, dst += 32) {
    const float d = load_f16(src), m = load_f16(src + 2);
    for (int j = 0; j < 16; j++) {
      dst[j] = d * (float)(src[4 + j] & 0x0f) + m;
      dst[j + 16] = d * (float)(src[4 + j] >> 4) + m;
    }
  }
}

/* fp16 d, 32 high bits (bit j for x[j]), nibbles: x = d (q - 16) */
static void decode_q5_0(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 22, dst += 32) {
    const float d = load_f16(src);
    const uint32_t qh = load_u32(src + 2);
    for (int j = 0; j < 16; j++) {
      int lo = (src[6 + j] & 0x0f) | (int)(qh >> j & 1) << 4;
      int hi = (src[6 + j] >> 4) | (int)(qh >> (j + 16) & 1) << 4;
      dst[j] = d * (float)(lo - 16);
      dst[j + 16] = d * (float)(hi - 16);
    }
  }
}

/* fp16 d, fp16 m, 32 high bits, nibbles: x = d q + m */
static void decode_q5_1(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 24, dst += 32) {
    const float d = load_f16(src), m = load_f16(src + 2);
    const uint32_t qh = load_u32(src + 4);
    for (int j = 0; j < 16; j++) {
      int lo = (src[8 + j] & 0x0f) | (int)(qh >> j & 1) << 4;
      int hi = (src[8 + j] >> 4) | (int)(qh >> (j + 16) & 1) << 4;
      dst[j] = d * (float)lo + m;
      dst[j + 16] = d * (float)hi + m;
    }
  }
}

/* fp16 d, int8 q[32]: x = q d */
static void decode_q8_0(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 34, dst += 32) {
    const float d = load_f16(src);
    for (int j = 0; j < 32; j++)
      dst[j] = (float)int8_value(src[2 + j]) * d;
  }
}

/* e8m0 exponent e, nibbles indexing the doubled e2m1 values: x = 2^(e-128) v */
static void decode_mxfp4(const uint8_t *src, float *dst, size_t n) {
  static const int8_t E2M1_DOUBLED[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  for (size_t b = 0; b < n; b++, src += 17, dst += 32) {
    const uint32_t e = src[0];
    const float d = f32_from_bits(e < 2 ? 0x00200000u << e : (e - 1) << 23);
    for (int j = 0; j < 16; j++) {
      dst[j] = d * (float)E2M1_DOUBLED[src[1 + j] & 0x0f];
      dst[j + 16] = d * (float)E2M1_DOUBLED[src[1 + j] >> 4];
    }
  }
}

/* NVFP4: four sub-blocks of 16, each with an unsigned e4m3 scale (bias 7;
 * 0 and 0x7f read as 0), nibbles indexing the doubled e2m1 values:
 * x = scale / 2 * v (the first 8 values from the low nibbles). */
static float ue4m3_half(uint8_t x) {
  if (x == 0 || x == 0x7f)
    return 0.0f;
  const int e = (x >> 3) & 0xf, m = x & 7;
  const float v = e == 0 ? (float)m * 0x1p-9f : (1.0f + (float)m / 8.0f) * ldexpf(1.0f, e - 7);
  return v * 0.5f;
}

static void decode_nvfp4(const uint8_t *src, float *dst, size_t n) {
  static const int8_t E2M1_DOUBLED[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  for (size_t b = 0; b < n; b++, src += 36, dst += 64)
    for (int s = 0; s < 4; s++) {
      const float d = ue4m3_half(src[s]);
      const uint8_t *q = src + 4 + 8 * s;
      for (int j = 0; j < 8; j++) {
        dst[16 * s + j] = d * (float)E2M1_DOUBLED[q[j] & 0x0f];
        dst[16 * s + 8 + j] = d * (float)E2M1_DOUBLED[q[j] >> 4];
      }
    }
}

static const int8_t IQ4_VALUES[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

/* fp16 d, nibbles indexing a non-linear table: x = d v */
static void decode_iq4_nl(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 18, dst += 32) {
    const float d = load_f16(src);
    for (int j = 0; j < 16; j++) {
      dst[j] = d * (float)IQ4_VALUES[src[2 + j] & 0x0f];
      dst[j + 16] = d * (float)IQ4_VALUES[src[2 + j] >> 4];
    }
  }
}

/* ---- K-quants: 256-element super-blocks ---- */

/* scales[16] (lo nibble: scale, hi: min), 2-bit q[256] in 64 bytes, fp16 d,
 * fp16 dmin: x = (d sc) q - dmin m, per 16 elements */
static void decode_q2_k(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 84, dst += QK_K) {
    const uint8_t *scales = src, *qs = src + 16;
    const float d = load_f16(src + 80), dmin = load_f16(src + 82);
    for (int e = 0; e < QK_K; e++) {
      const uint8_t sc = scales[e / 16];
      const float dl = d * (float)(sc & 0x0f), ml = dmin * (float)(sc >> 4);
      const int q = qs[e / 128 * 32 + e % 32] >> (2 * (e % 128 / 32)) & 3;
      dst[e] = dl * (float)q - ml;
    }
  }
}

/* hmask[32], 2-bit low q in 64 bytes, 16 6-bit scales in 12 bytes, fp16 d:
 * x = (d (sc - 32)) (q_lo - 4 when the hmask bit is clear) */
static void decode_q3_k(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 110, dst += QK_K) {
    const uint8_t *hmask = src, *qs = src + 32, *scales = src + 96;
    const float d = load_f16(src + 108);
    float dl[16];
    for (int i = 0; i < 16; i++) {
      int lo = (i < 8 ? scales[i] : scales[i - 8] >> 4) & 0x0f;
      int hi = scales[8 + i % 4] >> (2 * (i / 4)) & 3;
      dl[i] = d * (float)((lo | hi << 4) - 32);
    }
    for (int e = 0; e < QK_K; e++) {
      const int lo = qs[e / 128 * 32 + e % 32] >> (2 * (e % 128 / 32)) & 3;
      const int high_clear = !(hmask[e % 32] >> (e / 32) & 1);
      dst[e] = dl[e / 16] * (float)(lo - 4 * high_clear);
    }
  }
}

/* The 8 6-bit scales and mins packed in 12 bytes (Q4_K, Q5_K). */
static void k_scale_min(const uint8_t *s, int j, int *scale, int *min) {
  if (j < 4) {
    *scale = s[j] & 0x3f;
    *min = s[j + 4] & 0x3f;
  } else {
    *scale = (s[j + 4] & 0x0f) | (s[j - 4] >> 2 & 0x30);
    *min = (s[j + 4] >> 4) | (s[j] >> 2 & 0x30);
  }
}

/* fp16 d, fp16 dmin, 12 bytes of scales/mins, nibbles: x = (d sc) q - dmin m,
 * per 32 elements */
static void decode_q4_k(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 144, dst += QK_K) {
    const float d = load_f16(src), dmin = load_f16(src + 2);
    const uint8_t *qs = src + 16;
    for (int j = 0; j < 8; j++) {
      int scale, min;
      k_scale_min(src + 4, j, &scale, &min);
      const float dl = d * (float)scale, ml = dmin * (float)min;
      for (int l = 0; l < 32; l++) {
        const int q = qs[j / 2 * 32 + l] >> (4 * (j % 2)) & 0x0f;
        dst[j * 32 + l] = dl * (float)q - ml;
      }
    }
  }
}

/* Q4_K with a fifth bit per element: qh[32], bit j of qh[l] for sub-block j */
static void decode_q5_k(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 176, dst += QK_K) {
    const float d = load_f16(src), dmin = load_f16(src + 2);
    const uint8_t *qh = src + 16, *qs = src + 48;
    for (int j = 0; j < 8; j++) {
      int scale, min;
      k_scale_min(src + 4, j, &scale, &min);
      const float dl = d * (float)scale, ml = dmin * (float)min;
      for (int l = 0; l < 32; l++) {
        const int q = (qs[j / 2 * 32 + l] >> (4 * (j % 2)) & 0x0f) | (qh[l] >> j & 1) << 4;
        dst[j * 32 + l] = dl * (float)q - ml;
      }
    }
  }
}

/* low nibbles in 128 bytes, 2 high bits in 64, int8 scales[16], fp16 d:
 * x = (d sc) (q - 32), per 16 elements. Element 32 k + i of a 128-element
 * half takes its low nibble from ql[32 (k % 2) + i] (high nibble when k >=
 * 2) and its high bits from qh[i] >> 2 k; the loops run 16 elements of one
 * scale at a time (the fixed shifts let the compiler vectorise them). */
static void decode_q6_k(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 210) {
    const uint8_t *scales = src + 192;
    const float d = load_f16(src + 208);
    for (int half = 0; half < 2; half++, dst += 128) {
      const uint8_t *ql = src + half * 64, *qh = src + 128 + half * 32;
      for (int k = 0; k < 4; k++) {
        const uint8_t *lo_bytes = ql + 32 * (k % 2);
        const int lo_shift = 4 * (k / 2), hi_shift = 2 * k;
        for (int s = 0; s < 2; s++) {
          const float dl = d * (float)int8_value(scales[half * 8 + 2 * k + s]);
          float *out = dst + 32 * k + 16 * s;
          for (int i = 0; i < 16; i++) {
            const int lo = lo_bytes[16 * s + i] >> lo_shift & 0x0f;
            const int hi = qh[16 * s + i] >> hi_shift & 3;
            out[i] = dl * (float)((lo | hi << 4) - 32);
          }
        }
      }
    }
  }
}

/* float d, int8 q[256], int16 sums[16] (unused here): x = d q */
static void decode_q8_k(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 292, dst += QK_K) {
    const float d = f32_from_bits(load_u32(src));
    for (int e = 0; e < QK_K; e++)
      dst[e] = d * (float)int8_value(src[4 + e]);
  }
}

/* fp16 d, 4-bit scale pairs, 6-bit scale highs, nibbles into the IQ4 table:
 * x = (d (sc - 32)) v, per 32 elements */
static void decode_iq4_xs(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 136, dst += QK_K) {
    const float d = load_f16(src);
    const uint16_t scales_h = load_u16(src + 2);
    const uint8_t *scales_l = src + 4, *qs = src + 8;
    for (int i = 0; i < 8; i++) {
      const int lo = scales_l[i / 2] >> (4 * (i % 2)) & 0x0f, hi = scales_h >> (2 * i) & 3;
      const float dl = d * (float)((lo | hi << 4) - 32);
      for (int j = 0; j < 16; j++) {
        dst[i * 32 + j] = dl * (float)IQ4_VALUES[qs[i * 16 + j] & 0x0f];
        dst[i * 32 + j + 16] = dl * (float)IQ4_VALUES[qs[i * 16 + j] >> 4];
      }
    }
  }
}

/* ---- ternary ---- */

/* 5 (or 4) base-3 digits per byte, read by multiplying the byte by 3^p
 * (mod 256) and taking the top bits of 3 times it; fp16 d: x = d (t - 1) */
static void decode_tq1_0(const uint8_t *src, float *dst, size_t n) {
  static const uint8_t POW3[5] = {1, 3, 9, 27, 81};
  for (size_t b = 0; b < n; b++, src += 54, dst += QK_K) {
    const uint8_t *qs = src, *qh = src + 48;
    const float d = load_f16(src + 52);
    for (int e = 0; e < QK_K; e++) {
      uint8_t byte, p;
      if (e < 160) {
        byte = qs[e % 32], p = (uint8_t)(e / 32);
      } else if (e < 240) {
        byte = qs[32 + (e - 160) % 16], p = (uint8_t)((e - 160) / 16);
      } else {
        byte = qh[(e - 240) % 4], p = (uint8_t)((e - 240) / 4);
      }
      const uint8_t shifted = (uint8_t)(byte * POW3[p]);
      dst[e] = d * (float)(((int)shifted * 3 >> 8) - 1);
    }
  }
}

/* 2-bit t in 64 bytes, fp16 d: x = d (t - 1) */
static void decode_tq2_0(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 66, dst += QK_K) {
    const float d = load_f16(src + 64);
    for (int e = 0; e < QK_K; e++) {
      const int t = src[e / 128 * 32 + e % 32] >> (2 * (e % 128 / 32)) & 3;
      dst[e] = d * (float)(t - 1);
    }
  }
}

/* ---- IQ types: indices into a lattice grid, signs, sub-block scales ---- */

/* Eight values of grid row `row` scaled by db, signs from bit k of `signs`. */
static void put_grid8(float *dst, float db, uint64_t row, unsigned signs) {
  for (int k = 0; k < 8; k++)
    dst[k] = signed_value(db * (float)grid_u8(row, k), signs, k);
}

/* fp16 d, then per 32 elements two u32: four grid bytes, then four 7-bit sign
 * indices and a 4-bit scale: db = d (0.5 + s) / 4 */
static void decode_iq2_xxs(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 66, dst += QK_K) {
    const float d = load_f16(src);
    for (int ib = 0; ib < 8; ib++) {
      const uint8_t *grid = src + 2 + 8 * ib;
      const uint32_t aux = load_u32(src + 2 + 8 * ib + 4);
      const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
      for (int l = 0; l < 4; l++)
        put_grid8(dst + 32 * ib + 8 * l, db, IQ2XXS_GRID[grid[l]],
                  even_signs(aux >> (7 * l) & 0x7f));
    }
  }
}

/* fp16 d, u16 q[32] (9-bit grid index, 7-bit sign index), 4-bit scales per
 * 16 elements: db = d (0.5 + s) / 4 */
static void decode_iq2_xs(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 74, dst += QK_K) {
    const float d = load_f16(src);
    const uint8_t *scales = src + 66;
    for (int k = 0; k < 32; k++) {
      const uint16_t q = load_u16(src + 2 + 2 * k);
      const int s = scales[k / 4] >> (4 * (k / 2 % 2)) & 0x0f;
      const float db = d * (0.5f + (float)s) * 0.25f;
      put_grid8(dst + 8 * k, db, IQ2XS_GRID[q & 511], even_signs(q >> 9));
    }
  }
}

/* fp16 d, grid bytes[32], sign bytes[32], 2 high index bits per grid byte,
 * 4-bit scales per 16 elements: db = d (0.5 + s) / 4 */
static void decode_iq2_s(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 82, dst += QK_K) {
    const float d = load_f16(src);
    const uint8_t *qs = src + 2, *signs = src + 34, *qh = src + 66, *scales = src + 74;
    for (int k = 0; k < 32; k++) {
      const int index = qs[k] | (qh[k / 4] >> (2 * (k % 4)) & 3) << 8;
      const int s = scales[k / 4] >> (4 * (k / 2 % 2)) & 0x0f;
      const float db = d * (0.5f + (float)s) * 0.25f;
      put_grid8(dst + 8 * k, db, IQ2S_GRID[index], signs[k]);
    }
  }
}

/* fp16 d, grid bytes[64] (rows of 4), then per 32 elements a u32 of four
 * 7-bit sign indices and a 4-bit scale: db = d (0.5 + s) / 2 */
static void decode_iq3_xxs(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 98, dst += QK_K) {
    const float d = load_f16(src);
    const uint8_t *qs = src + 2;
    for (int ib = 0; ib < 8; ib++) {
      const uint32_t aux = load_u32(src + 66 + 4 * ib);
      const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
      for (int l = 0; l < 4; l++) {
        const uint64_t row = (uint64_t)IQ3XXS_GRID[qs[8 * ib + 2 * l]] |
                             (uint64_t)IQ3XXS_GRID[qs[8 * ib + 2 * l + 1]] << 32;
        put_grid8(dst + 32 * ib + 8 * l, db, row, even_signs(aux >> (7 * l) & 0x7f));
      }
    }
  }
}

/* fp16 d, grid bytes[64] (rows of 4) with a ninth bit in qh[8], sign bytes[32],
 * 4-bit scales per 32 elements: db = d (1 + 2 s) */
static void decode_iq3_s(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 110, dst += QK_K) {
    const float d = load_f16(src);
    const uint8_t *qs = src + 2, *qh = src + 66, *signs = src + 74, *scales = src + 106;
    for (int k = 0; k < 64; k += 2) {
      const int s = scales[k / 16] >> (4 * (k / 8 % 2)) & 0x0f;
      const float db = d * (float)(1 + 2 * s);
      const int i0 = qs[k] | (qh[k / 8] >> (k % 8) & 1) << 8;
      const int i1 = qs[k + 1] | (qh[k / 8] >> (k % 8 + 1) & 1) << 8;
      const uint64_t row = (uint64_t)IQ3S_GRID[i0] | (uint64_t)IQ3S_GRID[i1] << 32;
      put_grid8(dst + 4 * k, db, row, signs[k / 2]);
    }
  }
}

/* Eight values of an IQ1 grid row (int8 -1, 0, 1) shifted by delta, times dl. */
static void put_grid_iq1(float *dst, float dl, float delta, int index) {
  const uint64_t row = IQ1S_GRID[index];
  for (int k = 0; k < 8; k++)
    dst[k] = dl * ((float)int8_value((uint8_t)grid_u8(row, k)) + delta);
}

/* fp16 d, grid bytes[32], per 32 elements a u16: 4 x 3 high index bits, a
 * 3-bit scale, the delta's sign: x = (d (2 s + 1)) (g +- 1/8) */
static void decode_iq1_s(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 50, dst += QK_K) {
    const float d = load_f16(src);
    const uint8_t *qs = src + 2;
    for (int ib = 0; ib < 8; ib++) {
      const uint16_t qh = load_u16(src + 34 + 2 * ib);
      const float dl = d * (float)(2 * (qh >> 12 & 7) + 1);
      const float delta = qh & 0x8000 ? -0.125f : 0.125f;
      for (int l = 0; l < 4; l++)
        put_grid_iq1(dst + 32 * ib + 8 * l, dl, delta, qs[4 * ib + l] | (qh >> (3 * l) & 7) << 8);
    }
  }
}

/* grid bytes[32], per 8 elements a nibble of qh (3 high index bits, the
 * delta's sign), four u16 holding 3-bit scales per 16 elements and, in their
 * top nibbles, the fp16 d: x = (d (2 s + 1)) (g +- 1/8) */
static void decode_iq1_m(const uint8_t *src, float *dst, size_t n) {
  for (size_t b = 0; b < n; b++, src += 56, dst += QK_K) {
    const uint8_t *qs = src, *qh = src + 32;
    uint16_t sc[4];
    for (int i = 0; i < 4; i++)
      sc[i] = load_u16(src + 48 + 2 * i);
    const float d = f16_to_f32(
        (uint16_t)(sc[0] >> 12 | (sc[1] >> 8 & 0x00f0) | (sc[2] >> 4 & 0x0f00) | (sc[3] & 0xf000)));
    for (int k = 0; k < 32; k++) {
      const int s = sc[k / 8] >> (3 * (k / 2 % 4)) & 7;
      const float dl = d * (float)(2 * s + 1);
      const int h = qh[k / 2] >> (4 * (k % 2)) & 0x0f;
      const float delta = h & 0x08 ? -0.125f : 0.125f;
      put_grid_iq1(dst + 8 * k, dl, delta, qs[k] | (h & 7) << 8);
    }
  }
}

/* ---- the AVX2 twins, where the CPU has them ---- */

/* -1: not decided yet (the first decode decides); 0: the scalar decoders;
 * 1: their AVX2 twins. */
static atomic_int simd_mode = -1;

int gguf_quants_set_simd(int on) {
  atomic_store_explicit(&simd_mode, on && gguf_quants_avx2_supported(), memory_order_relaxed);
  return atomic_load_explicit(&simd_mode, memory_order_relaxed);
}

int gguf_quants_simd(void) {
  int mode = atomic_load_explicit(&simd_mode, memory_order_relaxed);
  if (mode < 0) {
    const char *off = getenv("HYDRA_NO_SIMD");
    mode = gguf_quants_set_simd(!(off && *off && strcmp(off, "0") != 0));
  }
  return mode;
}

/* name_dispatch: the decoder the table lists, name's AVX2 twin or name. */
#if HYDRA_QUANTS_AVX2
#define DISPATCHED(name)                                                                           \
  static void name##_dispatch(const uint8_t *src, float *dst, size_t n) {                          \
    (gguf_quants_simd() ? name##_avx2 : name)(src, dst, n);                                        \
  }
#else
#define DISPATCHED(name)                                                                           \
  static void name##_dispatch(const uint8_t *src, float *dst, size_t n) {                          \
    name(src, dst, n);                                                                             \
  }
#endif
DISPATCHED(decode_f16)
DISPATCHED(decode_q4_0)
DISPATCHED(decode_q4_1)
DISPATCHED(decode_q5_0)
DISPATCHED(decode_q5_1)
DISPATCHED(decode_q8_0)
DISPATCHED(decode_q4_k)
DISPATCHED(decode_q5_k)
DISPATCHED(decode_q6_k)

/* ---- the table ---- */

static const gguf_quant_type_t TYPES[] = {
    [GGUF_TENSOR_F32] = {"F32", 1, 4, decode_f32},
    [GGUF_TENSOR_F16] = {"F16", 1, 2, decode_f16_dispatch},
    [GGUF_TENSOR_Q4_0] = {"Q4_0", 32, 18, decode_q4_0_dispatch},
    [GGUF_TENSOR_Q4_1] = {"Q4_1", 32, 20, decode_q4_1_dispatch},
    [GGUF_TENSOR_Q5_0] = {"Q5_0", 32, 22, decode_q5_0_dispatch},
    [GGUF_TENSOR_Q5_1] = {"Q5_1", 32, 24, decode_q5_1_dispatch},
    [GGUF_TENSOR_Q8_0] = {"Q8_0", 32, 34, decode_q8_0_dispatch},
    [GGUF_TENSOR_Q8_1] = {"Q8_1", 32, 40, NULL},
    [GGUF_TENSOR_Q2_K] = {"Q2_K", QK_K, 84, decode_q2_k},
    [GGUF_TENSOR_Q3_K] = {"Q3_K", QK_K, 110, decode_q3_k},
    [GGUF_TENSOR_Q4_K] = {"Q4_K", QK_K, 144, decode_q4_k_dispatch},
    [GGUF_TENSOR_Q5_K] = {"Q5_K", QK_K, 176, decode_q5_k_dispatch},
    [GGUF_TENSOR_Q6_K] = {"Q6_K", QK_K, 210, decode_q6_k_dispatch},
    [GGUF_TENSOR_Q8_K] = {"Q8_K", QK_K, 292, decode_q8_k},
    [GGUF_TENSOR_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, decode_iq2_xxs},
    [GGUF_TENSOR_IQ2_XS] = {"IQ2_XS", QK_K, 74, decode_iq2_xs},
    [GGUF_TENSOR_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, decode_iq3_xxs},
    [GGUF_TENSOR_IQ1_S] = {"IQ1_S", QK_K, 50, decode_iq1_s},
    [GGUF_TENSOR_IQ4_NL] = {"IQ4_NL", 32, 18, decode_iq4_nl},
    [GGUF_TENSOR_IQ3_S] = {"IQ3_S", QK_K, 110, decode_iq3_s},
    [GGUF_TENSOR_IQ2_S] = {"IQ2_S", QK_K, 82, decode_iq2_s},
    [GGUF_TENSOR_IQ4_XS] = {"IQ4_XS", QK_K, 136, decode_iq4_xs},
    [GGUF_TENSOR_I8] = {"I8", 1, 1, NULL},
    [GGUF_TENSOR_I16] = {"I16", 1, 2, NULL},
    [GGUF_TENSOR_I32] = {"I32", 1, 4, NULL},
    [GGUF_TENSOR_I64] = {"I64", 1, 8, NULL},
    [GGUF_TENSOR_F64] = {"F64", 1, 8, NULL},
    [GGUF_TENSOR_IQ1_M] = {"IQ1_M", QK_K, 56, decode_iq1_m},
    [GGUF_TENSOR_BF16] = {"BF16", 1, 2, decode_bf16},
    [GGUF_TENSOR_TQ1_0] = {"TQ1_0", QK_K, 54, decode_tq1_0},
    [GGUF_TENSOR_TQ2_0] = {"TQ2_0", QK_K, 66, decode_tq2_0},
    [GGUF_TENSOR_MXFP4] = {"MXFP4", 32, 17, decode_mxfp4},
    [GGUF_TENSOR_NVFP4] = {"NVFP4", 64, 36, decode_nvfp4},
    [GGUF_TENSOR_Q1_0] = {"Q1_0", 128, 18, NULL},
};
#define N_TYPES (sizeof(TYPES) / sizeof(TYPES[0]))

const gguf_quant_type_t *gguf_quant_type(uint32_t type) {
  if (type >= N_TYPES || !TYPES[type].name)
    return NULL;
  return &TYPES[type];
}

/* About this many elements per task: enough to hide the scheduling, few
 * enough to spread a 1 MiB read over every thread. */
#define ELEMENTS_PER_TASK 4096

void gguf_quants_dequantise(const gguf_quant_type_t *type, const uint8_t *src, float *dst,
                            size_t n_blocks) {
  const size_t per_task =
      type->block_size >= ELEMENTS_PER_TASK ? 1 : ELEMENTS_PER_TASK / type->block_size;
  const long n_tasks = (long)((n_blocks + per_task - 1) / per_task);
#pragma omp parallel for schedule(static) if (n_tasks > 1)
  for (long t = 0; t < n_tasks; t++) {
    const size_t first = (size_t)t * per_task;
    const size_t count = n_blocks - first < per_task ? n_blocks - first : per_task;
    type->decode(src + first * type->type_size, dst + first * type->block_size, count);
  }
}
