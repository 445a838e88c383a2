/* gguf_file.h - the parsed GGUF file, shared by gguf.c (the header
 * reader, tensors) and gguf_metadata.c (the key-value getters); nothing
 * outside common/formats includes it. */
#ifndef HYDRA_GGUF_FILE_H
#define HYDRA_GGUF_FILE_H

#include <stdint.h>
#include <string.h>

#include "endian.h"
#include "gguf.h"

typedef struct {
  char *key;
  gguf_value_type_t type;
  uint8_t scalar[8]; /* a scalar value's little-endian bytes */
  char *str;
  uint64_t str_len;
  gguf_array_t array;
  void *array_data;
  char *array_arena; /* a STRING array's characters */
  char **array_strings;
  uint64_t *array_lens;
} kv_t;

struct gguf {
  char path[1024];
  int fd;
  uint64_t file_size;
  uint32_t version;
  uint32_t alignment;
  uint64_t data_offset;
  int64_t n_kv;
  kv_t *kv;
  int64_t n_tensors;
  gguf_tensor_t *tensors;
  struct name_index *tensors_by_name; /* tensors, sorted by name */
};

typedef struct name_index {
  const char *name;
  int64_t index;
} name_index_t;

#endif
