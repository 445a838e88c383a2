/* requests.c - the request workers: a ring of queued tasks under one lock,
 * taken oldest first by a fixed set of threads. */
#include "requests.h"

#include <pthread.h>
#include <stdlib.h>

#include "error.h"

typedef struct {
  requests_fn work;
  void *task;
} task_t;

struct requests {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  task_t *ring; /* [capacity]: ring[head .. head + n) modulo capacity */
  int capacity, head, n;
  int running; /* tasks a worker has taken and not finished */
  int stopping;
  pthread_t *threads;
  int n_threads;
};

static void *worker(void *arg) {
  requests_t *r = arg;
  pthread_mutex_lock(&r->lock);
  for (;;) {
    while (r->n == 0 && !r->stopping)
      pthread_cond_wait(&r->wake, &r->lock);
    if (r->n == 0) /* stopping, and nothing left to run */
      break;
    task_t t = r->ring[r->head];
    r->head = (r->head + 1) % r->capacity;
    r->n--;
    r->running++;
    pthread_mutex_unlock(&r->lock);
    t.work(t.task);
    pthread_mutex_lock(&r->lock);
    r->running--;
  }
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

requests_t *requests_start(int n_threads, int capacity, char *err) {
  requests_t *r = calloc(1, sizeof(*r));
  if (!r || n_threads < 1 || capacity < 1) {
    free(r);
    err_set(err, "request workers: %s", r ? "need a thread and a queue" : "out of memory");
    return NULL;
  }
  r->capacity = capacity;
  r->ring = calloc((size_t)capacity, sizeof(task_t));
  r->threads = calloc((size_t)n_threads, sizeof(pthread_t));
  if (!r->ring || !r->threads || pthread_mutex_init(&r->lock, NULL) ||
      pthread_cond_init(&r->wake, NULL)) {
    free(r->ring);
    free(r->threads);
    free(r);
    err_set(err, "request workers: out of memory");
    return NULL;
  }
  for (int i = 0; i < n_threads; i++) {
    if (pthread_create(&r->threads[i], NULL, worker, r) != 0) {
      err_set(err, "cannot start request worker %d", i);
      requests_free(r);
      return NULL;
    }
    r->n_threads++;
  }
  return r;
}

int requests_submit(requests_t *r, requests_fn work, requests_fn park, void *task) {
  pthread_mutex_lock(&r->lock);
  if (r->stopping || r->n == r->capacity) {
    pthread_mutex_unlock(&r->lock);
    return -1;
  }
  if (park)
    park(task);
  r->ring[(r->head + r->n) % r->capacity] = (task_t){work, task};
  r->n++;
  pthread_cond_signal(&r->wake);
  pthread_mutex_unlock(&r->lock);
  return 0;
}

int requests_pending(requests_t *r) {
  pthread_mutex_lock(&r->lock);
  const int n = r->n + r->running;
  pthread_mutex_unlock(&r->lock);
  return n;
}

void requests_stop(requests_t *r) {
  if (!r)
    return;
  pthread_mutex_lock(&r->lock);
  r->stopping = 1;
  pthread_cond_broadcast(&r->wake);
  pthread_mutex_unlock(&r->lock);
  for (int i = 0; i < r->n_threads; i++)
    pthread_join(r->threads[i], NULL);
  r->n_threads = 0;
}

void requests_free(requests_t *r) {
  if (!r)
    return;
  requests_stop(r);
  pthread_cond_destroy(&r->wake);
  pthread_mutex_destroy(&r->lock);
  free(r->threads);
  free(r->ring);
  free(r);
}
