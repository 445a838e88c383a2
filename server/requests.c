/* requests.c - the request workers: the queued tasks, oldest first, under
 * one lock, taken by a fixed set of threads; each worker notes whose task
 * it runs, so that the shares (requests.h) are counted under that lock. */
#include "requests.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct {
  requests_fn work;
  void *task;
  char owner[REQUESTS_OWNER_LEN];
  int unshared; /* no owner: no share applies */
} task_t;

typedef struct {
  requests_t *r;
  int index;
} worker_arg_t;

struct requests {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  task_t *queue; /* [capacity]: queue[0 .. n), oldest first */
  int capacity, n;
  task_t *running; /* [n_threads]: the task each worker runs (work NULL: none) */
  int stopping, joined;
  pthread_t *threads;
  worker_arg_t *args;
  int n_threads;
};

int requests_running_share(const requests_t *r) {
  return r->n_threads > 1 ? r->n_threads - 1 : 1;
}

int requests_owner_share(const requests_t *r) {
  return r->capacity / 2 > 1 ? r->capacity / 2 : 1;
}

static int owner_running(const requests_t *r, const char *owner) {
  int k = 0;
  for (int i = 0; i < r->n_threads; i++)
    k += r->running[i].work && !r->running[i].unshared && strcmp(r->running[i].owner, owner) == 0;
  return k;
}

/* The oldest queued task whose owner is within its running share, or -1. */
static int next_task(const requests_t *r) {
  for (int i = 0; i < r->n; i++)
    if (r->queue[i].unshared || owner_running(r, r->queue[i].owner) < requests_running_share(r))
      return i;
  return -1;
}

static void *worker(void *arg) {
  const worker_arg_t *a = arg;
  requests_t *r = a->r;
  pthread_mutex_lock(&r->lock);
  for (;;) {
    int i;
    while ((i = next_task(r)) < 0 && !(r->stopping && r->n == 0))
      pthread_cond_wait(&r->wake, &r->lock);
    if (i < 0) { /* stopping, and nothing left to run: the others stop too */
      pthread_cond_broadcast(&r->wake);
      break;
    }
    const task_t t = r->queue[i];
    memmove(&r->queue[i], &r->queue[i + 1], (size_t)(r->n - i - 1) * sizeof(task_t));
    r->n--;
    r->running[a->index] = t;
    if (next_task(r) >= 0) /* another may run beside it: a waiting worker takes it */
      pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    t.work(t.task);
    pthread_mutex_lock(&r->lock);
    r->running[a->index].work = NULL;
  }
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

requests_t *requests_start(int n_threads, int capacity, char *err) {
  requests_t *r = calloc(1, sizeof(*r));
  if (!r || n_threads < 1 || capacity < 2) {
    free(r);
    err_set(err, "request workers: %s", r ? "need a thread and a queue of two" : "out of memory");
    return NULL;
  }
  r->capacity = capacity;
  r->queue = calloc((size_t)capacity, sizeof(task_t));
  r->running = calloc((size_t)n_threads, sizeof(*r->running));
  r->threads = calloc((size_t)n_threads, sizeof(pthread_t));
  r->args = calloc((size_t)n_threads, sizeof(worker_arg_t));
  if (!r->queue || !r->running || !r->threads || !r->args || pthread_mutex_init(&r->lock, NULL) ||
      pthread_cond_init(&r->wake, NULL)) {
    free(r->queue);
    free(r->running);
    free(r->threads);
    free(r->args);
    free(r);
    err_set(err, "request workers: out of memory");
    return NULL;
  }
  for (int i = 0; i < n_threads; i++) {
    r->args[i] = (worker_arg_t){r, i};
    pthread_mutex_lock(&r->lock); /* n_threads is read by the running workers */
    const int started = pthread_create(&r->threads[i], NULL, worker, &r->args[i]) == 0;
    if (started)
      r->n_threads++;
    pthread_mutex_unlock(&r->lock);
    if (!started) {
      err_set(err, "cannot start request worker %d", i);
      requests_free(r);
      return NULL;
    }
  }
  return r;
}

int requests_submit(requests_t *r, const char *owner, requests_fn work, requests_fn park,
                    void *task) {
  task_t t = {work, task, "", owner == NULL};
  snprintf(t.owner, sizeof t.owner, "%s", owner ? owner : "");
  pthread_mutex_lock(&r->lock);
  if (r->stopping || r->n == r->capacity) {
    pthread_mutex_unlock(&r->lock);
    return REQUESTS_FULL;
  }
  int held = owner_running(r, t.owner);
  for (int i = 0; i < r->n; i++)
    held += strcmp(r->queue[i].owner, t.owner) == 0;
  if (!t.unshared && held >= requests_owner_share(r)) {
    pthread_mutex_unlock(&r->lock);
    return REQUESTS_OWNER_FULL;
  }
  if (park)
    park(task);
  r->queue[r->n++] = t;
  pthread_cond_signal(&r->wake);
  pthread_mutex_unlock(&r->lock);
  return 0;
}

int requests_pending(requests_t *r) {
  pthread_mutex_lock(&r->lock);
  int n = r->n;
  for (int i = 0; i < r->n_threads; i++)
    n += r->running[i].work != NULL;
  pthread_mutex_unlock(&r->lock);
  return n;
}

void requests_stop(requests_t *r) {
  if (!r)
    return;
  pthread_mutex_lock(&r->lock);
  r->stopping = 1;
  pthread_cond_broadcast(&r->wake);
  const int n_threads = r->joined ? 0 : r->n_threads;
  r->joined = 1;
  pthread_mutex_unlock(&r->lock);
  for (int i = 0; i < n_threads; i++)
    pthread_join(r->threads[i], NULL);
}

void requests_free(requests_t *r) {
  if (!r)
    return;
  requests_stop(r);
  pthread_cond_destroy(&r->wake);
  pthread_mutex_destroy(&r->lock);
  free(r->threads);
  free(r->args);
  free(r->running);
  free(r->queue);
  free(r);
}
