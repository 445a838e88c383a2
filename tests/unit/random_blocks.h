/* random_blocks.h - seeded random weights in a GGUF block format, for the
 * op suite and the quantized-product benchmark. */
#ifndef HYDRA_RANDOM_BLOCKS_H
#define HYDRA_RANDOM_BLOCKS_H

#include <stdint.h>
#include <string.h>

#include "bf16.h"
#include "gguf_quants.h"

/* A finite fp16 of magnitude in [2^-6, 2^-1) and random sign: a block's scale. */
static inline uint16_t random_f16_scale(double (*rnd)(void)) {
  const uint64_t r = (uint64_t)((rnd() + 1.0) * 0.5 * (double)(1ULL << 40));
  return (uint16_t)((r & 1) << 15 | (9 + (r >> 1) % 5) << 10 | (r >> 4 & 0x3ff));
}

/* n_blocks random blocks of `type`: random bytes, with every fp16 scale
 * field (their byte offsets in llama.cpp's ggml-common.h) set to a finite
 * one; F16/BF16/F32 rows hold random values of [-1, 1). rnd: uniform in
 * [-1, 1), the caller's seeded generator. */
static inline void random_blocks(uint32_t type, uint8_t *dst, size_t n_blocks,
                                 double (*rnd)(void)) {
  const gguf_quant_type_t *tt = gguf_quant_type(type);
  for (size_t i = 0; i < n_blocks * tt->type_size; i++)
    dst[i] = (uint8_t)((rnd() + 1.0) * 128.0);
  int scales[2] = {-1, -1};
  switch (type) {
  case GGUF_TENSOR_Q4_1:
  case GGUF_TENSOR_Q5_1:
  case GGUF_TENSOR_Q4_K:
  case GGUF_TENSOR_Q5_K:
    scales[1] = 2;
    /* fall through */
  case GGUF_TENSOR_Q4_0:
  case GGUF_TENSOR_Q5_0:
  case GGUF_TENSOR_Q8_0:
    scales[0] = 0;
    break;
  case GGUF_TENSOR_Q6_K:
    scales[0] = 208;
    break;
  }
  for (size_t b = 0; b < n_blocks; b++) {
    uint8_t *blk = dst + b * tt->type_size;
    for (int k = 0; k < 2; k++)
      if (scales[k] >= 0) {
        uint16_t h = random_f16_scale(rnd);
        blk[scales[k]] = (uint8_t)(h & 0xff), blk[scales[k] + 1] = (uint8_t)(h >> 8);
      }
    if (type == GGUF_TENSOR_F16) {
      uint16_t h = random_f16_scale(rnd);
      blk[0] = (uint8_t)(h & 0xff), blk[1] = (uint8_t)(h >> 8);
    } else if (type == GGUF_TENSOR_BF16) {
      uint16_t h = bf16_from_float((float)rnd());
      blk[0] = (uint8_t)(h & 0xff), blk[1] = (uint8_t)(h >> 8);
    } else if (type == GGUF_TENSOR_F32) {
      float f = (float)rnd();
      memcpy(blk, &f, 4);
    }
  }
}

#endif
