/* test_quants - dequantisation of every GGUF tensor type
 * (common/formats/gguf_quants.c) against gguf-py.
 *
 * usage: test_quants ROOT
 *   (a) ROOT/tests/golden/quants/<TYPE>.bin (tests/golden/make_quant_golden.py)
 *       holds blocks that exercise every code path of a type and gguf-py's
 *       dequantisation of them (Q8_K: numpy's d * q; gguf-py has none). Every
 *       type hydra decodes must have one; pass: every value equal bit for bit
 *       (both sides compute the same fp32 products in the same order), and
 *       the block layout (elements, bytes) equal to gguf-py's.
 *   (b) the same blocks repeated to about a million values, decoded in one
 *       call (OpenMP over blocks): bit for bit again, every copy.
 *   (a) and (b) run twice where the CPU has AVX2 and F16C: with the decoders'
 *       AVX2 twins (gguf_quants_set_simd(1)), then with the scalar code.
 *   (c) every type llama.cpp writes decodes; the types ggml defines that
 *       hydra does not decode (Q8_1, I8 .. F64) have no decoder; numbers ggml
 *       does not define have no type. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf_quants.h"

#define MAX_TYPE 64
#define TILED_VALUES (1 << 20)

typedef struct {
  uint32_t type, n_blocks, block_size, type_size;
  uint8_t *blocks;
  float *want;
} golden_t;

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads ROOT/tests/golden/quants/NAME.bin; 0 or -1 (a failure counted). */
static int golden_read(const char *root, const char *name, golden_t *gd) {
  char path[2048];
  snprintf(path, sizeof(path), "%s/tests/golden/quants/%s.bin", root, name);
  FILE *f = fopen(path, "rb");
  uint8_t head[20];
  if (!f || fread(head, 1, sizeof(head), f) != sizeof(head) || memcmp(head, "HQG1", 4) != 0) {
    FAIL("%s: missing or not a quant golden (run tests/golden/make_quant_golden.py)", path);
    if (f)
      fclose(f);
    return -1;
  }
  gd->type = le32(head + 4);
  gd->n_blocks = le32(head + 8);
  gd->block_size = le32(head + 12);
  gd->type_size = le32(head + 16);
  size_t n_bytes = (size_t)gd->n_blocks * gd->type_size;
  size_t n_values = (size_t)gd->n_blocks * gd->block_size;
  gd->blocks = malloc(n_bytes);
  gd->want = malloc(n_values * sizeof(float));
  int ok = gd->blocks && gd->want && gd->n_blocks > 0 && gd->n_blocks < 4096 &&
           fread(gd->blocks, 1, n_bytes, f) == n_bytes &&
           fread(gd->want, sizeof(float), n_values, f) == n_values && fgetc(f) == EOF;
  fclose(f);
  if (!ok) {
    FAIL("%s: truncated or malformed", path);
    free(gd->blocks);
    free(gd->want);
    return -1;
  }
  return 0;
}

static uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof(u));
  return u;
}

/* Number of values of got that differ in any bit from want; prints the
 * first, unless `what` is NULL. */
static size_t count_mismatches(const char *what, const float *got, const float *want, size_t n,
                               uint32_t block_size) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (bits_of(got[i]) != bits_of(want[i]) && bad++ == 0 && what)
      printf("  %s: value %zu (block %zu, element %zu): got %.9g (0x%08x), gguf-py %.9g "
             "(0x%08x)\n",
             what, i, i / block_size, i % block_size, (double)got[i], bits_of(got[i]),
             (double)want[i], bits_of(want[i]));
  return bad;
}

static void test_type(const char *root, uint32_t type, const gguf_quant_type_t *qt) {
  golden_t gd;
  if (golden_read(root, qt->name, &gd))
    return;
  CHECK(gd.type == type && gd.block_size == qt->block_size && gd.type_size == qt->type_size,
        "%s: gguf-py says type %u, %u elements in %u bytes; hydra says type %u, %u in %u", qt->name,
        gd.type, gd.block_size, gd.type_size, type, qt->block_size, qt->type_size);
  if (gd.block_size != qt->block_size || gd.type_size != qt->type_size)
    goto done;
  const size_t n_values = (size_t)gd.n_blocks * gd.block_size;
  float *got = malloc(n_values * sizeof(float));
  const size_t copies = TILED_VALUES / n_values + 1;
  uint8_t *tiled = malloc(copies * gd.n_blocks * gd.type_size);
  float *tiled_got = malloc(copies * n_values * sizeof(float));
  if (!got || !tiled || !tiled_got) {
    FAIL("%s: out of memory", qt->name);
    goto free_all;
  }
  gguf_quants_dequantise(qt, gd.blocks, got, gd.n_blocks);
  size_t bad = count_mismatches(qt->name, got, gd.want, n_values, gd.block_size);
  printf("  %-8s %3u blocks of %3u in %3u bytes: %zu of %zu values differ from gguf-py\n", qt->name,
         gd.n_blocks, gd.block_size, gd.type_size, bad, n_values);
  CHECK(bad == 0, "%s: %zu values differ from gguf-py's", qt->name, bad);

  for (size_t c = 0; c < copies; c++)
    memcpy(tiled + c * gd.n_blocks * gd.type_size, gd.blocks, (size_t)gd.n_blocks * gd.type_size);
  gguf_quants_dequantise(qt, tiled, tiled_got, copies * gd.n_blocks);
  size_t tiled_bad = 0;
  for (size_t c = 0; c < copies; c++)
    tiled_bad += count_mismatches(tiled_bad ? NULL : qt->name, tiled_got + c * n_values, gd.want,
                                  n_values, gd.block_size);
  CHECK(tiled_bad == 0, "%s: %zu of %zu values differ when decoded on threads", qt->name, tiled_bad,
        copies * n_values);
free_all:
  free(got);
  free(tiled);
  free(tiled_got);
done:
  free(gd.blocks);
  free(gd.want);
}

static const gguf_quant_type_t *by_name(const char *name, uint32_t *type) {
  for (uint32_t t = 0; t < MAX_TYPE; t++) {
    const gguf_quant_type_t *qt = gguf_quant_type(t);
    if (qt && strcmp(qt->name, name) == 0) {
      *type = t;
      return qt;
    }
  }
  return NULL;
}

static void test_table(void) {
  static const char *const WRITTEN[] = {
      "F32",   "F16",     "BF16",  "Q4_0",   "Q4_1",   "Q5_0",  "Q5_1",  "Q8_0",    "Q2_K",
      "Q3_K",  "Q4_K",    "Q5_K",  "Q6_K",   "Q8_K",   "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS",
      "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4",   "NVFP4"};
  for (size_t i = 0; i < sizeof(WRITTEN) / sizeof(WRITTEN[0]); i++) {
    uint32_t type = 0;
    const gguf_quant_type_t *qt = by_name(WRITTEN[i], &type);
    CHECK(qt && qt->decode, "%s: llama.cpp writes it, hydra has no decoder", WRITTEN[i]);
  }
  static const char *const NOT_DECODED[] = {"Q8_1", "I8", "I16", "I32", "I64", "F64"};
  for (size_t i = 0; i < sizeof(NOT_DECODED) / sizeof(NOT_DECODED[0]); i++) {
    uint32_t type = 0;
    const gguf_quant_type_t *qt = by_name(NOT_DECODED[i], &type);
    CHECK(qt && !qt->decode, "%s: expected a known type without a decoder", NOT_DECODED[i]);
  }
  static const uint32_t UNDEFINED[] = {4, 5, 31, 32, 33, 36, 37, 38, 1000, UINT32_MAX};
  for (size_t i = 0; i < sizeof(UNDEFINED) / sizeof(UNDEFINED[0]); i++)
    CHECK(gguf_quant_type(UNDEFINED[i]) == NULL, "type %u is not ggml's", UNDEFINED[i]);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_quants ROOT\n");
    return 2;
  }
  int n_types = 0;
  for (int simd = 1; simd >= 0; simd--) {
    if (gguf_quants_set_simd(simd) != simd)
      continue;
    printf("(a, b) every decoded type against gguf-py, alone and on threads (%s)\n",
           simd ? "AVX2 twins" : "scalar decoders");
    n_types = 0;
    for (uint32_t t = 0; t < MAX_TYPE; t++) {
      const gguf_quant_type_t *qt = gguf_quant_type(t);
      if (qt && qt->decode) {
        test_type(argv[1], t, qt);
        n_types++;
      }
    }
  }
  gguf_quants_set_simd(1);
  printf("  %d types decoded\n(c) the table\n", n_types);
  test_table();
  return check_exit("test_quants");
}
