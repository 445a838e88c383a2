#include "backend.h"

#include <string.h>

/* The CUDA backend links in only when it is built; its constructor is weak so
 * that this file needs no build switch. */
backend_t *backend_cuda_create(int n_threads, char *err) __attribute__((weak));
void backend_cuda_destroy(backend_t *b) __attribute__((weak));
int backend_cuda_device_count(void) __attribute__((weak));

backend_t *backend_create(const char *name, int n_threads, char *err) {
  if (!name || strcmp(name, "auto") == 0) {
    if (backend_cuda_create && backend_cuda_device_count && backend_cuda_device_count() > 0)
      return backend_cuda_create(n_threads, err);
    return backend_cpu_create(n_threads, err);
  }
  if (strcmp(name, "cpu") == 0)
    return backend_cpu_create(n_threads, err);
  if (strcmp(name, "cuda") == 0) {
    if (!backend_cuda_create) {
      err_set(err, "backend cuda: this hydra was built without CUDA");
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
  if (strcmp(b->ops->name, "cuda") == 0 && backend_cuda_destroy)
    backend_cuda_destroy(b);
  else
    backend_cpu_destroy(b);
}
