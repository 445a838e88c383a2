/* test_gguf - the GGUF reader (common/formats/gguf.c) and the llama GGUF
 * loader (common/model/loader_gguf.c).
 *
 * usage: test_gguf ROOT
 *   (a) golden: ROOT/tests/data/gguf/quant_types.gguf, written by gguf-py
 *       (tests/golden/make_gguf_golden.py), holds one tensor per type F32, F16,
 *       BF16, Q8_0, Q4_0, Q4_1 and gguf-py's own dequantisation of each. Pass:
 *       max |ours - gguf-py| / max |gguf-py| <= 1e-6 per tensor; metadata of
 *       every kind reads back as written.
 *   (b) broken files, written to a mkdtemp directory from a small valid file:
 *       each must fail to open with an error naming the file and the fault
 *       (run under ASan + UBSan to show nothing is read out of bounds).
 *   (c) ROOT/tests/data/gguf/tiny_llama*.gguf (same script): the config, the
 *       un-permuted q/k weights against the Hugging Face layout the script
 *       started from (bound 1e-6 as above), and the missing-tensor and
 *       shape-mismatch errors; tiny_llama_unset_ids.gguf
 *       (tests/golden/make_unset_ids_gguf.py), whose BOS, padding and
 *       separator ids are 0xFFFFFFFF and EOS past the vocabulary, loads with
 *       both unset. Then ROOT/tests/golden/quants/tiny_llama_mixed.gguf
 *       (tests/golden/make_mixed_quant_golden.py), a Q4_0 file with a Q6_K
 *       output.weight and Q4_K/Q5_K/Q6_K/Q5_0 layers, loads.
 *   (d) SmolLM2-135M (Q4_1 GGUF) from $HYDRA_SMOLLM2 or
 *       ROOT/models/smollm2-135m/: prints its tensor types, tokenizer keys and
 *       config and checks the config; skipped when absent unless
 *       HYDRA_REQUIRE_MODELS=1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "checkpoint.h"
#include "error.h"
#include "gguf.h"
#include "model.h"

#define BOUND 1e-6

static float *read_tensor(const gguf_t *g, const char *name) {
  char err[HYDRA_ERR_LEN];
  const gguf_tensor_t *t = gguf_tensor_find(g, name);
  if (!t) {
    FAIL("%s: no tensor %s", gguf_path(g), name);
    return NULL;
  }
  float *x = malloc((size_t)t->n_elements * sizeof(float));
  if (!x || gguf_tensor_read_f32(g, t, x, (size_t)t->n_elements, err)) {
    FAIL("reading %s: %s", name, x ? err : "out of memory");
    free(x);
    return NULL;
  }
  return x;
}

/* ---- (a) golden dequantisation and metadata ---- */

static void test_metadata(const gguf_t *g) {
  char err[HYDRA_ERR_LEN];
  uint32_t u32 = 0;
  int32_t i32 = 0;
  int64_t i64 = 0;
  float f32 = 0;
  int b = 0;
  const char *s = NULL;
  uint64_t len = 0;
  gguf_array_t a;
  CHECK(gguf_version(g) == 3, "version %u, expected 3", gguf_version(g));
  CHECK(gguf_alignment(g) == 64, "alignment %u, expected 64", gguf_alignment(g));
  CHECK(gguf_data_offset(g) % 64 == 0, "data offset %llu not aligned",
        (unsigned long long)gguf_data_offset(g));
  CHECK(!gguf_get_u32(g, "test.u32", &u32, err) && u32 == 3000000000u, "test.u32");
  CHECK(!gguf_get_int(g, "test.u32", &i64, err) && i64 == 3000000000LL, "test.u32 as int");
  CHECK(!gguf_get_i32(g, "test.i32", &i32, err) && i32 == -7, "test.i32");
  CHECK(!gguf_get_int(g, "test.i32", &i64, err) && i64 == -7, "test.i32 as int");
  CHECK(!gguf_get_f32(g, "test.f32", &f32, err) && f32 == 0.15625f, "test.f32");
  CHECK(!gguf_get_bool(g, "test.bool", &b, err) && b == 1, "test.bool");
  CHECK(!gguf_get_string(g, "test.string", &s, &len, err) && len == 11 &&
            strcmp(s, "h\xc3\xa9llo gguf") == 0,
        "test.string");
  CHECK(!gguf_get_string(g, "general.architecture", &s, NULL, err) && strcmp(s, "test") == 0,
        "general.architecture");

  const char *want_strings[] = {"alpha", "", "\xc4\xa0the", "a b"};
  if (gguf_get_array(g, "test.strings", &a, err) || a.type != GGUF_TYPE_STRING || a.n != 4)
    FAIL("test.strings: %s", err);
  else
    for (uint64_t i = 0; i < 4; i++) {
      const char *si = gguf_array_string(&a, i, &len);
      CHECK(si && len == strlen(want_strings[i]) && strcmp(si, want_strings[i]) == 0,
            "test.strings[%llu]", (unsigned long long)i);
    }
  CHECK(gguf_array_string(&a, 4, NULL) == NULL, "string index past the end");
  const int32_t want_ints[] = {3, -1, 2147483647, -2147483647 - 1};
  CHECK(!gguf_get_array(g, "test.ints", &a, err) && a.type == GGUF_TYPE_INT32 && a.n == 4 &&
            memcmp(a.data, want_ints, sizeof(want_ints)) == 0,
        "test.ints");
  const float want_floats[] = {0.5f, -2.25f, 1e-3f};
  CHECK(!gguf_get_array(g, "test.floats", &a, err) && a.type == GGUF_TYPE_FLOAT32 && a.n == 3 &&
            memcmp(a.data, want_floats, sizeof(want_floats)) == 0,
        "test.floats");

  err[0] = '\0';
  CHECK(gguf_get_u32(g, "test.i32", &u32, err) != 0 && strstr(err, "test.i32") &&
            strstr(err, "INT32"),
        "u32 getter on an INT32 key: '%s'", err);
  err[0] = '\0';
  CHECK(gguf_get_f32(g, "no.such.key", &f32, err) != 0 && strstr(err, "no.such.key") &&
            strstr(err, "missing"),
        "getter on a missing key: '%s'", err);
  CHECK(gguf_find_key(g, "no.such.key") == -1, "find_key of a missing key");
  CHECK(gguf_tensor_find(g, "no.such.tensor") == NULL, "tensor_find of a missing tensor");
}

static void test_golden(const char *root) {
  char path[2048], err[HYDRA_ERR_LEN];
  snprintf(path, sizeof(path), "%s/tests/data/gguf/quant_types.gguf", root);
  gguf_t *g = gguf_open(path, err);
  if (!g) {
    FAIL("%s", err);
    return;
  }
  test_metadata(g);
  const char *names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "f16_small", "f16_large"};
  const char *types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "F16", "F16"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char expected_name[64];
    snprintf(expected_name, sizeof(expected_name), "expected.%s", names[i]);
    const gguf_tensor_t *t = gguf_tensor_find(g, names[i]);
    CHECK(t && strcmp(gguf_tensor_type_name(t->type), types[i]) == 0, "%s has type %s", names[i],
          t ? gguf_tensor_type_name(t->type) : "(absent)");
    float *got = read_tensor(g, names[i]), *want = read_tensor(g, expected_name);
    if (got && want) {
      double e = check_rel_error(got, want, (size_t)t->n_elements);
      printf("  golden %-12s %-5s %4llu values: relative error %.3g (bound %g)\n", names[i],
             types[i], (unsigned long long)t->n_elements, e, BOUND);
      CHECK(e <= BOUND, "%s: relative error %g > %g", names[i], e, BOUND);
    }
    free(got);
    free(want);
  }
  const gguf_tensor_t *t = gguf_tensor_find(g, "q4_1");
  float small[8];
  err[0] = '\0';
  CHECK(t && gguf_tensor_read_f32(g, t, small, 8, err) != 0 && strstr(err, "elements"),
        "reading into a too small buffer: '%s'", err);
  gguf_close(g);
}

/* ---- (b) broken files ---- */

typedef struct {
  uint8_t *p;
  size_t n, cap;
  int oom;
} bytes_t;

static void put(bytes_t *b, const void *src, size_t n) {
  if (b->oom)
    return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->n + n)
      cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, src, n);
  b->n += n;
}

static void put_u32(bytes_t *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(b, x, 4);
}

static void put_u64(bytes_t *b, uint64_t v) {
  put_u32(b, (uint32_t)v);
  put_u32(b, (uint32_t)(v >> 32));
}

/* A GGUF string whose length field says `len` (the real length when 0). */
static void put_str(bytes_t *b, const char *s, uint64_t len) {
  put_u64(b, len ? len : strlen(s));
  put(b, s, strlen(s));
}

typedef enum {
  M_NONE,
  M_MAGIC,
  M_VERSION_99,
  M_VERSION_1,
  M_BIG_ENDIAN,
  M_N_TENSORS_HUGE,
  M_N_TENSORS_MAX,
  M_N_KV_HUGE,
  M_KEY_LEN_HUGE,
  M_STRING_LEN_HUGE,
  M_ARRAY_LEN_HUGE,
  M_STRING_ARRAY_HUGE,
  M_NESTED_ARRAY,
  M_KV_TYPE_13,
  M_DUP_KEY,
  M_ALIGNMENT_48,
  M_ALIGNMENT_INT32,
  M_N_DIMS_0,
  M_N_DIMS_9,
  M_TYPE_99,
  M_TYPE_4,
  M_NE_OVERFLOW,
  M_NE_HUGE,
  M_OFFSET_EOF,
  M_OFFSET_OVERFLOW,
  M_OFFSET_MISALIGNED,
  M_DUP_TENSOR,
  M_BLOCK_MISMATCH,
  M_NO_DATA,
  M_Q8_1, /* valid, but a type the reader cannot convert */
  N_MUTATIONS
} mutation_t;

static const struct {
  const char *name, *phrase;
} MUTATIONS[N_MUTATIONS] = {
    [M_NONE] = {"valid", NULL},
    [M_MAGIC] = {"magic", "not a GGUF file"},
    [M_VERSION_99] = {"version99", "version 99"},
    [M_VERSION_1] = {"version1", "version 1"},
    [M_BIG_ENDIAN] = {"big_endian", "big-endian"},
    [M_N_TENSORS_HUGE] = {"n_tensors_huge", "tensor count"},
    [M_N_TENSORS_MAX] = {"n_tensors_max", "tensor count"},
    [M_N_KV_HUGE] = {"n_kv_huge", "metadata count"},
    [M_KEY_LEN_HUGE] = {"key_len_2p60", "length 1152921504606846976"},
    [M_STRING_LEN_HUGE] = {"string_len_2p60", "length 1152921504606846976"},
    [M_ARRAY_LEN_HUGE] = {"array_len_2p60", "array of 1152921504606846976"},
    [M_STRING_ARRAY_HUGE] = {"string_array_2p60", "array of 1152921504606846976"},
    [M_NESTED_ARRAY] = {"nested_array", "array of arrays"},
    [M_KV_TYPE_13] = {"kv_type13", "unknown value type 13"},
    [M_DUP_KEY] = {"dup_key", "appears twice"},
    [M_ALIGNMENT_48] = {"alignment48", "power of two"},
    [M_ALIGNMENT_INT32] = {"alignment_int32", "expected UINT32"},
    [M_N_DIMS_0] = {"n_dims0", "n_dims = 0"},
    [M_N_DIMS_9] = {"n_dims9", "n_dims = 9"},
    [M_TYPE_99] = {"type99", "unknown type 99"},
    [M_TYPE_4] = {"type4", "unknown type 4"},
    [M_NE_OVERFLOW] = {"ne_overflow", "overflows"},
    [M_NE_HUGE] = {"ne_2p63", "overflows"},
    [M_OFFSET_EOF] = {"offset_eof", "beyond the end of the file"},
    [M_OFFSET_OVERFLOW] = {"offset_overflow", "beyond the end of the file"},
    [M_OFFSET_MISALIGNED] = {"offset_misaligned", "not a multiple of the alignment"},
    [M_DUP_TENSOR] = {"dup_tensor", "appears twice"},
    [M_BLOCK_MISMATCH] = {"block_mismatch", "block size"},
    [M_NO_DATA] = {"no_data", "larger than the file"},
    [M_Q8_1] = {"q8_1", NULL},
};

/* A small valid file, "test" architecture: three keys, tensor a (F32 [8, 2],
 * values i/4 - 1) and tensor b (Q4_0 [32], d = 0.5, nibbles j and 15 - j),
 * with one fault injected by `m`. *header_len gets the data section's start. */
static void build_file(bytes_t *b, mutation_t m, size_t *header_len) {
  b->n = 0;
  put(b, m == M_MAGIC ? "GGUX" : "GGUF", 4);
  put_u32(b, m == M_VERSION_99 ? 99 : m == M_VERSION_1 ? 1 : m == M_BIG_ENDIAN ? 0x03000000 : 3);
  put_u64(b, m == M_N_TENSORS_HUGE ? 1ull << 62 : m == M_N_TENSORS_MAX ? UINT64_MAX : 2);
  put_u64(b, m == M_N_KV_HUGE ? 1ull << 62 : 3);

  put_str(b, "general.architecture", m == M_KEY_LEN_HUGE ? 1ull << 60 : 0);
  put_u32(b, GGUF_TYPE_STRING);
  put_str(b, "test", m == M_STRING_LEN_HUGE ? 1ull << 60 : 0);

  put_str(b, m == M_DUP_KEY ? "general.architecture" : "test.values", 0);
  put_u32(b, m == M_KV_TYPE_13 ? 13 : GGUF_TYPE_ARRAY);
  put_u32(b, m == M_NESTED_ARRAY        ? GGUF_TYPE_ARRAY
             : m == M_STRING_ARRAY_HUGE ? GGUF_TYPE_STRING
                                        : GGUF_TYPE_UINT32);
  put_u64(b, m == M_ARRAY_LEN_HUGE || m == M_STRING_ARRAY_HUGE ? 1ull << 60 : 3);
  for (uint32_t i = 1; i <= 3; i++)
    put_u32(b, i);

  put_str(b, "general.alignment", 0);
  put_u32(b, m == M_ALIGNMENT_INT32 ? GGUF_TYPE_INT32 : GGUF_TYPE_UINT32);
  put_u32(b, m == M_ALIGNMENT_48 ? 48 : 32);

  put_str(b, "a", 0);
  put_u32(b, 2);
  put_u64(b, 8);
  put_u64(b, 2);
  put_u32(b, GGUF_TENSOR_F32);
  put_u64(b, 0);

  uint64_t b_ne0 = m == M_BLOCK_MISMATCH ? 16 : m == M_NE_HUGE ? 1ull << 63 : 32;
  put_str(b, m == M_DUP_TENSOR ? "a" : "b", 0);
  put_u32(b, m == M_N_DIMS_0 ? 0 : m == M_N_DIMS_9 ? 9 : m == M_NE_OVERFLOW ? 3 : 1);
  if (m == M_NE_OVERFLOW) {
    put_u64(b, 1ull << 32);
    put_u64(b, 1ull << 32);
    put_u64(b, 1ull << 32);
  } else {
    put_u64(b, b_ne0);
  }
  put_u32(b, m == M_TYPE_99  ? 99
             : m == M_TYPE_4 ? 4
             : m == M_Q8_1   ? GGUF_TENSOR_Q8_1
                             : GGUF_TENSOR_Q4_0);
  put_u64(b, m == M_OFFSET_EOF          ? 1ull << 20
             : m == M_OFFSET_OVERFLOW   ? UINT64_MAX - 31
             : m == M_OFFSET_MISALIGNED ? 68
                                        : 64);
  if (m == M_NO_DATA) {
    *header_len = b->n;
    return;
  }
  while (b->n % 32)
    put(b, "", 1);
  *header_len = b->n;
  for (int i = 0; i < 16; i++) {
    float x = (float)i / 4 - 1;
    put(b, &x, 4);
  }
  if (m == M_Q8_1) {
    uint8_t zeros[40] = {0};
    put(b, zeros, sizeof(zeros));
    return;
  }
  uint8_t block[18] = {0x00, 0x38}; /* fp16 0.5 */
  for (int j = 0; j < 16; j++)
    block[2 + j] = (uint8_t)(j | (15 - j) << 4);
  put(b, block, sizeof(block));
}

static int write_file(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t wrote = fwrite(p, 1, n, f);
  return fclose(f) == 0 && wrote == n ? 0 : -1;
}

/* gguf_open must fail with an error naming the file (and `phrase`). */
static void expect_open_failure(const char *path, const char *what, const char *phrase, int print) {
  char err[HYDRA_ERR_LEN] = "";
  gguf_t *g = gguf_open(path, err);
  if (g) {
    FAIL("%s: a file with %s opened without error", path, what);
    gguf_close(g);
    return;
  }
  CHECK(err[0] && strstr(err, path), "%s: the error for %s does not name the file: '%s'", path,
        what, err);
  if (phrase)
    CHECK(strstr(err, phrase) != NULL, "%s: the error for %s lacks '%s': '%s'", path, what, phrase,
          err);
  if (print)
    printf("  broken %-18s -> %s\n", what, err + strlen(path) + 2);
}

static void test_valid_synthetic(const char *path) {
  char err[HYDRA_ERR_LEN];
  gguf_t *g = gguf_open(path, err);
  if (!g) {
    FAIL("the valid synthetic file does not open: %s", err);
    return;
  }
  float *a = read_tensor(g, "a"), *q = read_tensor(g, "b");
  for (int i = 0; a && i < 16; i++)
    CHECK(a[i] == (float)i / 4 - 1, "synthetic a[%d] = %g", i, (double)a[i]);
  for (int j = 0; q && j < 16; j++)
    CHECK(q[j] == (float)(j - 8) * 0.5f && q[j + 16] == (float)(15 - j - 8) * 0.5f,
          "synthetic Q4_0 b[%d] = %g, b[%d] = %g", j, (double)q[j], j + 16, (double)q[j + 16]);
  free(a);
  free(q);
  gguf_close(g);
  err[0] = '\0';
  model_t *m = model_load(path, err);
  CHECK(!m && strstr(err, "architecture 'test'") && strstr(err, path),
        "loading a 'test' architecture as a model: '%s'", err);
  model_free(m);
}

static void test_broken(void) {
  const char *tmp = getenv("TMPDIR");
  char dir[1024], path[1200];
  snprintf(dir, sizeof(dir), "%s/test_gguf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir)) {
    FAIL("mkdtemp(%s) failed", dir);
    return;
  }
  bytes_t b = {0};
  size_t header_len;
  int n_files = 0;
  for (int m = 0; m < N_MUTATIONS; m++) {
    build_file(&b, (mutation_t)m, &header_len);
    snprintf(path, sizeof(path), "%s/%s.gguf", dir, MUTATIONS[m].name);
    if (b.oom || write_file(path, b.p, b.n)) {
      FAIL("cannot write %s", path);
      continue;
    }
    n_files++;
    if (m == M_NONE) {
      test_valid_synthetic(path);
    } else if (m == M_Q8_1) {
      char err[HYDRA_ERR_LEN] = "";
      gguf_t *g = gguf_open(path, err);
      const gguf_tensor_t *t = g ? gguf_tensor_find(g, "b") : NULL;
      float x[32];
      CHECK(t && gguf_tensor_read_f32(g, t, x, 32, err) != 0 && strstr(err, "tensor b ") &&
                strstr(err, "Q8_1"),
            "reading a Q8_1 tensor must fail naming the tensor and the type: '%s'", err);
      gguf_close(g);
    } else {
      expect_open_failure(path, MUTATIONS[m].name, MUTATIONS[m].phrase, 1);
    }
    unlink(path);
  }

  /* Truncations of the valid file: every 7 bytes, and the last byte. */
  build_file(&b, M_NONE, &header_len);
  int n_cuts = 0;
  for (size_t cut = 0; cut < b.n; cut = cut + 7 < b.n || cut == b.n - 1 ? cut + 7 : b.n - 1) {
    snprintf(path, sizeof(path), "%s/cut%zu.gguf", dir, cut);
    if (!b.oom && write_file(path, b.p, cut) == 0) {
      expect_open_failure(path, "truncation", NULL, 0);
      n_cuts++;
      n_files++;
    }
    unlink(path);
  }
  size_t mid = header_len + (b.n - header_len) / 2;
  snprintf(path, sizeof(path), "%s/cut_mid_data.gguf", dir);
  if (write_file(path, b.p, mid) == 0) {
    expect_open_failure(path, "mid-data cut", "beyond the end of the file", 1);
    n_files++;
  }
  unlink(path);
  printf("  broken: %d truncated copies (every 7 bytes) all rejected\n", n_cuts);
  snprintf(path, sizeof(path), "%s/absent.gguf", dir);
  expect_open_failure(path, "absent file", "cannot open", 1);
  expect_open_failure(dir, "directory", "not a regular file", 1);
  snprintf(path, sizeof(path), "%s/fifo.gguf", dir); /* opened without a writer: must not wait */
  if (mkfifo(path, 0600) == 0)
    expect_open_failure(path, "FIFO", "not a regular file", 1);
  else
    FAIL("mkfifo(%s) failed", path);
  unlink(path);
  free(b.p);
  if (rmdir(dir) != 0)
    FAIL("cannot remove %s", dir);
  printf("  broken: %d files written to %s\n", n_files, dir);
}

/* Truncations of a file gguf-py wrote: every 7 bytes through the header,
 * then every 301 bytes inside the data. A cut only in the padding after the
 * last tensor leaves a valid file. */
static void test_truncated_golden(const char *root) {
  char src[2048], dir[1024], path[1200], err[HYDRA_ERR_LEN];
  snprintf(src, sizeof(src), "%s/tests/data/gguf/quant_types.gguf", root);
  gguf_t *g = gguf_open(src, err);
  if (!g)
    return; /* reported by test_golden */
  uint64_t data = gguf_data_offset(g), end = data;
  for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
    const gguf_tensor_t *t = gguf_tensor(g, i);
    if (t->offset + t->n_bytes > end)
      end = t->offset + t->n_bytes;
  }
  gguf_close(g);
  FILE *f = fopen(src, "rb");
  uint8_t *p = malloc(1 << 16);
  size_t n = f && p ? fread(p, 1, 1 << 16, f) : 0;
  if (f)
    fclose(f);
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof(dir), "%s/test_gguf.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!n || !mkdtemp(dir)) {
    FAIL("cannot copy %s into a temporary directory", src);
    free(p);
    return;
  }
  int n_cuts = 0;
  for (size_t cut = 0; cut < n; cut += cut < data ? 7 : 301) {
    snprintf(path, sizeof(path), "%s/golden_cut%zu.gguf", dir, cut);
    if (write_file(path, p, cut) == 0) {
      gguf_t *h = gguf_open(path, err);
      if (h && cut < end)
        FAIL("%s: truncated at %zu of %zu bytes but opened", path, cut, n);
      if (!h)
        CHECK(strstr(err, path) != NULL, "%s: error does not name the file: %s", path, err);
      gguf_close(h);
      n_cuts++;
    }
    unlink(path);
  }
  printf("  broken: %d truncated copies of quant_types.gguf rejected\n", n_cuts);
  free(p);
  rmdir(dir);
}

/* ---- (c) the tiny llama ---- */

static void test_tiny_llama(const char *root) {
  char path[2048], expected_path[2048], err[HYDRA_ERR_LEN] = "";
  snprintf(path, sizeof(path), "%s/tests/data/gguf/tiny_llama.gguf", root);
  snprintf(expected_path, sizeof(expected_path), "%s/tests/data/gguf/tiny_llama_expected.gguf",
           root);
  model_t *m = model_load(path, err);
  if (!m) {
    FAIL("%s", err);
    return;
  }
  const model_config_t *c = &m->cfg;
  CHECK(strcmp(c->family, "llama") == 0, "family %s", c->family);
  CHECK(c->n_layers == 2 && c->d_model == 32 && c->n_heads == 4 && c->n_kv_heads == 2 &&
            c->head_dim == 8 && c->d_mlp == 16 && c->vocab_size == 20 && c->max_positions == 64,
        "tiny llama sizes: layers %d d %d heads %d kv %d head_dim %d mlp %d vocab %d ctx %d",
        c->n_layers, c->d_model, c->n_heads, c->n_kv_heads, c->head_dim, c->d_mlp, c->vocab_size,
        c->max_positions);
  CHECK(c->norm == NORM_RMSNORM && c->positions == POSITIONS_ROPE && c->mlp == MLP_SWIGLU &&
            c->activation == ACT_SILU && !c->qkv_bias && !c->o_bias && !c->mlp_bias &&
            !c->parallel_residual,
        "tiny llama kinds");
  CHECK(c->rope_theta == 50000.0f && c->rotary_dim == 8 && c->norm_eps == 1e-5f,
        "rope_theta %g rotary_dim %d eps %g", (double)c->rope_theta, c->rotary_dim,
        (double)c->norm_eps);
  CHECK(c->tied_unembed && m->unembed == m->tok_embed, "no output.weight: must be tied");
  CHECK(c->bos_id == 18 && c->eos_id == 19, "bos %d eos %d", c->bos_id, c->eos_id);
  CHECK(strcmp(m->weights_format, "gguf") == 0 && strcmp(m->path, path) == 0, "format/path");
  CHECK(strcmp(m->tensor_types, "F16,F32") == 0, "tensor_types '%s'", m->tensor_types);

  gguf_t *want = gguf_open(expected_path, err), *raw = gguf_open(path, err);
  if (!want || !raw) {
    FAIL("%s", err);
    goto done;
  }
  for (int l = 0; l < c->n_layers; l++) {
    const layer_weights_t *w = &m->layers[l];
    const struct {
      const char *suffix;
      const float *got;
      int permuted;
    } checks[] = {
        {"attn_q.weight", w->wq, 1},
        {"attn_k.weight", w->wk, 1},
        {"attn_v.weight", w->wv, 0},
        {"attn_output.weight", w->wo, 0},
        {"attn_norm.weight", w->attn_norm_w, 0},
        {"ffn_norm.weight", w->mlp_norm_w, 0},
        {"ffn_gate.weight", w->w_gate, 0},
        {"ffn_up.weight", w->w_up, 0},
        {"ffn_down.weight", w->w_down, 0},
    };
    for (size_t k = 0; k < sizeof(checks) / sizeof(checks[0]); k++) {
      char name[64];
      snprintf(name, sizeof(name), "blk.%d.%s", l, checks[k].suffix);
      /* q/k: against the Hugging Face layout; the rest: as stored. */
      const gguf_t *src = checks[k].permuted ? want : raw;
      const gguf_tensor_t *t = gguf_tensor_find(src, name);
      float *x = read_tensor(src, name);
      if (x && t) {
        double e = check_rel_error(checks[k].got, x, (size_t)t->n_elements);
        if (checks[k].permuted)
          printf("  tiny llama %-22s vs Hugging Face layout: relative error %.3g (bound %g)\n",
                 name, e, BOUND);
        CHECK(e <= BOUND, "%s: relative error %g > %g", name, e, BOUND);
      }
      if (x && checks[k].permuted) {
        float *stored = read_tensor(raw, name);
        CHECK(stored && check_rel_error(checks[k].got, stored, (size_t)t->n_elements) > 0.1,
              "%s: the loader did not un-permute", name);
        free(stored);
      }
      free(x);
    }
  }
  float *embed = read_tensor(raw, "token_embd.weight"),
        *norm = read_tensor(raw, "output_norm.weight");
  CHECK(embed && check_rel_error(m->tok_embed, embed, 20 * 32) == 0, "token_embd.weight");
  CHECK(norm && check_rel_error(m->final_norm_w, norm, 32) == 0, "output_norm.weight");
  free(embed);
  free(norm);

  /* The tokenizer arrays, as gguf-py wrote them. */
  gguf_array_t a;
  uint64_t len;
  const char *s;
  CHECK(!gguf_get_array(raw, "tokenizer.ggml.tokens", &a, err) && a.n == 20 &&
            (s = gguf_array_string(&a, 18, &len)) && strcmp(s, "<s>") == 0 && len == 3,
        "tokenizer.ggml.tokens");
  CHECK(!gguf_get_array(raw, "tokenizer.ggml.merges", &a, err) && a.n == 2 &&
            (s = gguf_array_string(&a, 1, NULL)) && strcmp(s, "t 2") == 0,
        "tokenizer.ggml.merges");
  CHECK(!gguf_get_array(raw, "tokenizer.ggml.token_type", &a, err) && a.type == GGUF_TYPE_INT32 &&
            a.n == 20 && ((const int32_t *)a.data)[19] == 3 && ((const int32_t *)a.data)[0] == 1,
        "tokenizer.ggml.token_type");
  CHECK(!gguf_get_array(raw, "tokenizer.ggml.scores", &a, err) && a.type == GGUF_TYPE_FLOAT32 &&
            a.n == 20 && ((const float *)a.data)[5] == -5.0f,
        "tokenizer.ggml.scores");
done:
  gguf_close(want);
  gguf_close(raw);
  model_free(m);

  const struct {
    const char *file, *want;
  } bad[] = {
      {"tiny_llama_missing.gguf", "missing tensor blk.1.ffn_up.weight"},
      {"tiny_llama_badshape.gguf",
       "tensor blk.1.attn_k.weight has shape [8, 3] but the config says [8, 4]"},
      {"quant_types.gguf", "architecture 'test' is not supported"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(path, sizeof(path), "%s/tests/data/gguf/%s", root, bad[i].file);
    err[0] = '\0';
    m = model_load(path, err);
    CHECK(!m && strstr(err, bad[i].want) && strstr(err, path), "%s: expected '%s', got '%s'",
          bad[i].file, bad[i].want, err);
    if (!m)
      printf("  loader %-26s -> %s\n", bad[i].file, err + strlen(path) + 2);
    model_free(m);
  }
}

/* A Q4_0 file with output.weight in Q6_K and layers in Q4_K, Q5_K, Q6_K and
 * Q5_0, as llama.cpp's _K_M recipes mix them, loads (its logits:
 * ctest golden_logits_tiny-llama-mixed-quants). */
/* Special ids as llama.cpp's converters write an absent token (0xFFFFFFFF)
 * or past the vocabulary read as unset, and the model loads (the tokenizer
 * side: test_tokenizer's unset ids). */
static void test_unset_ids(const char *root) {
  char path[2048], err[HYDRA_ERR_LEN] = "";
  snprintf(path, sizeof(path), "%s/tests/data/gguf/tiny_llama_unset_ids.gguf", root);
  model_t *m = model_load(path, err);
  if (!m) {
    FAIL("unset special ids: %s", err);
    return;
  }
  CHECK(m->cfg.bos_id == -1 && m->cfg.eos_id == -1,
        "unset special ids: model bos %d eos %d, want -1 -1", m->cfg.bos_id, m->cfg.eos_id);
  model_free(m);
}

/* The native load of the mixed file: the token embedding (Q4_0) and
 * output.weight (Q6_K) in their blocks, every row decoding to the fp32
 * load's floats; mapped (kept blocks used in place, llama's permuted q/k
 * copied) or, with HYDRA_NO_MMAP, read with pread (nothing borrowed). */
static void test_mixed_quants_native(const char *path, const model_t *fp32, int mapped) {
  char err[HYDRA_ERR_LEN] = "";
  gguf_t *g = gguf_open(path, err);
  model_t *m = g ? model_from_gguf_native(g, err) : NULL;
  gguf_close(g); /* the mapping outlives the file's context */
  if (!m) {
    FAIL("native load of %s: %s", path, err);
    return;
  }
  const int d = m->cfg.d_model;
  CHECK(!m->tok_embed && !m->unembed && m->embed_blocks && m->unembed_blocks &&
            m->embed_blocks->type == GGUF_TENSOR_Q4_0 &&
            m->unembed_blocks->type == GGUF_TENSOR_Q6_K,
        "native: token embedding Q4_0 and unembedding Q6_K in their blocks");
  CHECK(m->embed_type == GGUF_TENSOR_Q4_0 && m->unembed_type == GGUF_TENSOR_Q6_K,
        "native: embed_type, unembed_type");
  const model_blocks_t *wq = (const model_blocks_t *)m->layers[0].wq;
  const model_blocks_t *wv = (const model_blocks_t *)m->layers[0].wv;
  CHECK(mapped ? m->mapping && m->unembed_blocks->borrowed && m->embed_blocks->borrowed &&
                     wv->borrowed && !wq->borrowed
               : !m->mapping && !m->unembed_blocks->borrowed && !wv->borrowed,
        "native %s: blocks borrowed from the mapping where kept as stored (q un-permuted: owned)",
        mapped ? "mapped" : "read with pread");
  float *row = malloc(sizeof(float) * (size_t)d);
  size_t differ = 0;
  for (int t = 0; row && t < m->cfg.vocab_size; t++) {
    differ += memcmp(model_unembed_row(m, t, row), fp32->unembed + (size_t)t * d, 4 * d) != 0;
    differ += memcmp(model_embed_row(m, t, row), fp32->tok_embed + (size_t)t * d, 4 * d) != 0;
  }
  CHECK(row && differ == 0, "native: %zu embedding/unembedding rows differ from the fp32 load's",
        differ);
  printf("  mixed types, native (%s): embedding Q4_0 and unembedding Q6_K rows as loaded in fp32\n",
         mapped ? "mapped" : "pread");
  free(row);
  model_free(m);
}

static void test_mixed_quants(const char *root) {
  char path[2048], err[HYDRA_ERR_LEN] = "";
  snprintf(path, sizeof(path), "%s/tests/golden/quants/tiny_llama_mixed.gguf", root);
  model_t *m = model_load(path, err);
  if (!m) {
    FAIL("%s", err);
    return;
  }
  printf("  mixed types: %s loads, tensor_types %s\n", path, m->tensor_types);
  CHECK(strcmp(m->tensor_types, "F32,Q4_0,Q4_K,Q5_0,Q5_K,Q6_K") == 0, "tensor_types '%s'",
        m->tensor_types);
  CHECK(!m->cfg.tied_unembed && m->unembed != m->tok_embed, "output.weight must be its own");
  gguf_t *g = gguf_open(path, err);
  const gguf_tensor_t *t = g ? gguf_tensor_find(g, "output.weight") : NULL;
  CHECK(t && strcmp(gguf_tensor_type_name(t->type), "Q6_K") == 0, "output.weight is Q6_K");
  float *out = g ? read_tensor(g, "output.weight") : NULL;
  CHECK(out && check_rel_error(m->unembed, out, (size_t)m->cfg.vocab_size * m->cfg.d_model) == 0,
        "the loaded output.weight is its Q6_K values");
  free(out);
  gguf_close(g);
  test_mixed_quants_native(path, m, 1);
  setenv("HYDRA_NO_MMAP", "1", 1);
  test_mixed_quants_native(path, m, 0);
  unsetenv("HYDRA_NO_MMAP");
  model_free(m);
}

/* ---- (d) SmolLM2 ---- */

static void print_tokenizer_keys(const gguf_t *g) {
  for (int64_t i = 0; i < gguf_n_kv(g); i++) {
    const char *key = gguf_key(g, i);
    if (strncmp(key, "tokenizer.", 10) != 0)
      continue;
    int type = gguf_kv_type(g, i);
    gguf_array_t a;
    if (type == GGUF_TYPE_ARRAY && !gguf_get_array(g, key, &a, NULL))
      printf("    %-36s ARRAY of %llu %s\n", key, (unsigned long long)a.n,
             gguf_value_type_name(a.type));
    else if (type == GGUF_TYPE_STRING) {
      const char *s;
      uint64_t len;
      gguf_get_string(g, key, &s, &len, NULL);
      printf("    %-36s STRING (%llu bytes) %.40s%s\n", key, (unsigned long long)len, s,
             len > 40 ? "..." : "");
    } else {
      int64_t v = 0;
      int bv = 0;
      if (type == GGUF_TYPE_BOOL && !gguf_get_bool(g, key, &bv, NULL))
        printf("    %-36s BOOL %d\n", key, bv);
      else if (!gguf_get_int(g, key, &v, NULL))
        printf("    %-36s %s %lld\n", key, gguf_value_type_name(type), (long long)v);
    }
  }
}

static void test_smollm2(const char *root) {
  char path[2048], err[HYDRA_ERR_LEN];
  const char *env = getenv("HYDRA_SMOLLM2");
  if (env && *env)
    snprintf(path, sizeof(path), "%s", env);
  else
    snprintf(path, sizeof(path), "%s/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", root);
  if (access(path, R_OK) != 0) {
    const char *req = getenv("HYDRA_REQUIRE_MODELS");
    if (req && strcmp(req, "1") == 0)
      FAIL("%s is not here (run deploy/get-model.sh smollm2-135m)", path);
    else
      printf("  smollm2: skipped, %s is not here\n", path);
    return;
  }
  gguf_t *g = gguf_open(path, err);
  if (!g) {
    FAIL("%s", err);
    return;
  }
  int counts[64] = {0};
  for (int64_t i = 0; i < gguf_n_tensors(g); i++)
    if (gguf_tensor(g, i)->type < 64)
      counts[gguf_tensor(g, i)->type]++;
  printf("  smollm2: %s\n    GGUF v%u, %lld keys, %lld tensors:", path, gguf_version(g),
         (long long)gguf_n_kv(g), (long long)gguf_n_tensors(g));
  for (int t = 0; t < 64; t++)
    if (counts[t])
      printf(" %s x%d", gguf_tensor_type_name((uint32_t)t), counts[t]);
  printf("\n");
  print_tokenizer_keys(g);
  gguf_close(g);

  model_t *m = model_load(path, err);
  if (!m) {
    FAIL("%s", err);
    return;
  }
  const model_config_t *c = &m->cfg;
  printf("    config: family %s, layers %d, d_model %d, heads %d, kv heads %d, head_dim %d, "
         "d_mlp %d, vocab %d, context %d, rope_theta %g, rotary_dim %d, eps %g, tied %d, "
         "bos %d, eos %d\n    tensor_types %s, %zu parameters\n",
         c->family, c->n_layers, c->d_model, c->n_heads, c->n_kv_heads, c->head_dim, c->d_mlp,
         c->vocab_size, c->max_positions, (double)c->rope_theta, c->rotary_dim, (double)c->norm_eps,
         c->tied_unembed, c->bos_id, c->eos_id, m->tensor_types, model_n_params(m));
  CHECK(c->n_layers == 30 && c->d_model == 576 && c->n_heads == 9 && c->n_kv_heads == 3 &&
            c->head_dim == 64 && c->d_mlp == 1536 && c->vocab_size == 49152 &&
            c->max_positions == 8192 && c->rope_theta == 100000.0f && c->rotary_dim == 64 &&
            c->tied_unembed,
        "SmolLM2 config");
  CHECK(strcmp(m->tensor_types, "F32,Q4_1,Q8_0") == 0, "SmolLM2 tensor_types '%s'",
        m->tensor_types);
  /* transformers' num_parameters() of this file, dequantised by its GGUF
   * loader (tests/golden/make_n_params.py --gguf FILE) */
  CHECK(model_n_params(m) == 134515008u, "SmolLM2 parameters %zu, transformers 134515008",
        model_n_params(m));
  model_free(m);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_gguf ROOT\n");
    return 2;
  }
  const char *root = argv[1];
  printf("(a) golden dequantisation and metadata\n");
  test_golden(root);
  printf("(b) broken files\n");
  test_broken();
  test_truncated_golden(root);
  printf("(c) tiny llama\n");
  test_tiny_llama(root);
  test_unset_ids(root);
  test_mixed_quants(root);
  printf("(d) SmolLM2\n");
  test_smollm2(root);
  return check_exit("test_gguf");
}
