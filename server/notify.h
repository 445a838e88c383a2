/* notify.h - row notifications. Whoever commits a job's rows or its end
 * (the worker, the keeper after polling a shared store, a cancel) says so
 * here; the one listener, hydrad's HTTP layer, hears it and resumes the
 * result streams that wait for rows. It sits below http.c and scheduler.c,
 * so the producers never call up into the HTTP layer.
 *
 * A reader that found no rows must not miss a commit that lands between its
 * read and its wait: it takes notify_generation before reading, and waits
 * through notify_park, which parks it only if no commit came since.
 *
 * The notifier lives as long as its server (its lock is never destroyed).
 * All functions are thread-safe. */
#ifndef HYDRA_NOTIFY_H
#define HYDRA_NOTIFY_H

#include <pthread.h>
#include <stdint.h>

/* Called with the notifier's lock held: it must not call the notifier. */
typedef void (*notify_fn)(void *ctx);

typedef struct {
  pthread_mutex_t lock; /* the fields below are the notifier's own */
  uint64_t generation;  /* commits so far */
  notify_fn listener;
  void *listener_ctx;
} notify_t;

/* An empty notifier: generation 0, no listener. 0, or -1 when the lock
 * cannot be made. */
int notify_init(notify_t *n);

/* Sets the listener that runs after every commit (fn NULL: none). */
void notify_listen(notify_t *n, notify_fn fn, void *ctx);

/* Rows or a job's end were committed (stored, or known to another node's
 * store): the generation moves on and the listener runs. */
void notify_rows_committed(notify_t *n);

/* Runs the listener as a commit does, without counting one (a timer's
 * tick: the waiting streams look again, send keep-alives, see dead peers). */
void notify_wake(notify_t *n);

/* The number of commits so far. */
uint64_t notify_generation(notify_t *n);

/* Runs park(ctx) under the lock, so that the next commit's listener sees
 * what it did, when the generation is still gen; returns 1 then, 0 when a
 * commit came since (rows may be there: read again). */
int notify_park(notify_t *n, uint64_t gen, notify_fn park, void *ctx);

#endif
