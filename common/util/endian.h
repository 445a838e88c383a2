/* endian.h - little-endian fields of file formats (GGUF, safetensors, the
 * quantised blocks), read from bytes at any alignment, and a float from its
 * IEEE-754 bits. Pure; safe anywhere. */
#ifndef HYDRA_ENDIAN_H
#define HYDRA_ENDIAN_H

#include <stdint.h>
#include <string.h>

static inline uint16_t load_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t load_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t load_u64(const uint8_t *p) {
  return (uint64_t)load_u32(p) | (uint64_t)load_u32(p + 4) << 32;
}

static inline float f32_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

#endif
