/* fuzz_safetensors - the safetensors reader on arbitrary files: open (header
 * JSON, offsets, dtypes, shapes) and read every tensor it accepts. */
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[HYDRA_ERR_LEN];
  safetensors_t *st = safetensors_open(fuzz_scratch("model.safetensors", data, size), err);
  if (!st)
    return 0;
  for (size_t i = 0; i < safetensors_count(st); i++) {
    const safetensors_tensor_t *t = safetensors_tensor(st, i);
    size_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
      n *= (size_t)t->shape[d];
    if (n > (1u << 20))
      continue;
    float *buf = malloc(sizeof(float) * (n ? n : 1));
    if (buf)
      safetensors_read_f32(st, t, buf, n, err);
    free(buf);
  }
  safetensors_close(st);
  return 0;
}
