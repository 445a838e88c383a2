/* safetensors.h - reads tensors out of a .safetensors file.
 *
 * The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON mapping each tensor name to its dtype, shape
 * and data_offsets (begin, end: bytes relative to the data section, which
 * starts right after the header), and an optional "__metadata__" object of
 * strings. safetensors_open validates the whole header against the file size,
 * so a tensor it returns can always be read without going past the file.
 *
 * A safetensors_t is not thread-safe to close while another thread reads, but
 * reads (pread) from several threads at once are fine. */
#ifndef HYDRA_SAFETENSORS_H
#define HYDRA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_DIMS 8

typedef enum {
  SAFETENSORS_BOOL,
  SAFETENSORS_U8,
  SAFETENSORS_I8,
  SAFETENSORS_F8_E5M2,
  SAFETENSORS_F8_E4M3,
  SAFETENSORS_I16,
  SAFETENSORS_U16,
  SAFETENSORS_F16,
  SAFETENSORS_BF16,
  SAFETENSORS_I32,
  SAFETENSORS_U32,
  SAFETENSORS_F32,
  SAFETENSORS_F64,
  SAFETENSORS_I64,
  SAFETENSORS_U64,
} safetensors_dtype_t;

typedef struct {
  const char *name; /* owned by the file; valid until safetensors_close */
  safetensors_dtype_t dtype;
  int n_dims; /* 0 for a scalar */
  uint64_t shape[SAFETENSORS_MAX_DIMS];
  uint64_t n_elements;
  uint64_t n_bytes;
  uint64_t offset; /* from the start of the file */
} safetensors_tensor_t;

typedef struct safetensors safetensors_t;

/* Opens and validates `path`. Returns NULL and fills err (naming the file and
 * the tensor or field at fault) if the file cannot be read or its header is
 * not a well-formed safetensors header: truncated file, header not a JSON
 * object, an entry missing dtype/shape/data_offsets, an unknown dtype,
 * negative dims, an element count that overflows, or data_offsets outside the
 * data section or not matching shape x dtype size. */
safetensors_t *safetensors_open(const char *path, char *err);

/* Closes the file and frees everything it owns, tensor names included.
 * NULL is a no-op. */
void safetensors_close(safetensors_t *st);

/* The path given to safetensors_open. */
const char *safetensors_path(const safetensors_t *st);

/* Tensors are held sorted by name; index them 0 .. count-1. */
size_t safetensors_count(const safetensors_t *st);
const safetensors_tensor_t *safetensors_tensor(const safetensors_t *st, size_t i);

/* The tensor called `name`, or NULL if the file has none. */
const safetensors_tensor_t *safetensors_find(const safetensors_t *st, const char *name);

/* The value of `key` in the header's __metadata__, or NULL. */
const char *safetensors_metadata(const safetensors_t *st, const char *key);

/* Reads `t` (a tensor of `st`) into dst, converting F32, F16, BF16 and F64
 * to fp32 (F64 values beyond the fp32 range become +-inf). `n` is the number
 * of floats dst holds and must equal t->n_elements. Returns 0, or -1 with err
 * naming the file and tensor (other dtype, n mismatch, read error, file
 * shortened since it was opened). */
int safetensors_read_f32(const safetensors_t *st, const safetensors_tensor_t *t, float *dst,
                         size_t n, char *err);

/* The dtype's name as the format spells it ("F32", "BF16", ...). */
const char *safetensors_dtype_name(safetensors_dtype_t dtype);

/* Bytes per element of the dtype. */
size_t safetensors_dtype_size(safetensors_dtype_t dtype);

/* Writes the shape as "[64, 32]" into buf (always NUL-terminated, truncated
 * to len). Returns buf. */
char *safetensors_format_shape(const uint64_t *shape, int n_dims, char *buf, size_t len);

#endif
