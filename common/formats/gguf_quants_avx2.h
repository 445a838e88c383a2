/* gguf_quants_avx2.h - AVX2 twins of the decoders of the block types the
 * backends multiply in their blocks (gguf_quants.c dispatches to them).
 *
 * Each gives, bit for bit, its scalar decoder's floats: the same fp32
 * products and sums in the same order, one rounding each (no fused
 * multiply-add; the file is compiled with -ffp-contract=off), fp16 scales
 * widened by F16C, which is exact (tests/unit/formats/test_quants_simd.c).
 * One case is the compiler's: where Q4_1's or Q5_1's d q + m adds two NaNs
 * (m NaN, d NaN or infinite), the NaN that comes out is the payload of the
 * operand the compiler put first in the commutative add; GCC's builds agree
 * with the scalar code there too, Clang's give a NaN of another payload.
 * Callable only where gguf_quants_avx2_supported() says so. Present on
 * x86-64 with GCC or Clang (unless built with -DHYDRA_QUANTS_AVX2=0);
 * elsewhere gguf_quants_avx2_supported() is 0 and the decoders are absent. */
#ifndef HYDRA_GGUF_QUANTS_AVX2_H
#define HYDRA_GGUF_QUANTS_AVX2_H

#include <stddef.h>
#include <stdint.h>

#ifndef HYDRA_QUANTS_AVX2 /* -DHYDRA_QUANTS_AVX2=0 builds without the twins */
#if defined(__x86_64__) && defined(__GNUC__)
#define HYDRA_QUANTS_AVX2 1
#else
#define HYDRA_QUANTS_AVX2 0
#endif
#endif

/* 1 when this CPU runs AVX2 and F16C (and the twins are built), else 0. */
int gguf_quants_avx2_supported(void);

#if HYDRA_QUANTS_AVX2
/* As gguf_block_decoder_t: n blocks at src into n * block_size floats. */
void decode_f16_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q4_0_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q4_1_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q5_0_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q5_1_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q8_0_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q4_k_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q5_k_avx2(const uint8_t *src, float *dst, size_t n);
void decode_q6_k_avx2(const uint8_t *src, float *dst, size_t n);
#endif

#endif
