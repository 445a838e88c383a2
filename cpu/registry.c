/* registry.c (CPU-only build) - backend_create for a build without CUDA.
 * A CUDA build compiles cuda/registry.c instead. */
#include <string.h>

#include "backend.h"

backend_t *backend_create(const char *name, int n_threads, char *err) {
  if (!name || strcmp(name, "auto") == 0 || strcmp(name, "cpu") == 0)
    return backend_cpu_create(n_threads, err);
  if (strcmp(name, "cuda") == 0) {
    err_set(err, "backend cuda: this hydra was built without CUDA (ENABLE_CUDA=OFF or no nvcc)");
    return NULL;
  }
  err_set(err, "unknown backend \"%s\" (expected auto, cpu or cuda)", name);
  return NULL;
}

void backend_destroy(backend_t *b) {
  backend_cpu_destroy(b);
}

int backend_cuda_available(void) {
  return 0;
}
