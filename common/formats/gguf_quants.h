/* gguf_quants.h - ggml's tensor types: their block layouts and their
 * dequantisation to fp32.
 *
 * One table holds every type ggml defines: its name, how many elements a
 * block holds, how many bytes a block takes, and (for the types hydra
 * decodes) the function that turns one block into fp32. The layouts are
 * llama.cpp's (ggml-common.h); every decoder gives, bit for bit, what
 * gguf-py's gguf.quants.dequantize gives (tests/unit/formats/test_quants.c).
 *
 * Thread-safety: the table is constant; gguf_quants_dequantise may be called
 * from several threads at once (it runs its own OpenMP loop over blocks). */
#ifndef HYDRA_GGUF_QUANTS_H
#define HYDRA_GGUF_QUANTS_H

#include <stddef.h>
#include <stdint.h>

/* ggml_type numbers as they appear in a GGUF tensor info. */
typedef enum {
  GGUF_TENSOR_F32 = 0,
  GGUF_TENSOR_F16 = 1,
  GGUF_TENSOR_Q4_0 = 2,
  GGUF_TENSOR_Q4_1 = 3,
  GGUF_TENSOR_Q5_0 = 6,
  GGUF_TENSOR_Q5_1 = 7,
  GGUF_TENSOR_Q8_0 = 8,
  GGUF_TENSOR_Q8_1 = 9,
  GGUF_TENSOR_Q2_K = 10,
  GGUF_TENSOR_Q3_K = 11,
  GGUF_TENSOR_Q4_K = 12,
  GGUF_TENSOR_Q5_K = 13,
  GGUF_TENSOR_Q6_K = 14,
  GGUF_TENSOR_Q8_K = 15,
  GGUF_TENSOR_IQ2_XXS = 16,
  GGUF_TENSOR_IQ2_XS = 17,
  GGUF_TENSOR_IQ3_XXS = 18,
  GGUF_TENSOR_IQ1_S = 19,
  GGUF_TENSOR_IQ4_NL = 20,
  GGUF_TENSOR_IQ3_S = 21,
  GGUF_TENSOR_IQ2_S = 22,
  GGUF_TENSOR_IQ4_XS = 23,
  GGUF_TENSOR_I8 = 24,
  GGUF_TENSOR_I16 = 25,
  GGUF_TENSOR_I32 = 26,
  GGUF_TENSOR_I64 = 27,
  GGUF_TENSOR_F64 = 28,
  GGUF_TENSOR_IQ1_M = 29,
  GGUF_TENSOR_BF16 = 30,
  GGUF_TENSOR_TQ1_0 = 34,
  GGUF_TENSOR_TQ2_0 = 35,
  GGUF_TENSOR_MXFP4 = 39,
  GGUF_TENSOR_NVFP4 = 40,
  GGUF_TENSOR_Q1_0 = 41, /* named, not decoded: gguf-py has no dequantiser to check it against */
} gguf_tensor_type_t;

/* Decodes n consecutive blocks at `src` (n * type_size bytes) into
 * n * block_size floats, on the calling thread. */
typedef void (*gguf_block_decoder_t)(const uint8_t *src, float *dst, size_t n);

typedef struct {
  const char *name;            /* "Q4_K", as ggml names it */
  uint32_t block_size;         /* elements per block */
  uint32_t type_size;          /* bytes per block */
  gguf_block_decoder_t decode; /* NULL: hydra does not decode this type */
} gguf_quant_type_t;

/* The type with ggml number `type`, or NULL when ggml defines no such type. */
const gguf_quant_type_t *gguf_quant_type(uint32_t type);

/* Decodes n_blocks consecutive blocks of a type that has a decoder into
 * n_blocks * block_size floats, in parallel over blocks (OpenMP). The caller
 * checks that the type decodes (gguf_quant_type(type)->decode). */
void gguf_quants_dequantise(const gguf_quant_type_t *type, const uint8_t *src, float *dst,
                            size_t n_blocks);

/* Whether the decoders of the types multiplied in blocks (F16, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) run their AVX2 twins (1) or the scalar
 * code (0): the twins where the CPU has AVX2 and F16C, unless the
 * environment variable HYDRA_NO_SIMD is set (and not "0") at the first
 * decode. Both give the same floats, bit for bit. */
int gguf_quants_simd(void);

/* Turns the AVX2 twins off (on = 0) or on where the CPU has them; returns
 * gguf_quants_simd(). For tests and benchmarks: not while other threads
 * decode. */
int gguf_quants_set_simd(int on);

#endif
