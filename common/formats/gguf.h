/* gguf.h - a careful reader of GGUF files (versions 2 and 3, little-endian).
 *
 * gguf_open reads and checks the whole header: the metadata key-value table
 * (copied into memory owned by the context) and the tensor info table. Tensor
 * data stays on disk and is read on demand by gguf_tensor_read_f32. Every
 * length, count and offset in the file is checked against the file size and
 * against overflow before it is used, so a malformed file gives an error
 * naming the file and what is wrong, never a crash.
 *
 * Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
 *
 * gguf_open refuses anything but a regular file (a FIFO or a device is
 * refused before any read, never waited on).
 *
 * Thread-safety: a context is read-only after gguf_open; its getters and
 * gguf_tensor_read_f32 (which uses pread) may be called from several threads
 * at once. Errors follow error.h: `err` is a HYDRA_ERR_LEN buffer or NULL. */
#ifndef HYDRA_GGUF_H
#define HYDRA_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "gguf_quants.h" /* the tensor types: gguf_tensor_type_t, their blocks */

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* Metadata value types (spec: gguf_metadata_value_type). */
typedef enum {
  GGUF_TYPE_UINT8 = 0,
  GGUF_TYPE_INT8 = 1,
  GGUF_TYPE_UINT16 = 2,
  GGUF_TYPE_INT16 = 3,
  GGUF_TYPE_UINT32 = 4,
  GGUF_TYPE_INT32 = 5,
  GGUF_TYPE_FLOAT32 = 6,
  GGUF_TYPE_BOOL = 7,
  GGUF_TYPE_STRING = 8,
  GGUF_TYPE_ARRAY = 9,
  GGUF_TYPE_UINT64 = 10,
  GGUF_TYPE_INT64 = 11,
  GGUF_TYPE_FLOAT64 = 12,
} gguf_value_type_t;

typedef struct gguf gguf_t;

typedef struct {
  const char *name;           /* NUL-terminated, owned by the context */
  uint32_t n_dims;            /* 1 .. GGUF_MAX_DIMS */
  uint64_t ne[GGUF_MAX_DIMS]; /* fastest-varying first; 1 beyond n_dims */
  uint32_t type;              /* a ggml type number, see gguf_tensor_type_name */
  uint64_t n_elements;        /* product of ne */
  uint64_t n_bytes;           /* size of the data on disk */
  uint64_t offset;            /* absolute offset of the data in the file */
} gguf_tensor_t;

/* A metadata array. For numeric and bool arrays `data` holds n elements of
 * `type` packed little-endian (a UINT32 array is a uint32_t[n], BOOL is one
 * byte each); for string arrays use gguf_array_string. Arrays of arrays are
 * rejected by gguf_open. Valid until gguf_close. */
typedef struct {
  gguf_value_type_t type;
  uint64_t n;
  const void *data;
  const char *const *strings;  /* STRING arrays: n NUL-terminated strings */
  const uint64_t *string_lens; /* their lengths (a string may hold NUL bytes) */
} gguf_array_t;

/* Opens `path` and reads its header, metadata and tensor infos. Returns NULL
 * and fills err on any malformed or unsupported input. */
gguf_t *gguf_open(const char *path, char *err);

/* Releases everything the context owns. Accepts NULL. */
void gguf_close(gguf_t *g);

const char *gguf_path(const gguf_t *g);
uint32_t gguf_version(const gguf_t *g);
uint32_t gguf_alignment(const gguf_t *g);
uint64_t gguf_data_offset(const gguf_t *g); /* start of the tensor data section */

/* Metadata: keys are indexed 0 .. gguf_n_kv-1 in file order. */
int64_t gguf_n_kv(const gguf_t *g);
const char *gguf_key(const gguf_t *g, int64_t i);
/* A gguf_value_type_t, or -1 when i is out of range. */
int gguf_kv_type(const gguf_t *g, int64_t i);
/* Index of `key`, or -1 when absent. */
int64_t gguf_find_key(const gguf_t *g, const char *key);

/* Typed getters by key. Each returns 0 and stores the value, or -1 with err
 * naming the file and key when the key is absent or holds another type. */
int gguf_get_u32(const gguf_t *g, const char *key, uint32_t *out, char *err);
int gguf_get_i32(const gguf_t *g, const char *key, int32_t *out, char *err);
int gguf_get_f32(const gguf_t *g, const char *key, float *out, char *err);
int gguf_get_bool(const gguf_t *g, const char *key, int *out, char *err);
/* Any integer type (UINT8 .. INT64) whose value fits in int64_t. */
int gguf_get_int(const gguf_t *g, const char *key, int64_t *out, char *err);
/* FLOAT32 or FLOAT64. */
int gguf_get_float(const gguf_t *g, const char *key, double *out, char *err);
/* The string, NUL-terminated and owned by the context; *len (if non-NULL)
 * gets its length in bytes. */
int gguf_get_string(const gguf_t *g, const char *key, const char **out, uint64_t *len, char *err);
int gguf_get_array(const gguf_t *g, const char *key, gguf_array_t *out, char *err);

/* String i of a STRING array, or NULL when out of range or not a string array;
 * *len (if non-NULL) gets its length. */
const char *gguf_array_string(const gguf_array_t *a, uint64_t i, uint64_t *len);

/* Tensors, in file order. */
int64_t gguf_n_tensors(const gguf_t *g);
const gguf_tensor_t *gguf_tensor(const gguf_t *g, int64_t i);
/* The tensor called `name`, or NULL. */
const gguf_tensor_t *gguf_tensor_find(const gguf_t *g, const char *name);

/* "F32", "Q4_1", ... for a ggml type number; NULL for numbers ggml does not
 * define. */
const char *gguf_tensor_type_name(uint32_t type);
/* Whether gguf_tensor_read_f32 decodes this type. */
int gguf_tensor_type_supported(uint32_t type);
/* Name of a metadata value type ("UINT32", ...), or "?" */
const char *gguf_value_type_name(uint32_t type);

/* Reads tensor `t` (from this context) and converts it to fp32 in dst, in
 * the file's element order (ne0 fastest). `n` is the number of floats dst
 * holds and must equal t->n_elements. Decodes every type that
 * gguf_quants.h gives a decoder (all that llama.cpp writes: F32, F16, BF16,
 * Q4_0 .. Q8_0, the K-quants, the IQ types, TQ1_0, TQ2_0, MXFP4), on
 * OpenMP threads; any other type gives an error naming the tensor and the
 * type. Returns 0 or -1. */
int gguf_tensor_read_f32(const gguf_t *g, const gguf_tensor_t *t, float *dst, size_t n, char *err);

/* Reads tensor `t`'s bytes as stored (its blocks, undecoded) into dst, which
 * holds `bytes` == t->n_bytes. Returns 0 or -1 with err naming the tensor. */
int gguf_tensor_read_raw(const gguf_t *g, const gguf_tensor_t *t, void *dst, size_t bytes,
                         char *err);

/* Maps the whole file read-only (a private mapping: the file's pages,
 * shared with the page cache, never copied); tensor t's data is at
 * map + t->offset. *bytes gets the mapping's length. Returns NULL with err
 * filled when the file cannot be mapped (or HYDRA_NO_MMAP is set in the
 * environment: the pread path's test hook); the caller then reads with
 * gguf_tensor_read_raw. The mapping outlives the context: release it with
 * gguf_unmap. */
void *gguf_map(const gguf_t *g, size_t *bytes, char *err);

/* Releases a mapping from gguf_map; NULL is allowed. */
void gguf_unmap(void *map, size_t bytes);

#endif
