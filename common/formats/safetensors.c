#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "error.h"

/* F32 and F64 are read straight into memory: the format is little-endian. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* The reference implementation's limit: a longer header is not a model's. */
#define SAFETENSORS_MAX_HEADER 100000000u
/* Bytes converted per read for F16, BF16 and F64. */
#define SAFETENSORS_CHUNK (1u << 20)

struct safetensors {
  char *path;
  int fd;
  uint64_t file_size;
  uint64_t data_start;
  json_t *header;   /* owns the tensor names */
  json_t *metadata; /* borrowed from header; NULL when absent */
  safetensors_tensor_t *tensors;
  size_t n_tensors;
};

static const struct {
  const char *name;
  size_t size;
} dtypes[] = {
    [SAFETENSORS_BOOL] = {"BOOL", 1},       [SAFETENSORS_U8] = {"U8", 1},
    [SAFETENSORS_I8] = {"I8", 1},           [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1},
    [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1}, [SAFETENSORS_I16] = {"I16", 2},
    [SAFETENSORS_U16] = {"U16", 2},         [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2},       [SAFETENSORS_I32] = {"I32", 4},
    [SAFETENSORS_U32] = {"U32", 4},         [SAFETENSORS_F32] = {"F32", 4},
    [SAFETENSORS_F64] = {"F64", 8},         [SAFETENSORS_I64] = {"I64", 8},
    [SAFETENSORS_U64] = {"U64", 8},
};
#define N_DTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

const char *safetensors_dtype_name(safetensors_dtype_t dtype) {
  return (size_t)dtype < N_DTYPES ? dtypes[dtype].name : "?";
}

size_t safetensors_dtype_size(safetensors_dtype_t dtype) {
  return (size_t)dtype < N_DTYPES ? dtypes[dtype].size : 0;
}

static int dtype_parse(const char *name, safetensors_dtype_t *out) {
  for (size_t i = 0; i < N_DTYPES; i++) {
    if (strcmp(name, dtypes[i].name) == 0) {
      *out = (safetensors_dtype_t)i;
      return 0;
    }
  }
  return -1;
}

char *safetensors_format_shape(const uint64_t *shape, int n_dims, char *buf, size_t len) {
  size_t used = 0;
  if (len == 0)
    return buf;
  buf[0] = '\0';
  for (int i = -1; i <= n_dims && used < len; i++) {
    int k;
    if (i < 0)
      k = snprintf(buf + used, len - used, "[");
    else if (i == n_dims)
      k = snprintf(buf + used, len - used, "]");
    else
      k = snprintf(buf + used, len - used, "%s%" PRIu64, i ? ", " : "", shape[i]);
    if (k < 0)
      break;
    used += (size_t)k;
  }
  return buf;
}

/* Reads exactly n bytes at offset; `what` names the thing read in errors. */
static int read_at(const safetensors_t *st, void *dst, uint64_t n, uint64_t offset,
                   const char *what, char *err) {
  unsigned char *p = dst;
  while (n > 0) {
    size_t want = n > (1u << 30) ? (1u << 30) : (size_t)n;
    ssize_t got = pread(st->fd, p, want, (off_t)offset);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      return err_set(err, "%s: reading %s: %s", st->path, what, strerror(errno));
    if (got == 0)
      return err_set(err, "%s: unexpected end of file reading %s (was the file shortened?)",
                     st->path, what);
    p += got;
    n -= (uint64_t)got;
    offset += (uint64_t)got;
  }
  return 0;
}

static int parse_metadata(safetensors_t *st, json_t *metadata, char *err) {
  const char *key;
  json_t *value;
  if (!json_is_object(metadata))
    return err_set(err, "%s: __metadata__ is not a JSON object", st->path);
  json_object_foreach(metadata, key, value) {
    if (!json_is_string(value))
      return err_set(err, "%s: __metadata__.%s is not a string", st->path, key);
  }
  st->metadata = metadata;
  return 0;
}

static int parse_shape(const safetensors_t *st, const char *name, const json_t *shape,
                       safetensors_tensor_t *t, char *err) {
  if (!shape)
    return err_set(err, "%s: tensor %s: missing shape", st->path, name);
  if (!json_is_array(shape))
    return err_set(err, "%s: tensor %s: shape is not an array", st->path, name);
  size_t rank = json_array_size(shape);
  if (rank > SAFETENSORS_MAX_DIMS)
    return err_set(err, "%s: tensor %s: shape has %zu dims, more than the %d supported", st->path,
                   name, rank, SAFETENSORS_MAX_DIMS);
  uint64_t count = 1;
  for (size_t i = 0; i < rank; i++) {
    const json_t *dim = json_array_get(shape, i);
    if (!json_is_integer(dim))
      return err_set(err, "%s: tensor %s: shape[%zu] is not an integer", st->path, name, i);
    json_int_t v = json_integer_value(dim);
    if (v < 0)
      return err_set(err, "%s: tensor %s: shape[%zu] = %" JSON_INTEGER_FORMAT " is negative",
                     st->path, name, i, v);
    t->shape[i] = (uint64_t)v;
    if (v != 0 && count > UINT64_MAX / (uint64_t)v)
      return err_set(err, "%s: tensor %s: the element count of its shape overflows", st->path,
                     name);
    count *= (uint64_t)v;
  }
  t->n_dims = (int)rank;
  t->n_elements = count;
  size_t size = dtypes[t->dtype].size;
  if (count > UINT64_MAX / size)
    return err_set(err, "%s: tensor %s: the byte size of its shape overflows", st->path, name);
  t->n_bytes = count * size;
  return 0;
}

static int parse_offsets(const safetensors_t *st, const char *name, const json_t *offsets,
                         safetensors_tensor_t *t, char *err) {
  const uint64_t data_size = st->file_size - st->data_start;
  json_int_t v[2];
  if (!offsets)
    return err_set(err, "%s: tensor %s: missing data_offsets", st->path, name);
  if (!json_is_array(offsets) || json_array_size(offsets) != 2)
    return err_set(err, "%s: tensor %s: data_offsets is not an array of two integers", st->path,
                   name);
  for (size_t i = 0; i < 2; i++) {
    const json_t *o = json_array_get(offsets, i);
    if (!json_is_integer(o) || json_integer_value(o) < 0)
      return err_set(err, "%s: tensor %s: data_offsets[%zu] is not a non-negative integer",
                     st->path, name, i);
    v[i] = json_integer_value(o);
  }
  uint64_t begin = (uint64_t)v[0], end = (uint64_t)v[1];
  if (begin > end)
    return err_set(err,
                   "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                   st->path, name, begin, end);
  if (end > data_size)
    return err_set(err,
                   "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64
                   "] reach beyond the data section (%" PRIu64 " bytes): truncated file?",
                   st->path, name, begin, end, data_size);
  if (end - begin != t->n_bytes) {
    char shape[160];
    safetensors_format_shape(t->shape, t->n_dims, shape, sizeof(shape));
    return err_set(err,
                   "%s: tensor %s: data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                   " bytes but shape %s of %s needs %" PRIu64,
                   st->path, name, begin, end, end - begin, shape, dtypes[t->dtype].name,
                   t->n_bytes);
  }
  t->offset = st->data_start + begin;
  return 0;
}

static int parse_entry(const safetensors_t *st, const char *name, const json_t *entry,
                       safetensors_tensor_t *t, char *err) {
  if (!json_is_object(entry))
    return err_set(err, "%s: tensor %s: entry is not a JSON object", st->path, name);
  const json_t *dtype = json_object_get(entry, "dtype");
  if (!dtype)
    return err_set(err, "%s: tensor %s: missing dtype", st->path, name);
  if (!json_is_string(dtype))
    return err_set(err, "%s: tensor %s: dtype is not a string", st->path, name);
  if (dtype_parse(json_string_value(dtype), &t->dtype))
    return err_set(err, "%s: tensor %s: unknown dtype \"%.40s\"", st->path, name,
                   json_string_value(dtype));
  t->name = name;
  if (parse_shape(st, name, json_object_get(entry, "shape"), t, err))
    return -1;
  return parse_offsets(st, name, json_object_get(entry, "data_offsets"), t, err);
}

static int tensor_compare(const void *a, const void *b) {
  return strcmp(((const safetensors_tensor_t *)a)->name, ((const safetensors_tensor_t *)b)->name);
}

static int parse_header(safetensors_t *st, const char *text, size_t len, char *err) {
  json_error_t jerr;
  st->header = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!st->header)
    return err_set(err, "%s: header is not valid JSON: %s (at byte %d of the header)", st->path,
                   jerr.text, jerr.position);
  if (!json_is_object(st->header))
    return err_set(err, "%s: header is not a JSON object", st->path);
  size_t n = json_object_size(st->header);
  st->tensors = calloc(n ? n : 1, sizeof(*st->tensors));
  if (!st->tensors)
    return err_set(err, "%s: out of memory for %zu tensor entries", st->path, n);
  const char *name;
  json_t *entry;
  json_object_foreach(st->header, name, entry) {
    if (strcmp(name, "__metadata__") == 0) {
      if (parse_metadata(st, entry, err))
        return -1;
      continue;
    }
    if (parse_entry(st, name, entry, &st->tensors[st->n_tensors], err))
      return -1;
    st->n_tensors++;
  }
  qsort(st->tensors, st->n_tensors, sizeof(*st->tensors), tensor_compare);
  return 0;
}

safetensors_t *safetensors_open(const char *path, char *err) {
  char *header = NULL;
  safetensors_t *st = calloc(1, sizeof(*st));
  if (!st) {
    err_set(err, "%s: out of memory", path);
    return NULL;
  }
  st->fd = -1;
  if (!(st->path = strdup(path))) {
    err_set(err, "%s: out of memory", path);
    goto fail;
  }
  st->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (st->fd < 0) {
    err_set(err, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat sb;
  if (fstat(st->fd, &sb) != 0) {
    err_set(err, "%s: cannot stat: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(sb.st_mode)) {
    err_set(err, "%s: not a regular file", path);
    goto fail;
  }
  st->file_size = (uint64_t)sb.st_size;
  if (st->file_size < 8) {
    err_set(err, "%s: file is %" PRIu64 " bytes, too short to hold a safetensors header", path,
            st->file_size);
    goto fail;
  }
  unsigned char len_bytes[8];
  if (read_at(st, len_bytes, 8, 0, "the header length", err))
    goto fail;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--)
    header_len = header_len << 8 | len_bytes[i];
  if (header_len > st->file_size - 8) {
    err_set(err,
            "%s: header length %" PRIu64 " is larger than the rest of the file (%" PRIu64
            " bytes): truncated, or not a safetensors file",
            path, header_len, st->file_size - 8);
    goto fail;
  }
  if (header_len > SAFETENSORS_MAX_HEADER) {
    err_set(err, "%s: header length %" PRIu64 " exceeds the %u-byte limit", path, header_len,
            SAFETENSORS_MAX_HEADER);
    goto fail;
  }
  header = malloc(header_len ? header_len : 1);
  if (!header) {
    err_set(err, "%s: out of memory for a %" PRIu64 "-byte header", path, header_len);
    goto fail;
  }
  if (read_at(st, header, header_len, 8, "the header", err))
    goto fail;
  st->data_start = 8 + header_len;
  if (parse_header(st, header, (size_t)header_len, err))
    goto fail;
  free(header);
  return st;
fail:
  free(header);
  safetensors_close(st);
  return NULL;
}

void safetensors_close(safetensors_t *st) {
  if (!st)
    return;
  free(st->tensors);
  json_decref(st->header);
  if (st->fd >= 0)
    close(st->fd);
  free(st->path);
  free(st);
}

const char *safetensors_path(const safetensors_t *st) {
  return st->path;
}

size_t safetensors_count(const safetensors_t *st) {
  return st->n_tensors;
}

const safetensors_tensor_t *safetensors_tensor(const safetensors_t *st, size_t i) {
  return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const safetensors_tensor_t *safetensors_find(const safetensors_t *st, const char *name) {
  safetensors_tensor_t key = {.name = name};
  return bsearch(&key, st->tensors, st->n_tensors, sizeof(key), tensor_compare);
}

const char *safetensors_metadata(const safetensors_t *st, const char *key) {
  return st->metadata ? json_string_value(json_object_get(st->metadata, key)) : NULL;
}

/* IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu,
           mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | mantissa << 13;
  } else if (exponent == 0) {
    float v = (float)mantissa * (1.0f / 16777216.0f); /* subnormal: mantissa * 2^-24, exact */
    return sign ? -v : v;
  } else {
    bits = sign | (exponent + 112) << 23 | mantissa << 13;
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

static void convert(const unsigned char *src, size_t n, safetensors_dtype_t dtype, float *dst) {
  for (size_t i = 0; i < n; i++) {
    if (dtype == SAFETENSORS_F64) {
      double v;
      memcpy(&v, src + 8 * i, sizeof(v));
      dst[i] = (float)v;
    } else {
      uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
      dst[i] = dtype == SAFETENSORS_F16 ? f16_to_f32(h) : bf16_to_float(h);
    }
  }
}

static int read_converted(const safetensors_t *st, const safetensors_tensor_t *t, float *dst,
                          char *err) {
  const size_t size = dtypes[t->dtype].size, per_chunk = SAFETENSORS_CHUNK / size;
  unsigned char *buf = malloc(SAFETENSORS_CHUNK);
  if (!buf)
    return err_set(err, "%s: out of memory reading tensor %s", st->path, t->name);
  for (uint64_t done = 0; done < t->n_elements;) {
    size_t k = t->n_elements - done < per_chunk ? (size_t)(t->n_elements - done) : per_chunk;
    if (read_at(st, buf, (uint64_t)k * size, t->offset + done * size, t->name, err)) {
      free(buf);
      return -1;
    }
    convert(buf, k, t->dtype, dst + done);
    done += k;
  }
  free(buf);
  return 0;
}

int safetensors_read_f32(const safetensors_t *st, const safetensors_tensor_t *t, float *dst,
                         size_t n, char *err) {
  if (t->n_elements != n)
    return err_set(err, "%s: tensor %s has %" PRIu64 " elements but the caller expects %zu",
                   st->path, t->name, t->n_elements, n);
  if (t->n_bytes > SIZE_MAX)
    return err_set(err, "%s: tensor %s is too large for this host", st->path, t->name);
  switch (t->dtype) {
  case SAFETENSORS_F32:
    return read_at(st, dst, t->n_bytes, t->offset, t->name, err);
  case SAFETENSORS_F16:
  case SAFETENSORS_BF16:
  case SAFETENSORS_F64:
    return read_converted(st, t, dst, err);
  default:
    return err_set(err, "%s: tensor %s has dtype %s, which cannot be read as fp32", st->path,
                   t->name, dtypes[t->dtype].name);
  }
}
