/* test_quants_simd - the decoders' AVX2 twins (common/formats/
 * gguf_quants_avx2.c) against the scalar decoders, bit for bit.
 *
 * usage: test_quants_simd [SEED]
 *   For each type the backends multiply in blocks (Q4_0, Q4_1, Q5_0, Q5_1,
 *   Q8_0, Q4_K, Q5_K, Q6_K; F16: a block of one value, so every fp16 value
 *   once, signalling NaNs too): seeded random blocks in which each fp16 field
 *   (scale, min) takes, block by block, every one of the 65,536 fp16 values
 *   (zeros, subnormals, the largest normals, inf, NaN with any payload)
 *   while the others are random fp16 values of any kind; decoded with
 *   gguf_quants_set_simd(1) and gguf_quants_set_simd(0), in runs of 1 to 37
 *   blocks from unaligned addresses. Pass: every float's bits equal (NaN
 *   included), except in a Q4_1/Q5_1 block whose m is NaN and whose d is NaN
 *   or infinite (d q is NaN when d is, or when d is infinite and q = 0):
 *   there d q + m can add two NaNs, and which one's payload comes out depends on the
 *   operand order a compiler picks for the commutative add (C leaves it
 *   open; GCC's builds agree, Clang's need not), so both sides need only be
 *   NaN. The scalar decoders are checked against gguf-py by test_quants.
 *   Skips (77) on a CPU without AVX2 and F16C. With HYDRA_NO_SIMD set (not
 *   "0") it checks only that the decoders start on the scalar code. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf_quants.h"

#define N_F16 65536

static uint64_t rng_state;
static uint64_t next_u64(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

typedef struct {
  uint32_t type;
  int f16_fields[2]; /* byte offsets of the block's fp16 fields; -1: none */
} simd_type_t;

static const simd_type_t TYPES[] = {
    {GGUF_TENSOR_Q4_0, {0, -1}}, {GGUF_TENSOR_Q4_1, {0, 2}},    {GGUF_TENSOR_Q5_0, {0, -1}},
    {GGUF_TENSOR_Q5_1, {0, 2}},  {GGUF_TENSOR_Q8_0, {0, -1}},   {GGUF_TENSOR_Q4_K, {0, 2}},
    {GGUF_TENSOR_Q5_K, {0, 2}},  {GGUF_TENSOR_Q6_K, {208, -1}}, {GGUF_TENSOR_F16, {0, -1}},
};

static uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof(u));
  return u;
}

static void put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xff), p[1] = (uint8_t)(v >> 8);
}

static int f16_is_inf_or_nan(const uint8_t *p) {
  return (p[1] & 0x7c) == 0x7c;
}

static int f16_is_nan(const uint8_t *p) {
  return f16_is_inf_or_nan(p) && ((p[1] & 0x03) | p[0]) != 0;
}

/* Whether the block's values are d q + m where d q can be NaN (d NaN, or
 * infinite times q = 0) and m is NaN. */
static int two_nans(const simd_type_t *st, const uint8_t *block) {
  return (st->type == GGUF_TENSOR_Q4_1 || st->type == GGUF_TENSOR_Q5_1) &&
         f16_is_inf_or_nan(block + st->f16_fields[0]) && f16_is_nan(block + st->f16_fields[1]);
}

/* Decodes n_blocks blocks at src into dst in runs of 1 to 37 blocks. */
static void decode_in_runs(const gguf_quant_type_t *qt, const uint8_t *src, float *dst,
                           size_t n_blocks) {
  size_t run = 1;
  for (size_t b = 0; b < n_blocks; b += run, run = run % 37 + 1) {
    const size_t n = n_blocks - b < run ? n_blocks - b : run;
    qt->decode(src + b * qt->type_size, dst + b * qt->block_size, n);
  }
}

/* Field `swept` of block i holds fp16 value i; the other fields are random. */
static void test_type(const simd_type_t *st, int swept) {
  const gguf_quant_type_t *qt = gguf_quant_type(st->type);
  const size_t n_values = (size_t)N_F16 * qt->block_size;
  uint8_t *blocks = malloc((size_t)N_F16 * qt->type_size + 1);
  float *twin = malloc((n_values + 1) * sizeof(float)), *scalar = malloc(n_values * sizeof(float));
  if (!blocks || !twin || !scalar) {
    FAIL("%s: out of memory", qt->name);
    goto done;
  }
  uint8_t *src = blocks + 1; /* odd addresses: the twins load unaligned */
  for (size_t i = 0; i < (size_t)N_F16 * qt->type_size; i++)
    src[i] = (uint8_t)next_u64();
  for (uint32_t b = 0; b < N_F16; b++)
    for (int k = 0; k < 2; k++)
      if (st->f16_fields[k] >= 0)
        put_u16(src + (size_t)b * qt->type_size + st->f16_fields[k],
                k == swept ? (uint16_t)b : (uint16_t)next_u64());
  CHECK(gguf_quants_set_simd(1) == 1, "the AVX2 twins did not turn on");
  decode_in_runs(qt, src, twin + 1, N_F16);
  CHECK(gguf_quants_set_simd(0) == 0, "the AVX2 twins did not turn off");
  decode_in_runs(qt, src, scalar, N_F16);
  size_t bad = 0, first = 0, nan_pairs = 0, nan_pairs_equal = 0;
  for (size_t i = 0; i < n_values; i++) {
    const int equal = bits_of(twin[1 + i]) == bits_of(scalar[i]);
    const int pair = two_nans(st, src + i / qt->block_size * qt->type_size);
    nan_pairs += pair;
    nan_pairs_equal += pair && equal;
    const int both_nan = isnan(twin[1 + i]) && isnan(scalar[i]);
    if (!equal && !(pair && both_nan) && bad++ == 0)
      first = i;
  }
  printf("  %-5s fp16 field %d swept: %zu of %zu values differ", qt->name, swept, bad, n_values);
  if (nan_pairs)
    printf(" (%zu from two NaNs: %zu equal bit for bit, the rest both NaN)", nan_pairs,
           nan_pairs_equal);
  printf("\n");
  CHECK(bad == 0,
        "%s: %zu values differ; first: value %zu (block %zu, element %zu, fp16 0x%04zx): AVX2 "
        "%.9g (0x%08x), scalar %.9g (0x%08x)",
        qt->name, bad, first, first / qt->block_size, first % qt->block_size,
        first / qt->block_size, (double)twin[1 + first], bits_of(twin[1 + first]),
        (double)scalar[first], bits_of(scalar[first]));
done:
  free(blocks);
  free(twin);
  free(scalar);
}

int main(int argc, char **argv) {
  const uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 20261207;
  rng_state = seed * 2654435761ULL + 1;
  check_seed(seed);
  const char *off = getenv("HYDRA_NO_SIMD");
  if (off && *off && strcmp(off, "0") != 0) {
    CHECK(gguf_quants_simd() == 0, "HYDRA_NO_SIMD=%s: the decoders still run the AVX2 twins", off);
    return check_exit("test_quants_simd (HYDRA_NO_SIMD set)");
  }
  const int by_default = gguf_quants_simd();
  if (!gguf_quants_set_simd(1)) {
    printf("test_quants_simd: this CPU has no AVX2 and F16C; nothing to compare (skipped)\n");
    return 77;
  }
  CHECK(by_default == 1, "the CPU has AVX2 and F16C, yet the twins were off by default");
  for (size_t t = 0; t < sizeof(TYPES) / sizeof(TYPES[0]); t++)
    for (int k = 0; k < 2; k++)
      if (TYPES[t].f16_fields[k] >= 0)
        test_type(&TYPES[t], k);
  gguf_quants_set_simd(1);
  return check_exit("test_quants_simd");
}
