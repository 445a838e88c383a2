#include "notify.h"

#include <stddef.h>

int notify_init(notify_t *n) {
  n->generation = 0;
  n->listener = NULL;
  n->listener_ctx = NULL;
  return pthread_mutex_init(&n->lock, NULL) == 0 ? 0 : -1;
}

void notify_listen(notify_t *n, notify_fn fn, void *ctx) {
  pthread_mutex_lock(&n->lock);
  n->listener = fn;
  n->listener_ctx = ctx;
  pthread_mutex_unlock(&n->lock);
}

void notify_rows_committed(notify_t *n) {
  pthread_mutex_lock(&n->lock);
  n->generation++;
  if (n->listener)
    n->listener(n->listener_ctx);
  pthread_mutex_unlock(&n->lock);
}

uint64_t notify_generation(notify_t *n) {
  pthread_mutex_lock(&n->lock);
  const uint64_t gen = n->generation;
  pthread_mutex_unlock(&n->lock);
  return gen;
}

int notify_park(notify_t *n, uint64_t gen, notify_fn park, void *ctx) {
  pthread_mutex_lock(&n->lock);
  const int parked = n->generation == gen;
  if (parked)
    park(ctx);
  pthread_mutex_unlock(&n->lock);
  return parked;
}

void notify_wake(notify_t *n) {
  pthread_mutex_lock(&n->lock);
  if (n->listener)
    n->listener(n->listener_ctx);
  pthread_mutex_unlock(&n->lock);
}
