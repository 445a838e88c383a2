/* test_safetensors - the safetensors reader and the Hugging Face loader on
 * files written here byte by byte: values read back (F32, F16, BF16, F64),
 * every broken variant failing with an error that names the file, and tiny
 * gpt2 / llama directories (one file and sharded) mapped onto model_t.
 * usage: test_safetensors [repo_root] [seed]
 * With repo_root, also loads tests/data/tiny-{gpt2,llama} when present. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "checkpoint.h"
#include "error.h"
#include "loader_hf_config_internal.h"
#include "model.h"
#include "safetensors.h"

static uint64_t seed = 20240601, rng_state;
static char tmp[256];

static uint64_t rnd_bits(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static float rnd(void) { /* uniform in [-1, 1) */
  return (float)((double)(rnd_bits() >> 11) / (double)(1ULL << 52) - 1.0);
}

/* A random BF16 pattern of magnitude in [2^-8, 1), built from integers: GCC
 * 12.2 at -O1/-O2 folds a float -> bits -> truncate -> float round trip in
 * `cond ? round(v) : v` into v (a miscompile), so none is used here. */
static uint16_t rnd_bf16(void) {
  uint64_t r = rnd_bits();
  return (uint16_t)((r >> 63) << 15 | (119 + (r >> 8) % 8) << 7 | (r & 0x7f));
}

static const char *path_in(char *buf, const char *name) {
  snprintf(buf, 512, "%s/%s", tmp, name);
  return buf;
}

static int write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t put = n ? fwrite(data, 1, n, f) : 0;
  return (fclose(f) != 0 || put != n) ? -1 : 0;
}

/* Writes the 8-byte little-endian length `header_len`, then header (its own
 * strlen bytes, which may differ from header_len), then data. */
static void write_raw(const char *path, uint64_t header_len, const char *header, const void *data,
                      size_t n_data) {
  size_t hn = strlen(header), total = 8 + hn + n_data;
  unsigned char *buf = malloc(total);
  for (int i = 0; i < 8; i++)
    buf[i] = (unsigned char)(header_len >> (8 * i));
  memcpy(buf + 8, header, hn);
  if (n_data)
    memcpy(buf + 8 + hn, data, n_data);
  if (write_bytes(path, buf, total))
    CHECK(0, "cannot write %s", path);
  free(buf);
}

static void write_text(const char *path, const char *text) {
  if (write_bytes(path, text, strlen(text)))
    CHECK(0, "cannot write %s", path);
}

/* Expects a failure whose message names `file` and contains `reason`. */
static void expect_error(const char *what, int failed, const char *err, const char *file,
                         const char *reason) {
  if (!failed) {
    CHECK(0, "%s: succeeded but should have failed", what);
    return;
  }
  CHECK(strstr(err, file) != NULL, "%s: error does not name %s: %s", what, file, err);
  CHECK(!reason || strstr(err, reason) != NULL, "%s: error lacks \"%s\": %s", what, reason, err);
}

static void expect_open_error(const char *what, const char *path, const char *reason) {
  char err[HYDRA_ERR_LEN] = "";
  safetensors_t *st = safetensors_open(path, err);
  expect_error(what, st == NULL, err, path, reason);
  safetensors_close(st);
}

/* ---- the reader on hand-written files ---- */

static uint16_t bf16_bits(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  return (uint16_t)(b >> 16);
}

static float from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}

static int same_float(float a, float b) {
  return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof(a)) == 0;
}

/* Appends bytes (or little-endian 16-bit words) to buf at *at; returns
 * where they start. */
static size_t append(unsigned char *buf, size_t *at, const void *src, size_t n) {
  size_t start = *at;
  memcpy(buf + start, src, n);
  *at += n;
  return start;
}

static size_t append_u16(unsigned char *buf, size_t *at, const uint16_t *src, size_t n) {
  size_t start = *at;
  for (size_t i = 0; i < n; i++) {
    buf[(*at)++] = (unsigned char)(src[i] & 0xff);
    buf[(*at)++] = (unsigned char)(src[i] >> 8);
  }
  return start;
}

static void test_values(void) {
  char path[512];
  /* F16 and BF16 bit patterns with their exact values (IEEE 754 binary16,
   * bfloat16 = the top half of a binary32). */
  static const uint16_t f16[] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x03FF,
                                 0x0400, 0x8000, 0x7C00, 0xFC00, 0x3555, 0x7E00};
  const float f16_want[] = {1.0f,     -2.0f, 0.5f,     65504.0f,  0x1p-24f,        1023 * 0x1p-24f,
                            0x1p-14f, -0.0f, INFINITY, -INFINITY, 0.333251953125f, NAN};
  static const uint16_t bf16[] = {0x3F80, 0xC000, 0x4049, 0x0001, 0x7F7F, 0x7F80, 0xBF00};
  const float bf16_want[] = {1.0f,     -2.0f, 3.140625f, 0x1p-133f, from_bits(0x7F7F0000u),
                             INFINITY, -0.5f};
  const double f64[] = {1.0, -2.5, 1e-3, 3.0e39, -1e300, 0.1};
  float f32[15];
  int64_t i64[2] = {7, -7};
  uint16_t bf16_random[10];
  float bf16_random_want[10];
  for (int i = 0; i < 15; i++)
    f32[i] = rnd() * 100.0f;
  for (int i = 0; i < 10; i++) {
    bf16_random[i] = rnd_bf16();
    bf16_random_want[i] = from_bits((uint32_t)bf16_random[i] << 16);
  }
  /* Data section laid out in header order; offsets computed below. */
  unsigned char data[512];
  size_t at = 0;
  const size_t o_f32 = append(data, &at, f32, sizeof(f32));
  const size_t o_f16 = append_u16(data, &at, f16, 12);
  const size_t o_bf16 = append_u16(data, &at, bf16, 7);
  const size_t o_bfr = append_u16(data, &at, bf16_random, 10);
  const size_t o_f64 = append(data, &at, f64, sizeof(f64));
  const size_t o_i64 = append(data, &at, i64, sizeof(i64));
  const size_t o_scalar = append(data, &at, f32, 4);
  char header[2048];
  snprintf(header, sizeof(header),
           "{\"__metadata__\":{\"format\":\"pt\"},"
           "\"w.f32\":{\"dtype\":\"F32\",\"shape\":[3,5],\"data_offsets\":[%zu,%zu]},"
           "\"w.f16\":{\"dtype\":\"F16\",\"shape\":[12],\"data_offsets\":[%zu,%zu]},"
           "\"w.bf16\":{\"dtype\":\"BF16\",\"shape\":[7,1],\"data_offsets\":[%zu,%zu]},"
           "\"w.bf16r\":{\"dtype\":\"BF16\",\"shape\":[2,5],\"data_offsets\":[%zu,%zu]},"
           "\"a.f64\":{\"dtype\":\"F64\",\"shape\":[6],\"data_offsets\":[%zu,%zu]},"
           "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[%zu,%zu]},"
           "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[%zu,%zu]},"
           "\"empty\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[%zu,%zu]}}   ",
           o_f32, o_f16, o_f16, o_bf16, o_bf16, o_bfr, o_bfr, o_f64, o_f64, o_i64, o_i64, o_scalar,
           o_scalar, at, at, at);
  path_in(path, "values.safetensors");
  write_raw(path, strlen(header), header, data, at);

  char err[HYDRA_ERR_LEN] = "";
  safetensors_t *st = safetensors_open(path, err);
  CHECK(st != NULL, "open values.safetensors: %s", err);
  if (!st)
    return;
  CHECK(safetensors_count(st) == 8, "count = %zu, want 8", safetensors_count(st));
  for (size_t i = 1; i < safetensors_count(st); i++)
    CHECK(strcmp(safetensors_tensor(st, i - 1)->name, safetensors_tensor(st, i)->name) < 0,
          "tensors not sorted at %zu", i);
  CHECK(safetensors_tensor(st, 8) == NULL, "index past the end returned a tensor");
  CHECK(safetensors_find(st, "nope") == NULL, "found a tensor that does not exist");
  const char *format = safetensors_metadata(st, "format");
  CHECK(format && strcmp(format, "pt") == 0, "__metadata__.format = %s", format ? format : "NULL");
  CHECK(safetensors_metadata(st, "other") == NULL, "metadata for a missing key");
  CHECK(strcmp(safetensors_path(st), path) == 0, "path = %s", safetensors_path(st));

  float got[16];
  const safetensors_tensor_t *t = safetensors_find(st, "w.f32");
  CHECK(t && t->dtype == SAFETENSORS_F32 && t->n_dims == 2 && t->shape[0] == 3 &&
            t->shape[1] == 5 && t->n_elements == 15 && t->n_bytes == 60,
        "w.f32 header fields");
  if (t && !safetensors_read_f32(st, t, got, 15, err))
    CHECK(memcmp(got, f32, sizeof(f32)) == 0, "w.f32 values differ (seed %llu)",
          (unsigned long long)seed);
  else
    CHECK(0, "read w.f32: %s", err);

  t = safetensors_find(st, "w.f16");
  if (t && !safetensors_read_f32(st, t, got, 12, err)) {
    for (int i = 0; i < 12; i++)
      CHECK(same_float(got[i], f16_want[i]), "F16 0x%04x -> %.9g, want %.9g", f16[i],
            (double)got[i], (double)f16_want[i]);
  } else {
    CHECK(0, "read w.f16: %s", err);
  }
  t = safetensors_find(st, "w.bf16");
  if (t && !safetensors_read_f32(st, t, got, 7, err)) {
    for (int i = 0; i < 7; i++)
      CHECK(same_float(got[i], bf16_want[i]), "BF16 0x%04x -> %.9g, want %.9g", bf16[i],
            (double)got[i], (double)bf16_want[i]);
  } else {
    CHECK(0, "read w.bf16: %s", err);
  }
  t = safetensors_find(st, "w.bf16r");
  if (t && !safetensors_read_f32(st, t, got, 10, err))
    CHECK(memcmp(got, bf16_random_want, sizeof(bf16_random_want)) == 0,
          "random BF16 values differ (seed %llu)", (unsigned long long)seed);
  else
    CHECK(0, "read w.bf16r: %s", err);
  t = safetensors_find(st, "a.f64");
  if (t && !safetensors_read_f32(st, t, got, 6, err)) {
    for (int i = 0; i < 6; i++)
      CHECK(same_float(got[i], (float)f64[i]), "F64 %g -> %.9g", f64[i], (double)got[i]);
  } else {
    CHECK(0, "read a.f64: %s", err);
  }
  t = safetensors_find(st, "scalar");
  CHECK(t && t->n_dims == 0 && t->n_elements == 1, "scalar header fields");
  if (t && !safetensors_read_f32(st, t, got, 1, err))
    CHECK(got[0] == f32[0], "scalar = %g, want %g", (double)got[0], (double)f32[0]);
  else
    CHECK(0, "read scalar: %s", err);
  t = safetensors_find(st, "empty");
  CHECK(t && t->n_elements == 0 && t->n_bytes == 0, "empty header fields");
  CHECK(t && !safetensors_read_f32(st, t, got, 0, err), "read empty: %s", err);

  t = safetensors_find(st, "ids");
  CHECK(t && t->dtype == SAFETENSORS_I64, "ids dtype");
  expect_error("read I64 as fp32", t && safetensors_read_f32(st, t, got, 2, err) != 0, err, path,
               "I64");
  t = safetensors_find(st, "w.f32");
  expect_error("read with the wrong count", t && safetensors_read_f32(st, t, got, 14, err) != 0,
               err, path, "w.f32");
  safetensors_close(st);

  /* A file shortened after it was opened fails the read, not the process. */
  st = safetensors_open(path, err);
  CHECK(st != NULL, "reopen values.safetensors: %s", err);
  if (st) {
    CHECK(truncate(path, (off_t)(8 + strlen(header) + 8)) == 0, "truncate");
    t = safetensors_find(st, "a.f64");
    expect_error("read from a shortened file", t && safetensors_read_f32(st, t, got, 6, err) != 0,
                 err, path, "end of file");
    safetensors_close(st);
  }
  CHECK(strcmp(safetensors_dtype_name(SAFETENSORS_BF16), "BF16") == 0 &&
            safetensors_dtype_size(SAFETENSORS_F64) == 8,
        "dtype name/size table");
}

static void test_truncated(void) {
  char path[512], cut_path[512];
  float data[6];
  for (int i = 0; i < 6; i++)
    data[i] = rnd();
  const char *header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}";
  path_in(path, "whole.safetensors");
  write_raw(path, strlen(header), header, data, sizeof(data));
  char err[HYDRA_ERR_LEN];
  safetensors_t *st = safetensors_open(path, err);
  CHECK(st != NULL, "open whole.safetensors: %s", err);
  safetensors_close(st);

  FILE *f = fopen(path, "rb");
  unsigned char whole[512];
  size_t size = f ? fread(whole, 1, sizeof(whole), f) : 0;
  if (f)
    fclose(f);
  const size_t hl = strlen(header);
  const size_t cuts[] = {0, 1, 7, 8, 8 + hl / 2, 8 + hl - 1, 8 + hl, 8 + hl + 5, size - 1};
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
    char what[64];
    snprintf(what, sizeof(what), "truncated at %zu of %zu bytes", cuts[i], size);
    path_in(cut_path, "cut.safetensors");
    CHECK(write_bytes(cut_path, whole, cuts[i]) == 0, "write cut file");
    expect_open_error(what, cut_path, NULL);
  }
}

static void test_broken(void) {
  char path[512];
  unsigned char data[64] = {0};
  struct {
    const char *what, *header, *reason;
    size_t n_data;
  } cases[] = {
      {"non-JSON header", "{not json}", "not valid JSON", 0},
      {"empty header", "", "not valid JSON", 0},
      {"JSON array header", "[1, 2, 3]", "not a JSON object", 0},
      {"duplicate key", "{\"a\":{},\"a\":{}}", "not valid JSON", 0},
      {"entry not an object", "{\"a\":5}", "tensor a", 0},
      {"missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "missing dtype", 8},
      {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "missing shape", 8},
      {"missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", "missing data_offsets",
       8},
      {"unknown dtype", "{\"a\":{\"dtype\":\"Q7\",\"shape\":[2],\"data_offsets\":[0,8]}}",
       "unknown dtype \"Q7\"", 8},
      {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", "dtype",
       8},
      {"offsets beyond the data",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", "beyond", 16},
      {"offsets past the end of a later tensor",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
       "tensor b", 16},
      {"offsets not matching the shape",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", "needs 12", 16},
      {"offsets reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
       "data_offsets", 16},
      {"offsets not two integers", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}",
       "data_offsets", 16},
      {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}",
       "data_offsets", 16},
      {"negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}",
       "negative", 16},
      {"shape not integers", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,16]}}",
       "shape[0]", 16},
      {"shape product overflows",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,16]}}",
       "overflows", 16},
      {"byte size overflows",
       "{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,16]}}",
       "overflows", 16},
      {"zero dim after an overflow",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16,0],"
       "\"data_offsets\":[0,0]}}",
       "overflows", 16},
      {"too many dims",
       "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", "dims",
       16},
      {"metadata not strings", "{\"__metadata__\":{\"format\":1}}", "__metadata__", 0},
      {"metadata not an object", "{\"__metadata__\":[]}", "__metadata__", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    path_in(path, "broken.safetensors");
    write_raw(path, strlen(cases[i].header), cases[i].header, data, cases[i].n_data);
    expect_open_error(cases[i].what, path, cases[i].reason);
  }

  const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  path_in(path, "long.safetensors");
  write_raw(path, 1000, ok, data, 8);
  expect_open_error("header length larger than the file", path, "larger than");
  write_raw(path, 1ULL << 63, ok, data, 8);
  expect_open_error("header length 2^63", path, "larger than");
  write_raw(path, UINT64_MAX, ok, data, 8);
  expect_open_error("header length 2^64-1", path, "larger than");
  write_raw(path, 8, ok, data, 8);
  expect_open_error("header length too short", path, "not valid JSON");

  path_in(path, "no-such-file.safetensors");
  expect_open_error("missing file", path, "cannot open");
  expect_open_error("a directory", tmp, "not a regular file");
}

/* ---- the Hugging Face loader on tiny directories written here ---- */

typedef struct {
  char name[96];
  int bf16; /* stored as BF16; values are BF16-representable */
  int n_dims;
  uint64_t shape[2];
  size_t n;
  float *values;
  int omit; /* left out of the files */
} fake_tensor_t;

typedef struct {
  fake_tensor_t t[64];
  int n;
} fake_model_t;

static void fake_add(fake_model_t *fm, int bf16, const char *name, uint64_t d0, uint64_t d1) {
  fake_tensor_t *t = &fm->t[fm->n++];
  memset(t, 0, sizeof(*t));
  snprintf(t->name, sizeof(t->name), "%s", name);
  t->bf16 = bf16;
  t->n_dims = d1 ? 2 : 1;
  t->shape[0] = d0;
  t->shape[1] = d1;
  t->n = (size_t)d0 * (d1 ? d1 : 1);
  t->values = malloc(t->n * sizeof(float));
  for (size_t i = 0; i < t->n; i++)
    t->values[i] = bf16 ? from_bits((uint32_t)rnd_bf16() << 16) : rnd();
}

static void fake_free(fake_model_t *fm) {
  for (int i = 0; i < fm->n; i++)
    free(fm->t[i].values);
  fm->n = 0;
}

static fake_tensor_t *fake_find(fake_model_t *fm, const char *name) {
  for (int i = 0; i < fm->n; i++) {
    if (strcmp(fm->t[i].name, name) == 0)
      return &fm->t[i];
  }
  CHECK(0, "test bug: no fake tensor %s", name);
  return NULL;
}

/* Writes the tensors with index % n_parts == part (all when n_parts == 1). */
static void fake_write(const fake_model_t *fm, const char *path, int part, int n_parts) {
  size_t cap = 1 << 16, hn = 0, dn = 0, dcap = 1 << 20;
  char *header = malloc(cap);
  unsigned char *data = malloc(dcap);
  hn += (size_t)snprintf(header, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (int i = 0; i < fm->n; i++) {
    const fake_tensor_t *t = &fm->t[i];
    if (t->omit || i % n_parts != part)
      continue;
    size_t begin = dn;
    for (size_t k = 0; k < t->n; k++) {
      if (t->bf16) {
        uint16_t b = bf16_bits(t->values[k]);
        data[dn++] = (unsigned char)(b & 0xff);
        data[dn++] = (unsigned char)(b >> 8);
      } else {
        memcpy(data + dn, &t->values[k], 4);
        dn += 4;
      }
    }
    char shape[64];
    if (t->n_dims == 2)
      snprintf(shape, sizeof(shape), "[%llu,%llu]", (unsigned long long)t->shape[0],
               (unsigned long long)t->shape[1]);
    else
      snprintf(shape, sizeof(shape), "[%llu]", (unsigned long long)t->shape[0]);
    hn += (size_t)snprintf(header + hn, cap - hn,
                           ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                           t->name, t->bf16 ? "BF16" : "F32", shape, begin, dn);
  }
  snprintf(header + hn, cap - hn, "}");
  write_raw(path, strlen(header), header, data, dn);
  free(header);
  free(data);
}

/* A model directory under tmp: config.json and weights (n_shards > 1: an
 * index and shards). Returns the directory in buf. */
static const char *write_model_dir(char *buf, const char *name, const char *config,
                                   const fake_model_t *fm, int n_shards) {
  char path[600];
  path_in(buf, name);
  mkdir(buf, 0700);
  snprintf(path, sizeof(path), "%s/config.json", buf);
  if (config)
    write_text(path, config);
  if (!fm)
    return buf;
  if (n_shards == 1) {
    snprintf(path, sizeof(path), "%s/model.safetensors", buf);
    fake_write(fm, path, 0, 1);
    return buf;
  }
  char index[1 << 14];
  size_t n = (size_t)snprintf(index, sizeof(index), "{\"metadata\":{},\"weight_map\":{");
  for (int i = 0; i < fm->n; i++)
    n += (size_t)snprintf(index + n, sizeof(index) - n, "%s\"%s\":\"part-%d.safetensors\"",
                          i ? "," : "", fm->t[i].name, i % n_shards);
  snprintf(index + n, sizeof(index) - n, "}}");
  snprintf(path, sizeof(path), "%s/model.safetensors.index.json", buf);
  write_text(path, index);
  for (int s = 0; s < n_shards; s++) {
    snprintf(path, sizeof(path), "%s/part-%d.safetensors", buf, s);
    fake_write(fm, path, s, n_shards);
  }
  return buf;
}

enum { D = 8, HEADS = 2, KV_HEADS = 1, HEAD_DIM = 4, D_MLP = 12, VOCAB = 11, POS = 6, LAYERS = 2 };

static void gpt2_tensors(fake_model_t *fm, const char *prefix) {
  char n[96];
#define ADD(d0, d1, ...) (snprintf(n, sizeof(n), __VA_ARGS__), fake_add(fm, 0, n, d0, d1))
  ADD(VOCAB, D, "%swte.weight", prefix);
  ADD(POS, D, "%swpe.weight", prefix);
  for (int l = 0; l < LAYERS; l++) {
    ADD(D, 0, "%sh.%d.ln_1.weight", prefix, l);
    ADD(D, 0, "%sh.%d.ln_1.bias", prefix, l);
    ADD(D, 3 * D, "%sh.%d.attn.c_attn.weight", prefix, l);
    ADD(3 * D, 0, "%sh.%d.attn.c_attn.bias", prefix, l);
    ADD(D, D, "%sh.%d.attn.c_proj.weight", prefix, l);
    ADD(D, 0, "%sh.%d.attn.c_proj.bias", prefix, l);
    ADD(D, 0, "%sh.%d.ln_2.weight", prefix, l);
    ADD(D, 0, "%sh.%d.ln_2.bias", prefix, l);
    ADD(D, D_MLP, "%sh.%d.mlp.c_fc.weight", prefix, l);
    ADD(D_MLP, 0, "%sh.%d.mlp.c_fc.bias", prefix, l);
    ADD(D_MLP, D, "%sh.%d.mlp.c_proj.weight", prefix, l);
    ADD(D, 0, "%sh.%d.mlp.c_proj.bias", prefix, l);
    ADD(1, 0, "%sh.%d.attn.masked_bias", prefix, l); /* an old buffer, ignored */
  }
  ADD(D, 0, "%sln_f.weight", prefix);
  ADD(D, 0, "%sln_f.bias", prefix);
#undef ADD
}

static const char *gpt2_config =
    "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_embd\":8,\"n_head\":2,\"n_inner\":12,"
    "\"vocab_size\":11,\"n_positions\":6,\"layer_norm_epsilon\":1e-05,"
    "\"activation_function\":\"gelu_new\",\"bos_token_id\":50256,\"eos_token_id\":3}";

/* Compares an array of the model with a fake tensor read as a Linear
 * (transposed: a Conv1D [in, cols] slice starting at col0). */
static void check_array(const char *what, const float *got, const fake_tensor_t *t, int conv1d,
                        size_t n_out, size_t col0) {
  if (!got || !t) {
    CHECK(0, "%s: missing", what);
    return;
  }
  size_t bad = 0;
  if (!conv1d) {
    bad = memcmp(got, t->values + col0, n_out * sizeof(float)) != 0;
  } else {
    const size_t n_in = t->shape[0], cols = t->shape[1];
    for (size_t o = 0; o < n_out; o++) {
      for (size_t i = 0; i < n_in; i++)
        bad += !same_float(got[o * n_in + i], t->values[i * cols + col0 + o]);
    }
  }
  CHECK(bad == 0, "%s differs from %s (seed %llu)", what, t->name, (unsigned long long)seed);
}

static void test_gpt2(void) {
  char dir[512], err[HYDRA_ERR_LEN] = "", n[96];
  fake_model_t fm = {.n = 0};
  gpt2_tensors(&fm, "transformer.");
  write_model_dir(dir, "gpt2", gpt2_config, &fm, 1);
  model_t *m = model_load_hf(dir, err);
  CHECK(m != NULL, "load tiny gpt2: %s", err);
  if (m) {
    const model_config_t *c = &m->cfg;
    CHECK(strcmp(c->family, "gpt2") == 0 && c->n_layers == LAYERS && c->d_model == D &&
              c->n_heads == HEADS && c->n_kv_heads == HEADS && c->head_dim == D / HEADS &&
              c->d_mlp == D_MLP && c->vocab_size == VOCAB && c->max_positions == POS &&
              c->norm == NORM_LAYERNORM && fabsf(c->norm_eps - 1e-5f) < 1e-12f &&
              c->positions == POSITIONS_LEARNED && c->mlp == MLP_GELU &&
              c->activation == ACT_GELU_TANH && c->qkv_bias && c->o_bias && c->mlp_bias &&
              c->tied_unembed && c->bos_id == -1 && c->eos_id == 3,
          "gpt2 config fields");
    CHECK(strcmp(m->path, dir) == 0 && strcmp(m->weights_format, "safetensors") == 0 &&
              strcmp(m->tensor_types, "F32") == 0,
          "gpt2 path/format/types: %s %s %s", m->path, m->weights_format, m->tensor_types);
    CHECK(m->unembed == m->tok_embed, "gpt2 unembed is not tied to wte");
    check_array("tok_embed", m->tok_embed, fake_find(&fm, "transformer.wte.weight"), 0, VOCAB * D,
                0);
    check_array("pos_embed", m->pos_embed, fake_find(&fm, "transformer.wpe.weight"), 0, POS * D, 0);
    check_array("final_norm_b", m->final_norm_b, fake_find(&fm, "transformer.ln_f.bias"), 0, D, 0);
    for (int l = 0; l < LAYERS; l++) {
      const layer_weights_t *w = &m->layers[l];
#define T(suffix) (snprintf(n, sizeof(n), "transformer.h.%d.%s", l, suffix), fake_find(&fm, n))
      check_array("attn_norm_w", w->attn_norm_w, T("ln_1.weight"), 0, D, 0);
      check_array("attn_norm_b", w->attn_norm_b, T("ln_1.bias"), 0, D, 0);
      check_array("wq", w->wq, T("attn.c_attn.weight"), 1, D, 0);
      check_array("wk", w->wk, T("attn.c_attn.weight"), 1, D, D);
      check_array("wv", w->wv, T("attn.c_attn.weight"), 1, D, 2 * D);
      check_array("bq", w->bq, T("attn.c_attn.bias"), 0, D, 0);
      check_array("bk", w->bk, T("attn.c_attn.bias"), 0, D, D);
      check_array("bv", w->bv, T("attn.c_attn.bias"), 0, D, 2 * D);
      check_array("wo", w->wo, T("attn.c_proj.weight"), 1, D, 0);
      check_array("bo", w->bo, T("attn.c_proj.bias"), 0, D, 0);
      check_array("mlp_norm_w", w->mlp_norm_w, T("ln_2.weight"), 0, D, 0);
      check_array("w_up", w->w_up, T("mlp.c_fc.weight"), 1, D_MLP, 0);
      check_array("b_up", w->b_up, T("mlp.c_fc.bias"), 0, D_MLP, 0);
      check_array("w_down", w->w_down, T("mlp.c_proj.weight"), 1, D, 0);
      check_array("b_down", w->b_down, T("mlp.c_proj.bias"), 0, D, 0);
#undef T
    }
    model_free(m);
  }

  /* GPT2Model saves carry no "transformer." prefix; a sharded save. */
  fake_model_t bare = {.n = 0};
  gpt2_tensors(&bare, "");
  write_model_dir(dir, "gpt2-bare", gpt2_config, &bare, 3);
  m = model_load_hf(dir, err);
  CHECK(m != NULL, "load sharded gpt2 without prefix: %s", err);
  if (m)
    check_array("wk (no prefix)", m->layers[1].wk, fake_find(&bare, "h.1.attn.c_attn.weight"), 1, D,
                D);
  model_free(m);
  fake_free(&bare);

  /* Broken directories. */
  struct {
    const char *what, *config, *file, *reason;
  } configs[] = {
      {"config.json not JSON", "{\"model_type\": gpt2", "config.json", "not valid JSON"},
      {"config.json an array", "[]", "config.json", "not a JSON object"},
      {"no model_type", "{\"n_layer\":2}", "config.json", "model_type is missing"},
      {"wrong model_type", "{\"model_type\":\"bert\"}", "config.json", "\"bert\" is not supported"},
      {"a mixture of experts", "{\"model_type\":\"mixtral\",\"num_local_experts\":8}",
       "config.json", "\"mixtral\" is a mixture of experts (num_local_experts)"},
      {"another mixture of experts", "{\"model_type\":\"qwen2_moe\"}", "config.json",
       "\"qwen2_moe\" is a mixture of experts (num_experts)"},
      {"missing n_embd",
       "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_head\":2,\"vocab_size\":11,\"n_positions\":6}",
       "config.json", "n_embd is missing"},
      {"n_head not an integer",
       "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_embd\":8,\"n_head\":\"2\",\"vocab_size\":11,"
       "\"n_positions\":6}",
       "config.json", "n_head must be a positive integer"},
      {"n_layer too large",
       "{\"model_type\":\"gpt2\",\"n_layer\":99999999999,\"n_embd\":8,\"n_head\":2,"
       "\"vocab_size\":11,\"n_positions\":6}",
       "config.json", "n_layer must be a positive integer"},
      {"unknown activation",
       "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_embd\":8,\"n_head\":2,\"vocab_size\":11,"
       "\"n_positions\":6,\"activation_function\":\"relu\"}",
       "config.json", "\"relu\""},
      {"heads do not divide",
       "{\"model_type\":\"gpt2\",\"n_layer\":2,\"n_embd\":8,\"n_head\":3,\"vocab_size\":11,"
       "\"n_positions\":6}",
       "config.json", "n_head"},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    write_model_dir(dir, "gpt2-bad-config", configs[i].config, &fm, 1);
    m = model_load_hf(dir, err);
    expect_error(configs[i].what, m == NULL, err, configs[i].file, configs[i].reason);
    model_free(m);
  }

  path_in(dir, "empty-dir");
  mkdir(dir, 0700);
  m = model_load_hf(dir, err);
  expect_error("missing config.json", m == NULL, err, "config.json", NULL);
  model_free(m);

  write_model_dir(dir, "gpt2-no-weights", gpt2_config, NULL, 1);
  m = model_load_hf(dir, err);
  expect_error("no safetensors", m == NULL, err, "model.safetensors", NULL);
  model_free(m);

  fake_tensor_t *t = fake_find(&fm, "transformer.ln_f.bias");
  t->omit = 1;
  write_model_dir(dir, "gpt2-missing", gpt2_config, &fm, 1);
  m = model_load_hf(dir, err);
  expect_error("missing tensor", m == NULL, err, "model.safetensors", "transformer.ln_f.bias");
  model_free(m);
  t->omit = 0;

  t = fake_find(&fm, "transformer.h.1.mlp.c_fc.weight");
  t->shape[0] = D_MLP, t->shape[1] = D; /* stored as a Linear: the wrong way round */
  write_model_dir(dir, "gpt2-shape", gpt2_config, &fm, 1);
  m = model_load_hf(dir, err);
  expect_error("Conv1D shape mismatch", m == NULL, err, "model.safetensors",
               "transformer.h.1.mlp.c_fc.weight has shape [12, 8] but the config says [8, 12]");
  model_free(m);
  fake_free(&fm);
}

static void llama_tensors(fake_model_t *fm, int tied) {
  char n[96];
  const int q = HEADS * HEAD_DIM, kv = KV_HEADS * HEAD_DIM;
  /* Mixed dtypes: embeddings and norms in F32, projections in BF16. */
#define ADD(bf16, d0, d1, ...) (snprintf(n, sizeof(n), __VA_ARGS__), fake_add(fm, bf16, n, d0, d1))
  ADD(0, VOCAB, D, "model.embed_tokens.weight");
  for (int l = 0; l < LAYERS; l++) {
    ADD(0, D, 0, "model.layers.%d.input_layernorm.weight", l);
    ADD(1, q, D, "model.layers.%d.self_attn.q_proj.weight", l);
    ADD(1, kv, D, "model.layers.%d.self_attn.k_proj.weight", l);
    ADD(1, kv, D, "model.layers.%d.self_attn.v_proj.weight", l);
    ADD(1, D, q, "model.layers.%d.self_attn.o_proj.weight", l);
    ADD(0, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
    ADD(1, D_MLP, D, "model.layers.%d.mlp.gate_proj.weight", l);
    ADD(1, D_MLP, D, "model.layers.%d.mlp.up_proj.weight", l);
    ADD(1, D, D_MLP, "model.layers.%d.mlp.down_proj.weight", l);
  }
  ADD(0, D, 0, "model.norm.weight");
  if (!tied)
    ADD(1, VOCAB, D, "lm_head.weight");
#undef ADD
}

/* hidden 8, heads 2 of dim 4 (q: 8), one kv head (kv: 4), transformers 5 style rope. */
static const char *llama_config =
    "{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":4,"
    "\"intermediate_size\":12,\"vocab_size\":11,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-06,\"hidden_act\":\"silu\",\"tie_word_embeddings\":false,"
    "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":500000.0},"
    "\"rope_scaling\":null,\"bos_token_id\":1,\"eos_token_id\":[2,7]}";

static void check_llama(const model_t *m, fake_model_t *fm, const char *what) {
  char n[96];
  const model_config_t *c = &m->cfg;
  CHECK(strcmp(c->family, "llama") == 0 && c->n_layers == LAYERS && c->d_model == D &&
            c->n_heads == HEADS && c->n_kv_heads == KV_HEADS && c->head_dim == HEAD_DIM &&
            c->d_mlp == D_MLP && c->vocab_size == VOCAB && c->max_positions == 64 &&
            c->norm == NORM_RMSNORM && fabsf(c->norm_eps - 1e-6f) < 1e-13f &&
            c->positions == POSITIONS_ROPE && c->rope_theta == 500000.0f &&
            c->rotary_dim == HEAD_DIM && c->mlp == MLP_SWIGLU && c->activation == ACT_SILU &&
            !c->qkv_bias && !c->o_bias && !c->mlp_bias && !c->tied_unembed && c->bos_id == 1 &&
            c->eos_id == 2,
        "%s: llama config fields", what);
  CHECK(strcmp(m->tensor_types, "F32,BF16") == 0, "%s: tensor_types = %s", what, m->tensor_types);
  check_array("tok_embed", m->tok_embed, fake_find(fm, "model.embed_tokens.weight"), 0, VOCAB * D,
              0);
  check_array("unembed", m->unembed, fake_find(fm, "lm_head.weight"), 0, VOCAB * D, 0);
  check_array("final_norm_w", m->final_norm_w, fake_find(fm, "model.norm.weight"), 0, D, 0);
  for (int l = 0; l < LAYERS; l++) {
    const layer_weights_t *w = &m->layers[l];
#define T(suffix) (snprintf(n, sizeof(n), "model.layers.%d.%s", l, suffix), fake_find(fm, n))
    check_array("attn_norm_w", w->attn_norm_w, T("input_layernorm.weight"), 0, D, 0);
    check_array("wq", w->wq, T("self_attn.q_proj.weight"), 0, HEADS * HEAD_DIM * D, 0);
    check_array("wk", w->wk, T("self_attn.k_proj.weight"), 0, KV_HEADS * HEAD_DIM * D, 0);
    check_array("wv", w->wv, T("self_attn.v_proj.weight"), 0, KV_HEADS * HEAD_DIM * D, 0);
    check_array("wo", w->wo, T("self_attn.o_proj.weight"), 0, D * HEADS * HEAD_DIM, 0);
    check_array("mlp_norm_w", w->mlp_norm_w, T("post_attention_layernorm.weight"), 0, D, 0);
    check_array("w_gate", w->w_gate, T("mlp.gate_proj.weight"), 0, D_MLP * D, 0);
    check_array("w_up", w->w_up, T("mlp.up_proj.weight"), 0, D_MLP * D, 0);
    check_array("w_down", w->w_down, T("mlp.down_proj.weight"), 0, D * D_MLP, 0);
#undef T
  }
}

/* Replaces `key`'s value in a config (the key must be present). */
static void config_with(char *out, size_t len, const char *config, const char *key,
                        const char *value) {
  char pattern[64];
  snprintf(pattern, sizeof(pattern), "\"%s\":", key);
  const char *at = strstr(config, pattern);
  if (!at) {
    CHECK(0, "test bug: no %s in config", key);
    snprintf(out, len, "%s", config);
    return;
  }
  const char *end = at + strlen(pattern);
  int depth = 0;
  for (; *end && (depth > 0 || (*end != ',' && *end != '}')); end++)
    depth += (*end == '{' || *end == '[') - (*end == '}' || *end == ']');
  if (value)
    snprintf(out, len, "%.*s%s%s%s", (int)(at - config), config, pattern, value, end);
  else /* drop the key and the comma after it */
    snprintf(out, len, "%.*s%s", (int)(at - config), config, *end == ',' ? end + 1 : end);
}

static void test_llama(void) {
  char dir[512], err[HYDRA_ERR_LEN] = "", config[2048], path[600];
  fake_model_t fm = {.n = 0};
  llama_tensors(&fm, 0);
  write_model_dir(dir, "llama", llama_config, &fm, 1);
  model_t *m = model_load_hf(dir, err);
  CHECK(m != NULL, "load tiny llama: %s", err);
  if (m)
    check_llama(m, &fm, "one file");
  model_free(m);

  write_model_dir(dir, "llama-sharded", llama_config, &fm, 2);
  m = model_load(dir, err);
  CHECK(m != NULL, "load sharded tiny llama: %s", err);
  if (m)
    check_llama(m, &fm, "sharded");
  model_free(m);

  /* Tied, transformers 4 style: top-level rope_theta, no rope_parameters, defaults. */
  fake_model_t tied = {.n = 0};
  llama_tensors(&tied, 1);
  write_model_dir(dir, "llama-tied", NULL, &tied, 1);
  snprintf(path, sizeof(path), "%s/config.json", dir);
  write_text(path, "{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":2,"
                   "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"intermediate_size\":12,"
                   "\"vocab_size\":11,"
                   "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-05,"
                   "\"tie_word_embeddings\":true,\"rope_theta\":1000,\"eos_token_id\":null}");
  m = model_load_hf(dir, err);
  CHECK(m != NULL, "load tied llama: %s", err);
  if (m)
    CHECK(m->cfg.tied_unembed && m->unembed == m->tok_embed && m->cfg.n_kv_heads == 1 &&
              m->cfg.head_dim == 4 && m->cfg.rope_theta == 1000.0f && m->cfg.eos_id == -1 &&
              m->cfg.bos_id == -1,
          "tied llama defaults");
  model_free(m);
  fake_free(&tied);

  struct {
    const char *what, *key, *value, *reason;
  } configs[] = {
      {"missing hidden_size", "hidden_size", NULL, "hidden_size is missing"},
      {"hidden_size negative", "hidden_size", "-8", "hidden_size must be a positive integer"},
      {"hidden_size a float", "hidden_size", "8.0", "hidden_size must be a positive integer"},
      {"rms_norm_eps a string", "rms_norm_eps", "\"1e-6\"", "rms_norm_eps must be a positive"},
      {"dynamic from a shorter context", "rope_scaling",
       "{\"type\":\"dynamic\",\"factor\":2.0,\"original_max_position_embeddings\":32}",
       "rope_scaling.original_max_position_embeddings = 32 with rope_type \"dynamic\""},
      {"longrope without its factors", "rope_parameters",
       "{\"rope_type\":\"longrope\",\"rope_theta\":5e5}",
       "rope_parameters.short_factor must be a list of 2 numbers"},
      {"rope type unknown", "rope_parameters", "{\"rope_type\":\"ntk\",\"factor\":2}",
       "rope_parameters.rope_type \"ntk\" is not supported"},
      {"linear without factor", "rope_parameters", "{\"rope_type\":\"linear\"}",
       "rope_parameters.factor is missing"},
      {"factor below 1", "rope_scaling", "{\"type\":\"linear\",\"factor\":0.5}",
       "rope_scaling.factor = 0.5 must be at least 1"},
      {"llama3 without low_freq_factor", "rope_parameters",
       "{\"rope_type\":\"llama3\",\"factor\":8,\"high_freq_factor\":4,"
       "\"original_max_position_embeddings\":32}",
       "rope_parameters.low_freq_factor is missing"},
      {"llama3 factors reversed", "rope_parameters",
       "{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,\"high_freq_factor\":1,"
       "\"original_max_position_embeddings\":32}",
       "high_freq_factor must be above low_freq_factor"},
      {"partial rotary", "rope_parameters", "{\"rope_theta\":5e5,\"partial_rotary_factor\":0.5}",
       "partial_rotary_factor"},
      {"hidden_act gelu", "hidden_act", "\"gelu\"", "\"gelu\""},
      {"tie_word_embeddings a string", "tie_word_embeddings", "\"no\"", "tie_word_embeddings"},
      {"eos_token_id a string", "eos_token_id", "\"</s>\"", "eos_token_id"},
      {"kv heads do not divide", "num_key_value_heads", "3", "n_kv_heads"},
      {"a GPTQ checkpoint", "rms_norm_eps",
       "1e-06,\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4}",
       "quantization_config is not supported (a quantised checkpoint, quant_method \"gptq\""},
      {"a bitsandbytes checkpoint", "rms_norm_eps",
       "1e-06,\"quantization_config\":{\"load_in_4bit\":true}",
       "quantization_config is not supported"},
      {"a compressed-tensors checkpoint", "rms_norm_eps",
       "1e-06,\"compression_config\":{\"format\":\"pack-quantized\"}",
       "compression_config is not supported"},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    config_with(config, sizeof(config), llama_config, configs[i].key, configs[i].value);
    write_model_dir(dir, "llama-bad-config", config, &fm, 1);
    m = model_load_hf(dir, err);
    expect_error(configs[i].what, m == NULL, err, "config.json", configs[i].reason);
    model_free(m);
  }

  /* tie_word_embeddings false (the default): lm_head.weight must be there. */
  fake_tensor_t *t = fake_find(&fm, "lm_head.weight");
  t->omit = 1;
  config_with(config, sizeof(config), llama_config, "tie_word_embeddings", NULL);
  write_model_dir(dir, "llama-no-lm-head", config, &fm, 1);
  m = model_load_hf(dir, err);
  expect_error("untied without lm_head", m == NULL, err, "model.safetensors", "lm_head.weight");
  model_free(m);
  t->omit = 0;

  /* Tied, yet the file keeps an lm_head.weight: transformers 5 would read
   * it untied, transformers 4 the embedding. One that differs is refused by
   * name; one equal to the embedding loads as the tied model. */
  config_with(config, sizeof(config), llama_config, "tie_word_embeddings", "true");
  write_model_dir(dir, "llama-tied-own-head", config, &fm, 2);
  m = model_load_hf(dir, err);
  expect_error("tied with a different lm_head.weight", m == NULL, err, "llama-tied-own-head",
               "tie_word_embeddings is true (or the llama default) but the weights hold their "
               "own lm_head.weight");
  model_free(m);
  t = fake_find(&fm, "lm_head.weight");
  float *own_head = t->values;
  t->values = fake_find(&fm, "model.embed_tokens.weight")->values;
  t->bf16 = 0;
  write_model_dir(dir, "llama-tied-same-head", config, &fm, 1);
  m = model_load_hf(dir, err);
  CHECK(m != NULL && m->cfg.tied_unembed && m->unembed == m->tok_embed,
        "tied with an lm_head.weight equal to the embedding loads tied: %s", err);
  model_free(m);
  t->values = own_head;
  t->bf16 = 1;

  t = fake_find(&fm, "model.layers.1.self_attn.k_proj.weight");
  t->shape[0] = 2, t->shape[1] = 16; /* same element count, wrong shape */
  write_model_dir(dir, "llama-shape", llama_config, &fm, 1);
  m = model_load_hf(dir, err);
  expect_error("shape mismatch", m == NULL, err, "model.safetensors",
               "model.layers.1.self_attn.k_proj.weight has shape [2, 16] but the config says "
               "[4, 8]");
  model_free(m);
  t->shape[0] = 4, t->shape[1] = 8;

  /* Sharded: a shard the index names is gone. */
  write_model_dir(dir, "llama-lost-shard", llama_config, &fm, 2);
  snprintf(path, sizeof(path), "%s/part-1.safetensors", dir);
  unlink(path);
  m = model_load_hf(dir, err);
  expect_error("missing shard", m == NULL, err, "part-1.safetensors", "cannot open");
  model_free(m);

  /* A shard that lacks a tensor its index assigns to it. */
  t = fake_find(&fm, "model.norm.weight");
  t->omit = 1;
  write_model_dir(dir, "llama-shard-lacks", llama_config, &fm, 2);
  m = model_load_hf(dir, err);
  expect_error("tensor missing from its shard", m == NULL, err, ".safetensors",
               "model.norm.weight");
  model_free(m);
  t->omit = 0;

  struct {
    const char *what, *index, *reason;
  } indexes[] = {
      {"weight_map not an object", "{\"weight_map\":[\"part-0.safetensors\"]}",
       "weight_map is not an object"},
      {"no weight_map", "{\"metadata\":{}}", "weight_map is missing"},
      {"index not JSON", "{\"weight_map\":", "not valid JSON"},
      {"tensor missing from weight_map",
       "{\"weight_map\":{\"model.embed_tokens.weight\":\"part-0.safetensors\"}}",
       "missing from weight_map"},
      {"shard outside the directory",
       "{\"weight_map\":{\"model.embed_tokens.weight\":\"../part-0.safetensors\"}}",
       "not a file name"},
      {"shard not a string", "{\"weight_map\":{\"model.embed_tokens.weight\":0}}",
       "not a file name"},
  };
  for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++) {
    write_model_dir(dir, "llama-bad-index", llama_config, &fm, 2);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    write_text(path, indexes[i].index);
    m = model_load_hf(dir, err);
    expect_error(indexes[i].what, m == NULL, err, "model.safetensors.index.json",
                 indexes[i].reason);
    model_free(m);
  }
  fake_free(&fm);
}

/* Pythia's config.json (transformers 4 spelling); weights absent, so a
 * config the loader accepts fails on the missing safetensors instead. */
static const char *gpt_neox_config =
    "{\"model_type\":\"gpt_neox\",\"hidden_size\":8,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"intermediate_size\":12,\"vocab_size\":11,"
    "\"max_position_embeddings\":64,\"layer_norm_eps\":1e-05,\"hidden_act\":\"gelu\","
    "\"rotary_pct\":0.5,\"rotary_emb_base\":10000,\"use_parallel_residual\":true,"
    "\"tie_word_embeddings\":false,\"rope_scaling\":null}";

static void test_gpt_neox_config(void) {
  char dir[512], err[HYDRA_ERR_LEN] = "", config[2048];
  struct {
    const char *what, *key, *value, *reason;
  } configs[] = {
      {"accepted", "rope_scaling", "null", "model.safetensors"},
      {"rope_parameters default", "rope_scaling",
       "null,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":10000,"
       "\"partial_rotary_factor\":0.5}",
       "model.safetensors"},
      {"linear scaling", "rope_scaling", "{\"type\":\"linear\",\"factor\":2.0}",
       "model.safetensors"},
      {"longrope without its factors", "rope_scaling", "{\"type\":\"longrope\",\"factor\":2.0}",
       "rope_scaling.short_factor must be a list of 1 numbers"},
      {"rotary_pct over 1", "rotary_pct", "1.5", "partial rotary factor 1.5 is over 1"},
      {"odd rotary dims", "rotary_pct", "0.75", "3 rotated dimensions"},
      {"hidden_act relu", "hidden_act", "\"relu\"", "hidden_act \"relu\" is not supported"},
      {"parallel not a bool", "use_parallel_residual", "1", "use_parallel_residual"},
      {"heads do not divide", "num_attention_heads", "3", "num_attention_heads"},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    config_with(config, sizeof(config), gpt_neox_config, configs[i].key, configs[i].value);
    write_model_dir(dir, "gpt_neox-config", config, NULL, 1);
    model_t *m = model_load_hf(dir, err);
    expect_error(configs[i].what, m == NULL, err, "gpt_neox-config", configs[i].reason);
    model_free(m);
  }
}

/* Qwen2's published config.json; weights absent, as above. Three layers, a
 * context of 64. */
static const char *qwen2_config =
    "{\"model_type\":\"qwen2\",\"hidden_size\":8,\"num_hidden_layers\":3,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"intermediate_size\":12,"
    "\"vocab_size\":11,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-06,"
    "\"rope_theta\":1000000.0,\"sliding_window\":32,"
    "\"max_window_layers\":1,\"tie_word_embeddings\":true}";

static int load_config(const char *name, const char *config, model_config_t *cfg, char *err);

static void test_qwen2_config(void) {
  char dir[512], err[HYDRA_ERR_LEN] = "", config[2048];
  struct {
    const char *what, *key, *value, *reason;
  } configs[] = {
      {"sliding window off", "sliding_window", "32,\"use_sliding_window\":false",
       "model.safetensors"},
      {"sliding window on", "sliding_window", "32,\"use_sliding_window\":true",
       "model.safetensors"},
      {"window as long as the context", "sliding_window", "64,\"use_sliding_window\":true",
       "model.safetensors"},
      {"no sliding layers", "max_window_layers", "3,\"use_sliding_window\":true",
       "model.safetensors"},
      {"window zero", "sliding_window", "0,\"use_sliding_window\":true",
       "sliding_window must be a positive integer"},
      {"layer_types all full", "max_window_layers",
       "0,\"use_sliding_window\":true,\"layer_types\":[\"full_attention\",\"full_attention\","
       "\"full_attention\"]",
       "model.safetensors"},
      {"layer_types one sliding between full ones", "max_window_layers",
       "3,\"use_sliding_window\":true,\"layer_types\":[\"full_attention\",\"sliding_attention\","
       "\"full_attention\"]",
       "layer_types is not supported (hydra's Qwen sliding layers are those from one layer on; "
       "layer 1 slides below a full layer)"},
      {"layer_types unknown", "max_window_layers",
       "3,\"use_sliding_window\":true,\"layer_types\":[\"full_attention\",\"chunked\","
       "\"full_attention\"]",
       "layer_types[1]"},
      {"yarn", "rope_theta", "1e6,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4.0}",
       "model.safetensors"},
      {"dynamic", "rope_theta", "1e6,\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":4.0}",
       "model.safetensors"},
      {"hidden_act gelu", "rms_norm_eps", "1e-6,\"hidden_act\":\"gelu\"", "hidden_act \"gelu\""},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    config_with(config, sizeof(config), qwen2_config, configs[i].key, configs[i].value);
    write_model_dir(dir, "qwen2-config", config, NULL, 1);
    model_t *m = model_load_hf(dir, err);
    expect_error(configs[i].what, m == NULL, err, "qwen2-config", configs[i].reason);
    model_free(m);
  }
  /* which layers slide, as Qwen2Config derives them: from max_window_layers on, or as
   * layer_types lists them; the window 4096 when absent, none when null or off */
  struct {
    const char *what, *key, *value;
    int window, first;
  } windows[] = {
      {"from max_window_layers 1", "sliding_window", "32,\"use_sliding_window\":true", 32, 1},
      {"every layer (max_window_layers 0)", "max_window_layers", "0,\"use_sliding_window\":true",
       32, 0},
      {"layer_types: the last two", "max_window_layers",
       "0,\"use_sliding_window\":true,\"layer_types\":[\"full_attention\",\"sliding_attention\","
       "\"sliding_attention\"]",
       32, 1},
      {"window absent: 4096, past the context", "sliding_window", NULL, 0, 0},
      {"window null", "sliding_window", "null,\"use_sliding_window\":true", 0, 0},
      {"use_sliding_window false", "sliding_window", "8,\"use_sliding_window\":false", 0, 0},
  };
  for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
    model_config_t cfg;
    char with_use[2048];
    config_with(with_use, sizeof(with_use), qwen2_config, "tie_word_embeddings",
                "true,\"use_sliding_window\":true");
    config_with(config, sizeof(config), windows[i].value ? qwen2_config : with_use, windows[i].key,
                windows[i].value);
    int rc = load_config("qwen2-window", config, &cfg, err);
    int slides[3] = {model_layer_slides(&cfg, 0), model_layer_slides(&cfg, 1),
                     model_layer_slides(&cfg, 2)};
    CHECK(rc == 0 && cfg.sliding_window == windows[i].window &&
              (windows[i].window == 0 ||
               (cfg.sliding_first_layer == windows[i].first &&
                slides[0] == (windows[i].first == 0) && slides[1] && slides[2])),
          "qwen2 %s: window %d from layer %d, got %d from %d, slides %d%d%d (%s)", windows[i].what,
          windows[i].window, windows[i].first, cfg.sliding_window, cfg.sliding_first_layer,
          slides[0], slides[1], slides[2], err);
  }
}

/* Qwen3's config.json: Qwen2's sliding-window keys, q/k norms per head, and a
 * head_dim of 128 when absent (Qwen3Config's default). */
static const char *qwen3_config =
    "{\"model_type\":\"qwen3\",\"hidden_size\":8,\"num_hidden_layers\":3,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":6,"
    "\"intermediate_size\":12,\"vocab_size\":11,\"max_position_embeddings\":64,"
    "\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,\"sliding_window\":32,"
    "\"max_window_layers\":1}";

static void test_qwen3_config(void) {
  char dir[512], err[HYDRA_ERR_LEN] = "", config[2048];
  struct {
    const char *what, *key, *value, *reason;
  } configs[] = {
      {"sliding window off", "sliding_window", "32,\"use_sliding_window\":false",
       "model.safetensors"},
      {"sliding window on", "sliding_window", "32,\"use_sliding_window\":true",
       "model.safetensors"},
      {"window as long as the context", "sliding_window", "64,\"use_sliding_window\":true",
       "model.safetensors"},
      {"attention_bias not a bool", "head_dim", "6,\"attention_bias\":1",
       "attention_bias must be true or false"},
      {"head_dim zero", "head_dim", "0", "head_dim must be a positive integer"},
      {"partial rotary", "head_dim", "8,\"partial_rotary_factor\":0.5",
       "partial_rotary_factor < 1 is not supported"},
      {"longrope without its factors", "rope_theta",
       "1e6,\"rope_scaling\":{\"rope_type\":\"longrope\"}",
       "rope_scaling.short_factor must be a list of 3 numbers"},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    config_with(config, sizeof(config), qwen3_config, configs[i].key, configs[i].value);
    write_model_dir(dir, "qwen3-config", config, NULL, 1);
    model_t *m = model_load_hf(dir, err);
    expect_error(configs[i].what, m == NULL, err, "qwen3-config", configs[i].reason);
    model_free(m);
  }
  /* no head_dim: 128, not hidden_size / num_attention_heads */
  model_config_t cfg;
  json_t *root = NULL;
  config_with(config, sizeof(config), qwen3_config, "head_dim", NULL);
  write_model_dir(dir, "qwen3-config", config, NULL, 1);
  char path[600];
  snprintf(path, sizeof(path), "%s/config.json", dir);
  CHECK(hf_config_load(path, &root, &cfg, err) == 0 && cfg.head_dim == 128 && cfg.qk_norm &&
            strcmp(cfg.family, "qwen3") == 0,
        "qwen3 without head_dim: head_dim %d (%s)", cfg.head_dim, err);
  json_decref(root);
}

static int load_config(const char *name, const char *config, model_config_t *cfg, char *err) {
  char dir[512], path[600];
  json_t *root = NULL;
  write_model_dir(dir, name, config, NULL, 1);
  snprintf(path, sizeof(path), "%s/config.json", dir);
  int rc = hf_config_load(path, &root, cfg, err);
  json_decref(root);
  return rc;
}

/* Mistral's config.json; weights absent, as above. A context of 64. */
static const char *mistral_config =
    "{\"model_type\":\"mistral\",\"sliding_window\":null,\"hidden_size\":8,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"intermediate_size\":12,"
    "\"vocab_size\":11,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-05,"
    "\"rope_theta\":10000.0}";

static void test_mistral_config(void) {
  char dir[512], err[HYDRA_ERR_LEN] = "", config[2048];
  struct {
    const char *what, *key, *value, *reason;
  } configs[] = {
      {"no sliding window", "sliding_window", "null", "model.safetensors"},
      {"window as long as the context", "sliding_window", "64", "model.safetensors"},
      {"window shorter than the context", "sliding_window", "32", "model.safetensors"},
      {"window absent (4096), context 64", "sliding_window", NULL, "model.safetensors"},
      {"window zero", "sliding_window", "0", "sliding_window must be a positive integer"},
      {"longrope without its factors", "rope_theta",
       "1e4,\"rope_scaling\":{\"rope_type\":\"longrope\"}",
       "rope_scaling.short_factor must be a list of 2 numbers"},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    config_with(config, sizeof(config), mistral_config, configs[i].key, configs[i].value);
    write_model_dir(dir, "mistral-config", config, NULL, 1);
    model_t *m = model_load_hf(dir, err);
    expect_error(configs[i].what, m == NULL, err, "mistral-config", configs[i].reason);
    model_free(m);
  }
  /* the window read as Mistral 7B v0.1's: every layer, its own key and the
   * window - 1 before; absent with a context past 4096: MistralConfig's 4096 */
  char longer[2048];
  const struct {
    const char *value;
    int context, window;
  } windows[] = {{"32", 64, 32}, {NULL, 8192, 4096}, {"64", 64, 0}, {"null", 8192, 0}};
  for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
    char ctx[16];
    snprintf(ctx, sizeof ctx, "%d", windows[i].context);
    config_with(longer, sizeof(longer), mistral_config, "max_position_embeddings", ctx);
    config_with(config, sizeof(config), longer, "sliding_window", windows[i].value);
    model_config_t cfg;
    int rc = load_config("mistral-config", config, &cfg, err);
    CHECK(rc == 0 && cfg.sliding_window == windows[i].window &&
              model_layer_slides(&cfg, 0) == (windows[i].window > 0) &&
              model_layer_slides(&cfg, 1) == (windows[i].window > 0),
          "mistral sliding_window %s, context %d: window %d on every layer, got %d (%s)",
          windows[i].value ? windows[i].value : "absent", windows[i].context, windows[i].window,
          cfg.sliding_window, err);
  }
}

/* Gemma 2's and Gemma 3's config.json: soft-caps (absent: the family's
 * default, null: none), sliding layers by layer_types or the default
 * pattern, Gemma 3's local and global rotary; refusals name their key. */
static const char *gemma2_config =
    "{\"model_type\":\"gemma2\",\"hidden_size\":8,\"num_hidden_layers\":4,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":4,"
    "\"intermediate_size\":12,\"vocab_size\":11,\"max_position_embeddings\":64,"
    "\"sliding_window\":8,\"query_pre_attn_scalar\":16}";
static const char *gemma3_config =
    "{\"model_type\":\"gemma3_text\",\"hidden_size\":8,\"num_hidden_layers\":6,"
    "\"num_attention_heads\":2,\"head_dim\":4,\"intermediate_size\":12,\"vocab_size\":11,"
    "\"max_position_embeddings\":64,\"sliding_window\":8,\"rope_theta\":1000000.0,"
    "\"rope_local_base_freq\":10000.0,\"rope_scaling\":{\"rope_type\":\"linear\","
    "\"factor\":8.0},\"sliding_window_pattern\":3}";

/* Gemma 3's multimodal config.json (model_type gemma3): the language model
 * is text_config over Gemma3TextConfig's defaults; refusals name the key. */
static void test_gemma3_multimodal_config(void) {
  char err[HYDRA_ERR_LEN] = "";
  model_config_t cfg;
  const char *published =
      "{\"model_type\":\"gemma3\",\"vision_config\":{\"hidden_size\":16},"
      "\"text_config\":{\"hidden_size\":2560,\"intermediate_size\":10240,"
      "\"model_type\":\"gemma3_text\",\"num_hidden_layers\":34,\"rope_scaling\":"
      "{\"factor\":8.0,\"rope_type\":\"linear\"},\"sliding_window\":1024}}";
  int rc = load_config("gemma3-mm-config", published, &cfg, err);
  CHECK(rc == 0 && strcmp(cfg.family, "gemma3_text") == 0 && cfg.d_model == 2560 &&
            cfg.n_layers == 34 && cfg.n_heads == 8 && cfg.n_kv_heads == 4 && cfg.head_dim == 256 &&
            cfg.vocab_size == 262208 && cfg.max_positions == 131072 && cfg.sliding_window == 1024 &&
            cfg.tied_unembed && cfg.bos_id == 2 && cfg.qk_norm,
        "gemma-3-4b's config.json: the language model with Gemma3TextConfig's defaults (%s)", err);
  const struct {
    const char *what, *config, *reason;
  } bad[] = {
      {"no text_config", "{\"model_type\":\"gemma3\"}", "text_config is missing"},
      {"text_config not an object", "{\"model_type\":\"gemma3\",\"text_config\":[]}",
       "text_config is not an object"},
      {"text_config of another family",
       "{\"model_type\":\"gemma3\",\"text_config\":{\"model_type\":\"llama\"}}",
       "text_config.model_type must be \"gemma3_text\""},
      {"tie_word_embeddings that disagree",
       "{\"model_type\":\"gemma3\",\"tie_word_embeddings\":false,\"text_config\":{}}",
       "tie_word_embeddings differs from text_config.tie_word_embeddings"},
      {"a text_config key the family refuses",
       "{\"model_type\":\"gemma3\",\"text_config\":{\"use_bidirectional_attention\":true}}",
       "use_bidirectional_attention = true is not supported"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    rc = load_config("gemma3-mm-config", bad[i].config, &cfg, err);
    expect_error(bad[i].what, rc != 0, err, "gemma3-mm-config", bad[i].reason);
  }
}

static void test_gemma_config(void) {
  char err[HYDRA_ERR_LEN] = "", config[2048];
  model_config_t cfg;
  int rc = load_config("gemma2-config", gemma2_config, &cfg, err);
  CHECK(rc == 0 && cfg.attn_softcap == 50.0f && cfg.final_softcap == 30.0f &&
            cfg.sliding_window == 8 && cfg.sliding_period == 2 && cfg.post_norms &&
            cfg.mlp == MLP_GEGLU && cfg.tied_unembed && fabsf(cfg.attn_scale - 0.25f) < 1e-7f &&
            fabsf(cfg.embed_scale - sqrtf(8.0f)) < 1e-6f,
        "gemma2 defaults: soft-caps 50 and 30, every other layer sliding (%s)", err);
  config_with(config, sizeof(config), gemma2_config, "sliding_window",
              "null,\"attn_logit_softcapping\":null,\"final_logit_softcapping\":null");
  rc = load_config("gemma2-config", config, &cfg, err);
  CHECK(rc == 0 && cfg.attn_softcap == 0.0f && cfg.final_softcap == 0.0f && cfg.sliding_window == 0,
        "gemma2 with null soft-caps and window: none (%s)", err);
  rc = load_config("gemma3-config", gemma3_config, &cfg, err);
  CHECK(rc == 0 && cfg.qk_norm == QK_NORM_PER_HEAD && cfg.sliding_period == 3 &&
            cfg.rope_theta == 1e6f && cfg.rope_local_theta == 1e4f &&
            cfg.rope_scaling == ROPE_SCALING_LINEAR && cfg.rope_factor == 8.0f &&
            cfg.attn_softcap == 0.0f && cfg.final_softcap == 0.0f,
        "gemma3, transformers 4's spelling: local and global rotary, pattern 3 (%s)", err);
  struct {
    const char *what, *config, *key, *value, *reason;
  } configs[] = {
      {"bidirectional", gemma2_config, "head_dim", "4,\"use_bidirectional_attention\":true",
       "use_bidirectional_attention = true is not supported"},
      {"layer_types off the pattern", gemma2_config, "head_dim",
       "4,\"layer_types\":[\"sliding_attention\",\"full_attention\",\"full_attention\","
       "\"sliding_attention\"]",
       "layer_types is not supported"},
      {"unknown layer type", gemma2_config, "head_dim",
       "4,\"layer_types\":[\"sliding_attention\",\"chunked_attention\",\"full_attention\","
       "\"sliding_attention\"]",
       "layer_types[1]"},
      {"relu", gemma2_config, "head_dim", "4,\"hidden_activation\":\"relu\"",
       "hidden_activation \"relu\" is not supported"},
      {"scaled local rotary", gemma3_config, "rope_scaling",
       "null,\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"},"
       "\"sliding_attention\":{\"rope_type\":\"linear\",\"factor\":2.0}}",
       "rope_parameters.sliding_attention.rope_type"},
      {"longrope global rotary", gemma3_config, "rope_scaling",
       "{\"rope_type\":\"longrope\",\"factor\":8.0}",
       "rope_scaling.rope_type \"longrope\" is not supported"},
      /* transformers 5's Gemma 3 keeps the key and never applies it */
      {"gemma3 attention soft-cap", gemma3_config, "rope_scaling",
       "null,\"attn_logit_softcapping\":15.0", "attn_logit_softcapping = 15 is not supported"},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    char dir[512];
    config_with(config, sizeof(config), configs[i].config, configs[i].key, configs[i].value);
    write_model_dir(dir, "gemma-config", config, NULL, 1);
    model_t *m = model_load_hf(dir, err);
    expect_error(configs[i].what, m == NULL, err, "gemma-config", configs[i].reason);
    model_free(m);
  }
}

/* Phi-3's config.json: the default rotary or longrope (su and yarn are
 * longrope to transformers for phi3), its factors checked naming the key. */
static const char *phi3_config =
    "{\"model_type\":\"phi3\",\"hidden_size\":8,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"intermediate_size\":12,"
    "\"vocab_size\":11,\"max_position_embeddings\":64,\"rms_norm_eps\":1e-05,"
    "\"rope_scaling\":null,\"sliding_window\":2047}";

static void test_phi3_config(void) {
  char err[HYDRA_ERR_LEN] = "", config[2048], longer[2048];
  model_config_t cfg;
  int rc = load_config("phi3-config", phi3_config, &cfg, err);
  CHECK(rc == 0 && cfg.sliding_window == 2047 && cfg.sliding_period == 0 &&
            model_layer_slides(&cfg, 1) && cfg.rotary_dim == 4 &&
            cfg.rope_scaling == ROPE_SCALING_NONE,
        "phi3: a window on every layer (%s)", err);
  /* longrope as Phi-3.5 writes it: the short factors divide the frequencies,
   * attention factor sqrt(1 + ln(64 / 16) / ln 16), the context 16 */
  config_with(longer, sizeof(longer), phi3_config, "max_position_embeddings",
              "64,\"original_max_position_embeddings\":16");
  for (int spelling = 0; spelling < 3; spelling++) {
    static const char *const types[] = {"\"type\":\"longrope\"", "\"type\":\"su\"",
                                        "\"rope_type\":\"yarn\""};
    char value[256];
    snprintf(value, sizeof value, "{%s,\"short_factor\":[1.5,3],\"long_factor\":[4,8]}",
             types[spelling]);
    config_with(config, sizeof(config), longer, "rope_scaling", value);
    rc = load_config("phi3-config", config, &cfg, err);
    double inv_freq[2];
    float scale = 0.0f;
    if (rc == 0)
      model_rope_frequencies(&cfg, inv_freq, &scale);
    CHECK(rc == 0 && cfg.rope_scaling == ROPE_SCALING_LONGROPE && cfg.max_positions == 16 &&
              cfg.rope_original_max_positions == 16 && fabs(inv_freq[0] - 1.0 / 1.5) < 1e-12 &&
              fabs(inv_freq[1] - pow(10000.0, -0.5) / 3.0) < 1e-12 &&
              fabsf(scale - sqrtf(1.5f)) < 1e-6f,
          "phi3 longrope (%s): short factors, attention factor %g, context %d (%s)", value,
          (double)scale, cfg.max_positions, err);
  }
  struct {
    const char *what, *value, *reason;
  } configs[] = {
      {"longrope without short_factor", "{\"type\":\"longrope\",\"long_factor\":[1,1]}",
       "rope_scaling.short_factor must be a list of 2 numbers"},
      {"longrope with 3 short factors",
       "{\"type\":\"longrope\",\"short_factor\":[1,1,1],\"long_factor\":[1,1]}",
       "rope_scaling.short_factor must be a list of 2 numbers"},
      {"longrope with a negative long factor",
       "{\"type\":\"longrope\",\"short_factor\":[1,1],\"long_factor\":[1,-1]}",
       "rope_scaling.long_factor[1] must be a positive number"},
      {"dynamic", "{\"rope_type\":\"dynamic\",\"factor\":2.0}",
       "rope_scaling.rope_type \"dynamic\" is not supported (phi3 takes \"default\" and "
       "\"longrope\""},
  };
  for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
    config_with(config, sizeof(config), phi3_config, "rope_scaling", configs[i].value);
    rc = load_config("phi3-config", config, &cfg, err);
    expect_error(configs[i].what, rc != 0, err, "phi3-config", configs[i].reason);
  }
}

/* Phi (Phi-2) and StableLM: q/k LayerNorms per head (phi's one for every
 * head, with a bias; StableLM 2's one per head, without); phi's with a
 * head_dim other than hidden_size / heads refused by name. */
static void test_phi_config(void) {
  char dir[512], err[HYDRA_ERR_LEN] = "";
  static const char *phi = "{\"model_type\":\"phi\",\"hidden_size\":8,\"num_hidden_layers\":2,"
                           "\"num_attention_heads\":2,\"intermediate_size\":12,\"vocab_size\":11,"
                           "\"max_position_embeddings\":64,\"qk_layernorm\":true}";
  model_config_t cfg;
  int rc = load_config("phi-config", phi, &cfg, err);
  CHECK(rc == 0 && cfg.qk_norm == QK_NORM_LAYERNORM_HEADS && cfg.qk_norm_bias,
        "phi qk_layernorm: LayerNorm heads with biases (%s)", err);
  char config[1024];
  config_with(config, sizeof(config), phi, "qk_layernorm", "true,\"head_dim\":8");
  write_model_dir(dir, "phi-config", config, NULL, 1);
  model_t *m = model_load_hf(dir, err);
  expect_error("phi with qk_layernorm and another head_dim", m == NULL, err, "phi-config",
               "qk_layernorm = true with head_dim = 8 is not supported");
  model_free(m);
  rc = load_config("stablelm-config",
                   "{\"model_type\":\"stablelm\",\"hidden_size\":16,\"num_hidden_layers\":2,"
                   "\"num_attention_heads\":2,\"intermediate_size\":12,\"vocab_size\":11,"
                   "\"max_position_embeddings\":64,\"qk_layernorm\":true}",
                   &cfg, err);
  CHECK(rc == 0 && cfg.qk_norm == QK_NORM_LAYERNORM_HEADS && !cfg.qk_norm_bias,
        "stablelm qk_layernorm: LayerNorm heads without biases (%s)", err);
  static const char *opt = "{\"model_type\":\"opt\",\"hidden_size\":8,\"num_hidden_layers\":2,"
                           "\"num_attention_heads\":2,\"ffn_dim\":12,\"vocab_size\":11,"
                           "\"max_position_embeddings\":64,\"do_layer_norm_before\":true}";
  struct {
    const char *what, *key, *value, *reason;
  } opts[] = {
      {"final norm removed", "do_layer_norm_before", "true,\"_remove_final_layer_norm\":true",
       "_remove_final_layer_norm = true is not supported"},
      {"no affine norms", "do_layer_norm_before", "true,\"layer_norm_elementwise_affine\":false",
       "layer_norm_elementwise_affine = false is not supported"},
  };
  for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
    config_with(config, sizeof(config), opt, opts[i].key, opts[i].value);
    write_model_dir(dir, "opt-config", config, NULL, 1);
    m = model_load_hf(dir, err);
    expect_error(opts[i].what, m == NULL, err, "opt-config", opts[i].reason);
    model_free(m);
  }
  /* OPT-350m: norms after the residual adds and none at the end, a projected embedding */
  config_with(config, sizeof(config), opt, "do_layer_norm_before",
              "false,\"word_embed_proj_dim\":4");
  rc = load_config("opt-config", config, &cfg, err);
  CHECK(rc == 0 && cfg.post_residual_norms && cfg.no_final_norm && cfg.embed_proj_dim == 4 &&
            model_embed_width(&cfg) == 4,
        "opt-350m: post-residual norms, no final norm, a 4-wide embedding (%s)", err);
  rc = load_config("opt-config", opt, &cfg, err);
  CHECK(rc == 0 && !cfg.post_residual_norms && !cfg.no_final_norm && cfg.embed_proj_dim == 0 &&
            model_embed_width(&cfg) == 8,
        "opt: pre norms, a final norm, no projection (%s)", err);
}

/* GPT-Neo: attention_types expanded into the local layers; a list off the
 * "all but every k-th" pattern refused by name. */
static void test_gpt_neo_config(void) {
  char err[HYDRA_ERR_LEN] = "", config[2048];
  static const char *neo =
      "{\"model_type\":\"gpt_neo\",\"hidden_size\":8,\"num_layers\":6,\"num_heads\":2,"
      "\"vocab_size\":11,\"max_position_embeddings\":64,\"window_size\":4,"
      "\"attention_types\":[[[\"global\",\"local\"],3]]}";
  model_config_t cfg;
  int rc = load_config("gpt-neo-config", neo, &cfg, err);
  CHECK(rc == 0 && cfg.sliding_period == 2 && cfg.sliding_offset == 1 &&
            !model_layer_slides(&cfg, 4) && model_layer_slides(&cfg, 5) && cfg.d_mlp == 32,
        "gpt_neo: global, local x3 (%s)", err);
  config_with(config, sizeof(config), neo, "attention_types",
              "[[[\"global\",\"local\",\"local\"],1],[[\"global\",\"local\"],1],"
              "[[\"global\"],1]]");
  char dir[512];
  write_model_dir(dir, "gpt-neo-config", config, NULL, 1);
  model_t *m = model_load_hf(dir, err);
  expect_error("gpt_neo off the pattern", m == NULL, err, "gpt-neo-config",
               "attention_types is not supported");
  model_free(m);
}

/* The committed tiny models, when the second engineer's data is present. */
static void test_repo_models(const char *root) {
  const char *names[] = {"tiny-gpt2",
                         "tiny-llama",
                         "tiny-llama-sharded",
                         "tiny-gpt_neox",
                         "tiny-gpt_neox-sequential",
                         "tiny-qwen2",
                         "tiny-qwen3",
                         "tiny-mistral",
                         "tiny-olmo2",
                         "tiny-gemma",
                         "tiny-gemma2",
                         "tiny-gemma3",
                         "tiny-phi3",
                         "tiny-phi",
                         "tiny-granite",
                         "tiny-gpt_neo",
                         "tiny-stablelm",
                         "tiny-stablelm-parallel",
                         "tiny-opt",
                         "tiny-gptj"};
  const char *families[] = {"gpt2",    "llama",       "llama",    "gpt_neox", "gpt_neox",
                            "qwen2",   "qwen3",       "mistral",  "olmo2",    "gemma",
                            "gemma2",  "gemma3_text", "phi3",     "phi",      "granite",
                            "gpt_neo", "stablelm",    "stablelm", "opt",      "gptj"};
  const int parallel[] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1},
            rotary_dim[] = {0, 16, 16, 6, 6, 12, 16, 16, 12, 16, 16, 16, 12, 6, 12, 0, 4, 4, 0, 8};
  for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
    char dir[1024], cfg[1100], err[HYDRA_ERR_LEN] = "";
    snprintf(dir, sizeof(dir), "%s/tests/data/%s", root, names[i]);
    snprintf(cfg, sizeof(cfg), "%s/config.json", dir);
    if (access(cfg, R_OK) != 0) {
      printf("skip %s: not present\n", names[i]);
      continue;
    }
    model_t *m = model_load_hf(dir, err);
    CHECK(m && strcmp(m->cfg.family, families[i]) == 0, "load %s: %s", names[i],
          m ? m->cfg.family : err);
    if (m && strcmp(names[i], "tiny-qwen2") == 0)
      CHECK(m->cfg.qkv_bias && !m->cfg.o_bias && m->layers[2].bv && !m->layers[2].bo,
            "tiny-qwen2: q/k/v biases, no o_proj bias");
    if (m && strcmp(names[i], "tiny-qwen3") == 0)
      CHECK(m->cfg.qk_norm && m->cfg.head_dim == 16 && m->cfg.qkv_bias && m->cfg.o_bias &&
                m->layers[2].k_norm_w && m->layers[2].bo,
            "tiny-qwen3: per-head q/k norms, head_dim 16, q/k/v/o biases");
    if (m && strcmp(names[i], "tiny-olmo2") == 0)
      CHECK(m->cfg.no_pre_norms && m->cfg.post_norms && m->cfg.qk_norm == QK_NORM_WHOLE &&
                !m->layers[2].attn_norm_w && m->layers[2].post_mlp_norm_w && m->layers[2].bo,
            "tiny-olmo2: post norms only, q/k norms over the whole projections, biases");
    if (m && strcmp(names[i], "tiny-phi") == 0)
      CHECK(m->cfg.unembed_bias && m->unembed_b && m->layers[1].b_up && m->layers[1].bo &&
                m->layers[1].mlp_norm_b &&
                m->layers[1].mlp_norm_b[3] == m->layers[1].attn_norm_b[3],
            "tiny-phi: one LayerNorm for both sublayers, biases, an lm_head bias");
    if (m && strcmp(names[i], "tiny-granite") == 0)
      CHECK(m->cfg.embed_scale == 3.0f && fabsf(m->cfg.attn_scale - 0.3f) < 1e-7f &&
                fabsf(m->cfg.residual_scale - 0.6f) < 1e-7f && m->cfg.tied_unembed,
            "tiny-granite: embedding, attention and residual multipliers, tied");
    if (m && strcmp(names[i], "tiny-gpt_neo") == 0)
      CHECK(m->cfg.sliding_window == 5 && !model_layer_slides(&m->cfg, 0) &&
                model_layer_slides(&m->cfg, 1) && !model_layer_slides(&m->cfg, 2) &&
                m->cfg.attn_scale == 1.0f && !m->layers[0].bq && m->layers[0].bo,
            "tiny-gpt_neo: global, local, global; unscaled scores; no q/k/v biases");
    if (m && strcmp(names[i], "tiny-opt") == 0)
      CHECK(m->cfg.activation == ACT_RELU && m->cfg.positions == POSITIONS_LEARNED &&
                m->cfg.tied_unembed && m->layers[2].b_down,
            "tiny-opt: ReLU, learned positions, tied, biases");
    if (m && strcmp(names[i], "tiny-gemma2") == 0)
      CHECK(m->cfg.post_norms && m->cfg.attn_softcap == 3.0f && m->cfg.final_softcap == 4.0f &&
                m->cfg.sliding_window == 4 && m->cfg.sliding_period == 2 &&
                m->layers[1].post_mlp_norm_w && m->unembed == m->tok_embed,
            "tiny-gemma2: pre and post norms, soft-caps 3 and 4, window 4 on alternate layers");
    if (m && strcmp(names[i], "tiny-gemma3") == 0)
      CHECK(m->cfg.qk_norm == QK_NORM_PER_HEAD && m->cfg.rope_local_theta == 100.0f &&
                m->cfg.sliding_period == 3 && m->cfg.rope_scaling == ROPE_SCALING_LINEAR,
            "tiny-gemma3: q/k norms, local theta 100, every third layer full, linear scaling");
    if (m)
      CHECK(m->cfg.parallel_residual == parallel[i] && m->cfg.rotary_dim == rotary_dim[i],
            "%s: parallel_residual %d, rotary_dim %d", names[i], m->cfg.parallel_residual,
            m->cfg.rotary_dim);
    model_free(m);
  }
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

int main(int argc, char **argv) {
  if (argc > 2)
    seed = strtoull(argv[2], NULL, 10);
  rng_state = seed ? seed : 1;
  check_seed(seed);
  snprintf(tmp, sizeof(tmp), "%s/hydra-test-safetensors-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(tmp)) {
    CHECK(0, "cannot create a temporary directory under %s", tmp);
    return check_exit("test_safetensors");
  }
  test_values();
  test_truncated();
  test_broken();
  test_gpt2();
  test_llama();
  test_gpt_neox_config();
  test_qwen2_config();
  test_qwen3_config();
  test_mistral_config();
  test_gemma_config();
  test_gemma3_multimodal_config();
  test_phi3_config();
  test_phi_config();
  test_gpt_neo_config();
  if (argc > 1)
    test_repo_models(argv[1]);
  nftw(tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  return check_exit("test_safetensors");
}
