/* registry.c - backend_create over the backends this build compiled. The
 * list (backend_list.h) is written by the build: no backend is named here. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "backend_list.h"

static const backend_entry_t *const entries[] = {HYDRA_BACKEND_ENTRIES};
enum { N_ENTRIES = sizeof(entries) / sizeof(entries[0]) };

static const backend_entry_t *find(const char *name) {
  for (int i = 0; i < N_ENTRIES; i++)
    if (strcmp(entries[i]->name, name) == 0)
      return entries[i];
  return NULL;
}

backend_t *backend_create(const char *name, int n_threads, char *err) {
  if (!name || strcmp(name, "auto") == 0) {
    for (int i = 0; i < N_ENTRIES; i++)
      if (entries[i]->device_count() > 0)
        return entries[i]->create(n_threads, err);
    err_set(err, "no backend of this build has a device here");
    return NULL;
  }
  const backend_entry_t *e = find(name);
  if (e) {
    if (e->device_count() <= 0) {
      err_set(err, "backend %s: no device is visible", name);
      return NULL;
    }
    return e->create(n_threads, err);
  }
  char known[128] = "auto";
  size_t at = strlen(known);
  for (int i = 0; i < N_ENTRIES && at < sizeof(known); i++)
    at += (size_t)snprintf(known + at, sizeof(known) - at, ", %s", entries[i]->name);
  if (strcmp(name, "cuda") == 0)
    err_set(err, "backend cuda: this hydra was built without CUDA (ENABLE_CUDA=OFF or no nvcc)");
  else
    err_set(err, "unknown backend \"%s\" (this build has %s)", name, known);
  return NULL;
}

void backend_destroy(backend_t *b) {
  if (b)
    b->ops->destroy(b);
}

int backend_cuda_available(void) {
  const backend_entry_t *e = find("cuda");
  return e && e->device_count() > 0;
}
