/* registry.c (CUDA build) - backend_create with both backends linked in.
 * "auto" takes the GPU when cudaGetDeviceCount reports one. */
#include <string.h>

#include "backend.h"

backend_t *backend_create(const char *name, int n_threads, char *err) {
  if (!name || strcmp(name, "auto") == 0) {
    if (backend_cuda_device_count() > 0)
      return backend_cuda_create(n_threads, err);
    return backend_cpu_create(n_threads, err);
  }
  if (strcmp(name, "cpu") == 0)
    return backend_cpu_create(n_threads, err);
  if (strcmp(name, "cuda") == 0) {
    if (backend_cuda_device_count() <= 0) {
      err_set(err, "backend cuda: no CUDA device is visible");
      return NULL;
    }
    return backend_cuda_create(n_threads, err);
  }
  err_set(err, "unknown backend \"%s\" (expected auto, cpu or cuda)", name);
  return NULL;
}

void backend_destroy(backend_t *b) {
  if (!b)
    return;
  if (strcmp(b->ops->name, "cuda") == 0)
    backend_cuda_destroy(b);
  else
    backend_cpu_destroy(b);
}

int backend_cuda_available(void) {
  return backend_cuda_device_count() > 0;
}
