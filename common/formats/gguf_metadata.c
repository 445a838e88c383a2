/* gguf_metadata.c - the typed getters of a GGUF file's key-value
 * metadata (gguf.h); the values were read and checked by gguf_open. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "gguf_file.h"

int64_t gguf_n_kv(const gguf_t *g) {
  return g->n_kv;
}

const char *gguf_key(const gguf_t *g, int64_t i) {
  return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

int gguf_kv_type(const gguf_t *g, int64_t i) {
  return i >= 0 && i < g->n_kv ? (int)g->kv[i].type : -1;
}

/* The pair for `key` if present and of `type`, else NULL with err set. */
static const kv_t *find_typed(const gguf_t *g, const char *key, gguf_value_type_t type, char *err) {
  int64_t i = gguf_find_key(g, key);
  if (i < 0) {
    err_set(err, "%s: metadata key %s is missing", g->path, key);
    return NULL;
  }
  if (g->kv[i].type != type) {
    err_set(err, "%s: metadata key %s has type %s, expected %s", g->path, key,
            gguf_value_type_name(g->kv[i].type), gguf_value_type_name(type));
    return NULL;
  }
  return &g->kv[i];
}

int gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out, char *err) {
  const kv_t *kv = find_typed(g, key, GGUF_TYPE_UINT32, err);
  if (!kv)
    return -1;
  *out = load_u32(kv->scalar);
  return 0;
}

int gguf_get_i32(const gguf_t *g, const char *key, int32_t *out, char *err) {
  const kv_t *kv = find_typed(g, key, GGUF_TYPE_INT32, err);
  if (!kv)
    return -1;
  uint32_t u = load_u32(kv->scalar);
  memcpy(out, &u, sizeof(u));
  return 0;
}

int gguf_get_f32(const gguf_t *g, const char *key, float *out, char *err) {
  const kv_t *kv = find_typed(g, key, GGUF_TYPE_FLOAT32, err);
  if (!kv)
    return -1;
  *out = f32_from_bits(load_u32(kv->scalar));
  return 0;
}

int gguf_get_bool(const gguf_t *g, const char *key, int *out, char *err) {
  const kv_t *kv = find_typed(g, key, GGUF_TYPE_BOOL, err);
  if (!kv)
    return -1;
  *out = kv->scalar[0] != 0;
  return 0;
}

int gguf_get_int(const gguf_t *g, const char *key, int64_t *out, char *err) {
  int64_t i = gguf_find_key(g, key);
  if (i < 0)
    return err_set(err, "%s: metadata key %s is missing", g->path, key);
  const uint8_t *s = g->kv[i].scalar;
  switch (g->kv[i].type) {
  case GGUF_TYPE_UINT8:
    *out = s[0];
    return 0;
  case GGUF_TYPE_INT8:
    *out = (int64_t)s[0] - (s[0] & 0x80 ? 0x100 : 0);
    return 0;
  case GGUF_TYPE_UINT16:
    *out = load_u16(s);
    return 0;
  case GGUF_TYPE_INT16:
    *out = (int64_t)load_u16(s) - (s[1] & 0x80 ? 0x10000 : 0);
    return 0;
  case GGUF_TYPE_UINT32:
    *out = load_u32(s);
    return 0;
  case GGUF_TYPE_INT32:
    *out = (int64_t)load_u32(s) - (s[3] & 0x80 ? (int64_t)0x100000000 : 0);
    return 0;
  case GGUF_TYPE_UINT64:
  case GGUF_TYPE_INT64: {
    uint64_t u = load_u64(s);
    if (g->kv[i].type == GGUF_TYPE_UINT64 && u > INT64_MAX)
      return err_set(err, "%s: metadata key %s = %llu is too large", g->path, key,
                     (unsigned long long)u);
    memcpy(out, &u, sizeof(u));
    return 0;
  }
  default:
    return err_set(err, "%s: metadata key %s has type %s, expected an integer", g->path, key,
                   gguf_value_type_name(g->kv[i].type));
  }
}

int gguf_get_float(const gguf_t *g, const char *key, double *out, char *err) {
  int64_t i = gguf_find_key(g, key);
  if (i < 0)
    return err_set(err, "%s: metadata key %s is missing", g->path, key);
  if (g->kv[i].type == GGUF_TYPE_FLOAT32) {
    *out = f32_from_bits(load_u32(g->kv[i].scalar));
    return 0;
  }
  if (g->kv[i].type == GGUF_TYPE_FLOAT64) {
    uint64_t u = load_u64(g->kv[i].scalar);
    memcpy(out, &u, sizeof(u));
    return 0;
  }
  return err_set(err, "%s: metadata key %s has type %s, expected a float", g->path, key,
                 gguf_value_type_name(g->kv[i].type));
}

int gguf_get_string(const gguf_t *g, const char *key, const char **out, uint64_t *len, char *err) {
  const kv_t *kv = find_typed(g, key, GGUF_TYPE_STRING, err);
  if (!kv)
    return -1;
  *out = kv->str;
  if (len)
    *len = kv->str_len;
  return 0;
}

int gguf_get_array(const gguf_t *g, const char *key, gguf_array_t *out, char *err) {
  const kv_t *kv = find_typed(g, key, GGUF_TYPE_ARRAY, err);
  if (!kv)
    return -1;
  *out = kv->array;
  return 0;
}

const char *gguf_array_string(const gguf_array_t *a, uint64_t i, uint64_t *len) {
  if (a->type != GGUF_TYPE_STRING || !a->strings || i >= a->n)
    return NULL;
  if (len)
    *len = a->string_lens[i];
  return a->strings[i];
}
