#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buffer.h"
#include "error.h"
#include "gguf_file.h"

/* Counts and sizes bounded by the file size are cast to size_t freely. */
_Static_assert(sizeof(size_t) >= sizeof(uint64_t), "gguf.c needs a 64-bit size_t");

/* Smallest encodings, used to reject absurd counts before allocating:
 * a key-value pair is a string (8-byte length) + a type (4) + a value (>= 1);
 * a tensor info is a name (8) + n_dims (4) + one dim (8) + type (4) + offset (8). */
#define MIN_KV_BYTES 13
#define MIN_TENSOR_INFO_BYTES 32

const char *gguf_tensor_type_name(uint32_t type) {
  const gguf_quant_type_t *qt = gguf_quant_type(type);
  return qt ? qt->name : NULL;
}

int gguf_tensor_type_supported(uint32_t type) {
  const gguf_quant_type_t *qt = gguf_quant_type(type);
  return qt && qt->decode;
}

static const char *const VALUE_TYPE_NAMES[] = {
    "UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",   "FLOAT32",
    "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64",
};

const char *gguf_value_type_name(uint32_t type) {
  return type < sizeof(VALUE_TYPE_NAMES) / sizeof(VALUE_TYPE_NAMES[0]) ? VALUE_TYPE_NAMES[type]
                                                                       : "?";
}

/* Bytes of one scalar value, 0 for STRING, ARRAY and unknown types. */
static uint32_t value_type_size(uint32_t type) {
  switch (type) {
  case GGUF_TYPE_UINT8:
  case GGUF_TYPE_INT8:
  case GGUF_TYPE_BOOL:
    return 1;
  case GGUF_TYPE_UINT16:
  case GGUF_TYPE_INT16:
    return 2;
  case GGUF_TYPE_UINT32:
  case GGUF_TYPE_INT32:
  case GGUF_TYPE_FLOAT32:
    return 4;
  case GGUF_TYPE_UINT64:
  case GGUF_TYPE_INT64:
  case GGUF_TYPE_FLOAT64:
    return 8;
  default:
    return 0;
  }
}

static int mul_overflows(uint64_t a, uint64_t b, uint64_t *out) {
  if (a != 0 && b > UINT64_MAX / a)
    return 1;
  *out = a * b;
  return 0;
}

/* ---- sequential reader over the header, bounds-checked against the file ---- */

typedef struct {
  int fd;
  const char *path;
  uint64_t size, pos;
  uint64_t buf_start;
  size_t buf_len;
  uint8_t buf[1 << 16];
} reader_t;

static int pread_full(int fd, void *dst, size_t n, uint64_t offset) {
  uint8_t *p = dst;
  while (n > 0) {
    ssize_t got = pread(fd, p, n, (off_t)offset);
    if (got < 0 && errno == EINTR)
      continue;
    if (got == 0)
      errno = 0; /* the file ended: no system error to report */
    if (got <= 0)
      return -1;
    p += got;
    n -= (size_t)got;
    offset += (uint64_t)got;
  }
  return 0;
}

static uint64_t reader_left(const reader_t *r) {
  return r->size - r->pos;
}

/* Reads n bytes of `what`; fails, naming it, when the file ends first. */
static int reader_read(reader_t *r, void *dst, uint64_t n, const char *what, char *err) {
  if (n > reader_left(r))
    return err_set(err,
                   "%s: file is truncated: %s at offset %llu needs %llu bytes but only %llu "
                   "remain",
                   r->path, what, (unsigned long long)r->pos, (unsigned long long)n,
                   (unsigned long long)reader_left(r));
  uint8_t *out = dst;
  while (n > 0) {
    if (r->pos < r->buf_start || r->pos >= r->buf_start + r->buf_len) {
      uint64_t want = reader_left(r) < sizeof(r->buf) ? reader_left(r) : sizeof(r->buf);
      if (pread_full(r->fd, r->buf, (size_t)want, r->pos))
        return err_set(err, "%s: read error at offset %llu: %s", r->path,
                       (unsigned long long)r->pos, errno ? strerror(errno) : "short read");
      r->buf_start = r->pos;
      r->buf_len = (size_t)want;
    }
    size_t at = (size_t)(r->pos - r->buf_start), take = r->buf_len - at;
    if (take > n)
      take = (size_t)n;
    memcpy(out, r->buf + at, take);
    out += take;
    r->pos += take;
    n -= take;
  }
  return 0;
}

static int reader_u32(reader_t *r, uint32_t *v, const char *what, char *err) {
  uint8_t b[4];
  if (reader_read(r, b, 4, what, err))
    return -1;
  *v = load_u32(b);
  return 0;
}

static int reader_u64(reader_t *r, uint64_t *v, const char *what, char *err) {
  uint8_t b[8];
  if (reader_read(r, b, 8, what, err))
    return -1;
  *v = load_u64(b);
  return 0;
}

/* A GGUF string: u64 length + bytes. Returns a malloc'd NUL-terminated copy. */
static int reader_string(reader_t *r, char **out, uint64_t *len_out, const char *what, char *err) {
  uint64_t len;
  if (reader_u64(r, &len, what, err))
    return -1;
  if (len > reader_left(r))
    return err_set(err,
                   "%s: %s at offset %llu has length %llu but only %llu bytes remain in the "
                   "file",
                   r->path, what, (unsigned long long)(r->pos - 8), (unsigned long long)len,
                   (unsigned long long)reader_left(r));
  char *s = malloc((size_t)len + 1);
  if (!s)
    return err_set(err, "%s: out of memory reading %s of %llu bytes", r->path, what,
                   (unsigned long long)len);
  if (reader_read(r, s, len, what, err)) {
    free(s);
    return -1;
  }
  s[len] = '\0';
  *out = s;
  if (len_out)
    *len_out = len;
  return 0;
}

/* ---- metadata ---- */

/* The strings of an array, NUL-terminated one after the other in a single
 * buffer (kv->array_arena); the file bounds every length, so sizes cannot
 * overflow. */
static int read_string_array(reader_t *r, kv_t *kv, char *err) {
  size_t used = 0, cap = 0;
  for (uint64_t i = 0; i < kv->array.n; i++) {
    uint64_t len;
    if (reader_u64(r, &len, "a string's length in an array", err))
      return -1;
    if (len > reader_left(r))
      return err_set(err,
                     "%s: string %llu of metadata key %s has length %llu but only %llu bytes "
                     "remain in the file",
                     r->path, (unsigned long long)i, kv->key, (unsigned long long)len,
                     (unsigned long long)reader_left(r));
    if (buffer_grow((void **)&kv->array_arena, &cap, used + len + 1, 1) != 0)
      return err_set(err, "%s: out of memory reading metadata key %s", r->path, kv->key);
    if (reader_read(r, kv->array_arena + used, len, "a string in an array", err))
      return -1;
    kv->array_arena[used + len] = '\0';
    kv->array_lens[i] = len;
    used += (size_t)len + 1;
  }
  for (uint64_t i = 0, at = 0; i < kv->array.n; at += kv->array_lens[i] + 1, i++)
    kv->array_strings[i] = kv->array_arena + at;
  return 0;
}

static int read_array(reader_t *r, kv_t *kv, char *err) {
  uint32_t type;
  uint64_t n;
  if (reader_u32(r, &type, "an array's element type", err) ||
      reader_u64(r, &n, "an array's length", err))
    return -1;
  if (type == GGUF_TYPE_ARRAY)
    return err_set(err, "%s: metadata key %s is an array of arrays, which is not supported",
                   r->path, kv->key);
  kv->array.type = (gguf_value_type_t)type;
  kv->array.n = n;
  if (type == GGUF_TYPE_STRING) {
    if (n > reader_left(r) / 8)
      return err_set(err,
                     "%s: metadata key %s is an array of %llu strings but only %llu bytes "
                     "remain in the file",
                     r->path, kv->key, (unsigned long long)n, (unsigned long long)reader_left(r));
    kv->array_strings = calloc(n ? (size_t)n : 1, sizeof(char *));
    kv->array_lens = calloc(n ? (size_t)n : 1, sizeof(uint64_t));
    if (!kv->array_strings || !kv->array_lens)
      return err_set(err, "%s: out of memory reading metadata key %s", r->path, kv->key);
    if (read_string_array(r, kv, err))
      return -1;
    kv->array.strings = (const char *const *)kv->array_strings;
    kv->array.string_lens = kv->array_lens;
    return 0;
  }
  uint32_t size = value_type_size(type);
  if (size == 0)
    return err_set(err, "%s: metadata key %s is an array of unknown value type %u", r->path,
                   kv->key, type);
  if (n > reader_left(r) / size)
    return err_set(err,
                   "%s: metadata key %s is an array of %llu %s values but only %llu bytes "
                   "remain in the file",
                   r->path, kv->key, (unsigned long long)n, gguf_value_type_name(type),
                   (unsigned long long)reader_left(r));
  kv->array_data = malloc(n ? (size_t)(n * size) : 1);
  if (!kv->array_data)
    return err_set(err, "%s: out of memory reading metadata key %s", r->path, kv->key);
  if (reader_read(r, kv->array_data, n * size, "an array's values", err))
    return -1;
  kv->array.data = kv->array_data;
  return 0;
}

static int read_kv(reader_t *r, kv_t *kv, char *err) {
  uint32_t type;
  if (reader_string(r, &kv->key, NULL, "a metadata key", err))
    return -1;
  if (reader_u32(r, &type, "a metadata value type", err))
    return -1;
  kv->type = (gguf_value_type_t)type;
  if (type == GGUF_TYPE_STRING)
    return reader_string(r, &kv->str, &kv->str_len, "a metadata string value", err);
  if (type == GGUF_TYPE_ARRAY)
    return read_array(r, kv, err);
  uint32_t size = value_type_size(type);
  if (size == 0)
    return err_set(err, "%s: metadata key %s has unknown value type %u", r->path, kv->key, type);
  return reader_read(r, kv->scalar, size, "a metadata value", err);
}

/* ---- tensor infos ---- */

static int read_tensor_info(reader_t *r, gguf_tensor_t *t, char *err) {
  char *name;
  if (reader_string(r, &name, NULL, "a tensor name", err))
    return -1;
  t->name = name;
  if (reader_u32(r, &t->n_dims, "a tensor's n_dims", err))
    return -1;
  if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
    return err_set(err, "%s: tensor %s has n_dims = %u, expected 1 to %d", r->path, name, t->n_dims,
                   GGUF_MAX_DIMS);
  uint64_t n = 1;
  int overflow = 0;
  for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
    t->ne[d] = 1;
    if (d < t->n_dims && reader_u64(r, &t->ne[d], "a tensor dimension", err))
      return -1;
    if (t->ne[d] > INT64_MAX || mul_overflows(n, t->ne[d], &n) || n > INT64_MAX)
      overflow = 1;
  }
  if (overflow)
    return err_set(err,
                   "%s: tensor %s has shape [%llu, %llu, %llu, %llu] whose element count "
                   "overflows",
                   r->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                   (unsigned long long)t->ne[2], (unsigned long long)t->ne[3]);
  t->n_elements = n;
  if (reader_u32(r, &t->type, "a tensor's type", err))
    return -1;
  const gguf_quant_type_t *tt = gguf_quant_type(t->type);
  if (!tt)
    return err_set(err, "%s: tensor %s has unknown type %u", r->path, name, t->type);
  if (t->ne[0] % tt->block_size)
    return err_set(err, "%s: tensor %s has ne0 = %llu, not a multiple of the block size %u of %s",
                   r->path, name, (unsigned long long)t->ne[0], tt->block_size, tt->name);
  if (mul_overflows(n / tt->block_size, tt->type_size, &t->n_bytes))
    return err_set(err, "%s: tensor %s: byte size overflows", r->path, name);
  return reader_u64(r, &t->offset, "a tensor's data offset", err);
}

/* ---- sorted name indices, for duplicate checks and lookups ---- */

static int cmp_name_index(const void *a, const void *b) {
  return strcmp(((const name_index_t *)a)->name, ((const name_index_t *)b)->name);
}

/* names[i] for i < n, sorted; NULL when out of memory. */
static name_index_t *sort_names(const char *const *names, size_t stride, int64_t n) {
  name_index_t *idx = malloc((n ? (size_t)n : 1) * sizeof(*idx));
  if (!idx)
    return NULL;
  for (int64_t i = 0; i < n; i++) {
    idx[i].name = *(const char *const *)((const char *)names + (size_t)i * stride);
    idx[i].index = i;
  }
  qsort(idx, (size_t)n, sizeof(*idx), cmp_name_index);
  return idx;
}

static int check_unique_keys(gguf_t *g, char *err) {
  name_index_t *idx = sort_names((const char *const *)&g->kv[0].key, sizeof(kv_t), g->n_kv);
  if (!idx)
    return err_set(err, "%s: out of memory", g->path);
  int rc = 0;
  for (int64_t i = 1; i < g->n_kv && !rc; i++)
    if (strcmp(idx[i - 1].name, idx[i].name) == 0)
      rc = err_set(err, "%s: metadata key %s appears twice", g->path, idx[i].name);
  free(idx);
  return rc;
}

static int index_tensors(gguf_t *g, char *err) {
  g->tensors_by_name =
      sort_names((const char *const *)&g->tensors[0].name, sizeof(gguf_tensor_t), g->n_tensors);
  if (!g->tensors_by_name)
    return err_set(err, "%s: out of memory", g->path);
  for (int64_t i = 1; i < g->n_tensors; i++)
    if (strcmp(g->tensors_by_name[i - 1].name, g->tensors_by_name[i].name) == 0)
      return err_set(err, "%s: tensor %s appears twice", g->path, g->tensors_by_name[i].name);
  return 0;
}

static int read_alignment(gguf_t *g, char *err) {
  g->alignment = GGUF_DEFAULT_ALIGNMENT;
  int64_t i = gguf_find_key(g, "general.alignment");
  if (i < 0)
    return 0;
  if (g->kv[i].type != GGUF_TYPE_UINT32)
    return err_set(err, "%s: general.alignment has type %s, expected UINT32", g->path,
                   gguf_value_type_name(g->kv[i].type));
  uint32_t a = load_u32(g->kv[i].scalar);
  if (a == 0 || (a & (a - 1)))
    return err_set(err, "%s: general.alignment = %u is not a power of two", g->path, a);
  g->alignment = a;
  return 0;
}

/* Places the data section and checks that every tensor lies inside the file. */
static int place_tensors(gguf_t *g, uint64_t header_end, char *err) {
  uint64_t pad = (g->alignment - header_end % g->alignment) % g->alignment;
  g->data_offset = header_end + pad; /* header_end <= file size, so no overflow */
  if (g->n_tensors > 0 && g->data_offset > g->file_size)
    return err_set(err, "%s: header (%llu bytes with padding) is larger than the file (%llu bytes)",
                   g->path, (unsigned long long)g->data_offset, (unsigned long long)g->file_size);
  uint64_t data_size = g->data_offset <= g->file_size ? g->file_size - g->data_offset : 0;
  for (int64_t i = 0; i < g->n_tensors; i++) {
    gguf_tensor_t *t = &g->tensors[i];
    if (t->offset % g->alignment)
      return err_set(err, "%s: tensor %s has data offset %llu, not a multiple of the alignment %u",
                     g->path, t->name, (unsigned long long)t->offset, g->alignment);
    if (t->offset > data_size || t->n_bytes > data_size - t->offset)
      return err_set(err,
                     "%s: tensor %s (%llu bytes at data offset %llu) lies beyond the end of the "
                     "file: the data section holds %llu bytes (truncated file?)",
                     g->path, t->name, (unsigned long long)t->n_bytes,
                     (unsigned long long)t->offset, (unsigned long long)data_size);
    t->offset += g->data_offset;
  }
  return 0;
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  uint8_t first;
  memcpy(&first, &one, 1);
  return first == 1;
}

static int read_header(gguf_t *g, reader_t *r, char *err) {
  uint8_t magic[4];
  uint64_t n_tensors, n_kv;
  if (reader_read(r, magic, 4, "the magic", err))
    return -1;
  if (memcmp(magic, "GGUF", 4) != 0)
    return err_set(err, "%s: not a GGUF file (magic is %02x %02x %02x %02x, expected \"GGUF\")",
                   g->path, magic[0], magic[1], magic[2], magic[3]);
  if (reader_u32(r, &g->version, "the version", err))
    return -1;
  if (g->version == 0x02000000u || g->version == 0x03000000u)
    return err_set(err, "%s: a big-endian GGUF file, which is not supported", g->path);
  if (g->version != 2 && g->version != 3)
    return err_set(err, "%s: unsupported GGUF version %u (2 and 3 are supported)", g->path,
                   g->version);
  if (reader_u64(r, &n_tensors, "the tensor count", err) ||
      reader_u64(r, &n_kv, "the metadata count", err))
    return -1;
  uint64_t left = reader_left(r);
  if (n_kv > left / MIN_KV_BYTES)
    return err_set(err, "%s: metadata count %llu is absurd for the %llu bytes left in the file",
                   g->path, (unsigned long long)n_kv, (unsigned long long)left);
  left -= n_kv * MIN_KV_BYTES;
  if (n_tensors > left / MIN_TENSOR_INFO_BYTES)
    return err_set(err, "%s: tensor count %llu is absurd for the %llu bytes left in the file",
                   g->path, (unsigned long long)n_tensors, (unsigned long long)left);
  g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof(kv_t));
  g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(gguf_tensor_t));
  if (!g->kv || !g->tensors)
    return err_set(err, "%s: out of memory for %llu keys and %llu tensors", g->path,
                   (unsigned long long)n_kv, (unsigned long long)n_tensors);
  for (uint64_t i = 0; i < n_kv; i++, g->n_kv++)
    if (read_kv(r, &g->kv[i], err)) {
      g->n_kv++; /* so that gguf_close frees the partly read pair */
      return -1;
    }
  if (check_unique_keys(g, err) || read_alignment(g, err))
    return -1;
  for (uint64_t i = 0; i < n_tensors; i++, g->n_tensors++)
    if (read_tensor_info(r, &g->tensors[i], err)) {
      g->n_tensors++;
      return -1;
    }
  if (index_tensors(g, err))
    return -1;
  return place_tensors(g, r->pos, err);
}

gguf_t *gguf_open(const char *path, char *err) {
  reader_t *r = NULL;
  gguf_t *g = calloc(1, sizeof(*g));
  if (!g) {
    err_set(err, "%s: out of memory", path);
    return NULL;
  }
  g->fd = -1;
  snprintf(g->path, sizeof(g->path), "%s", path);
  if (!host_is_little_endian()) {
    err_set(err, "%s: this GGUF reader needs a little-endian host", path);
    goto fail;
  }
  /* O_NONBLOCK: opening a FIFO without a writer would wait; it is refused
   * below instead (the flag does nothing to a regular file's reads) */
  g->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (g->fd < 0 || fstat(g->fd, &st) != 0) {
    err_set(err, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    err_set(err, "%s: not a regular file", path);
    goto fail;
  }
  g->file_size = (uint64_t)st.st_size;
  r = malloc(sizeof(*r));
  if (!r) {
    err_set(err, "%s: out of memory", path);
    goto fail;
  }
  r->fd = g->fd;
  r->path = g->path;
  r->size = g->file_size;
  r->pos = r->buf_start = 0;
  r->buf_len = 0;
  if (read_header(g, r, err))
    goto fail;
  free(r);
  return g;
fail:
  free(r);
  gguf_close(g);
  return NULL;
}

void gguf_close(gguf_t *g) {
  if (!g)
    return;
  for (int64_t i = 0; i < g->n_kv; i++) {
    kv_t *kv = &g->kv[i];
    free(kv->array_arena);
    free(kv->array_strings);
    free(kv->array_lens);
    free(kv->array_data);
    free(kv->str);
    free(kv->key);
  }
  free(g->kv);
  for (int64_t i = 0; i < g->n_tensors; i++)
    free((char *)g->tensors[i].name);
  free(g->tensors);
  free(g->tensors_by_name);
  if (g->fd >= 0)
    close(g->fd);
  free(g);
}

const char *gguf_path(const gguf_t *g) {
  return g->path;
}

uint32_t gguf_version(const gguf_t *g) {
  return g->version;
}

uint32_t gguf_alignment(const gguf_t *g) {
  return g->alignment;
}

uint64_t gguf_data_offset(const gguf_t *g) {
  return g->data_offset;
}

int64_t gguf_find_key(const gguf_t *g, const char *key) {
  for (int64_t i = 0; i < g->n_kv; i++)
    if (strcmp(g->kv[i].key, key) == 0)
      return i;
  return -1;
}

int64_t gguf_n_tensors(const gguf_t *g) {
  return g->n_tensors;
}

const gguf_tensor_t *gguf_tensor(const gguf_t *g, int64_t i) {
  return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor_t *gguf_tensor_find(const gguf_t *g, const char *name) {
  int64_t lo = 0, hi = g->n_tensors;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(g->tensors_by_name[mid].name, name);
    if (c == 0)
      return &g->tensors[g->tensors_by_name[mid].index];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

int gguf_tensor_read_f32(const gguf_t *g, const gguf_tensor_t *t, float *dst, size_t n, char *err) {
  if (t < g->tensors || t >= g->tensors + g->n_tensors)
    return err_set(err, "%s: gguf_tensor_read_f32 was given a tensor of another file", g->path);
  if ((uint64_t)n != t->n_elements)
    return err_set(err, "%s: tensor %s has %llu elements but the destination holds %zu", g->path,
                   t->name, (unsigned long long)t->n_elements, n);
  if (!gguf_tensor_type_supported(t->type))
    return err_set(err, "%s: tensor %s has type %s, which this reader cannot convert to F32",
                   g->path, t->name, gguf_tensor_type_name(t->type));
  const gguf_quant_type_t *tt = gguf_quant_type(t->type);
  const uint64_t chunk_blocks = (1u << 20) / tt->type_size, n_blocks = t->n_bytes / tt->type_size;
  uint8_t *buf = malloc((size_t)(chunk_blocks * tt->type_size));
  if (!buf)
    return err_set(err, "%s: out of memory reading tensor %s", g->path, t->name);
  for (uint64_t b = 0; b < n_blocks; b += chunk_blocks) {
    uint64_t k = n_blocks - b < chunk_blocks ? n_blocks - b : chunk_blocks;
    uint64_t at = t->offset + b * tt->type_size;
    if (pread_full(g->fd, buf, (size_t)(k * tt->type_size), at)) {
      err_set(err, "%s: cannot read tensor %s at offset %llu: %s", g->path, t->name,
              (unsigned long long)at, errno ? strerror(errno) : "the file got shorter");
      free(buf);
      return -1;
    }
    gguf_quants_dequantise(tt, buf, dst + b * tt->block_size, (size_t)k);
  }
  free(buf);
  return 0;
}

int gguf_tensor_read_raw(const gguf_t *g, const gguf_tensor_t *t, void *dst, size_t bytes,
                         char *err) {
  if (t < g->tensors || t >= g->tensors + g->n_tensors)
    return err_set(err, "%s: gguf_tensor_read_raw was given a tensor of another file", g->path);
  if ((uint64_t)bytes != t->n_bytes)
    return err_set(err, "%s: tensor %s takes %llu bytes but the destination holds %zu", g->path,
                   t->name, (unsigned long long)t->n_bytes, bytes);
  if (pread_full(g->fd, dst, bytes, t->offset))
    return err_set(err, "%s: cannot read tensor %s at offset %llu: %s", g->path, t->name,
                   (unsigned long long)t->offset, errno ? strerror(errno) : "the file got shorter");
  return 0;
}

void *gguf_map(const gguf_t *g, size_t *bytes, char *err) {
  const char *off = getenv("HYDRA_NO_MMAP");
  if (off && *off && strcmp(off, "0") != 0) {
    err_set(err, "%s: not mapped (HYDRA_NO_MMAP is set)", g->path);
    return NULL;
  }
  if (g->file_size == 0) {
    err_set(err, "%s: an empty file cannot be mapped", g->path);
    return NULL;
  }
  void *map = mmap(NULL, (size_t)g->file_size, PROT_READ, MAP_PRIVATE, g->fd, 0);
  if (map == MAP_FAILED) {
    err_set(err, "%s: cannot map the file: %s", g->path, strerror(errno));
    return NULL;
  }
  *bytes = (size_t)g->file_size;
  return map;
}

void gguf_unmap(void *map, size_t bytes) {
  if (map)
    munmap(map, bytes);
}
