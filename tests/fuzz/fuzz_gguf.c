/* fuzz_gguf - the GGUF reader on arbitrary files: header, metadata of every
 * type, tensor infos; then every metadata key read back by type; then the
 * file as a model (model_from_gguf: architectures, keys, tensors). */
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "fuzz_util.h"
#include "gguf.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[HYDRA_ERR_LEN];
  gguf_t *g = gguf_open(fuzz_scratch("model.gguf", data, size), err);
  if (!g)
    return 0;
  for (int64_t i = 0; i < gguf_n_kv(g); i++) {
    const char *key = gguf_key(g, i);
    int64_t iv;
    double fv;
    const char *s;
    uint64_t len;
    gguf_array_t a;
    gguf_get_int(g, key, &iv, err);
    gguf_get_float(g, key, &fv, err);
    gguf_get_string(g, key, &s, &len, err);
    if (gguf_get_array(g, key, &a, err) == 0)
      for (uint64_t k = 0; k < a.n && k < 64; k++)
        gguf_array_string(&a, k, &len);
  }
  model_free(model_from_gguf(g, err));
  model_free(model_from_gguf_native(g, err)); /* --weights-dtype native: rows of blocks */
  gguf_close(g);
  return 0;
}
