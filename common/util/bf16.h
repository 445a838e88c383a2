/* bf16.h - bfloat16, the upper 16 bits of an IEEE-754 binary32: 8 exponent
 * bits as fp32 (same range), 7 mantissa bits (about 3 significant digits). */
#ifndef HYDRA_BF16_H
#define HYDRA_BF16_H

#include <stdint.h>
#include <string.h>

/* Round to nearest, ties to even, as torch's float32 -> bfloat16: a NaN
 * becomes the quiet NaN 0x7fc0, a value beyond bf16's largest finite becomes
 * infinite, a subnormal keeps its top bits. */
static inline uint16_t bf16_from_float(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return 0x7fc0u;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float bf16_to_float(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

#endif
