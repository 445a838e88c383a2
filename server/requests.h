/* requests.h - the request workers: a small pool of threads that do a
 * request's work (parse a job, plan it, store it; tokenize) off
 * libmicrohttpd's thread, which only reads requests and writes answers.
 * Tasks wait in a bounded queue; a full queue refuses more (the HTTP layer
 * answers 503), so a burst of big requests cannot grow memory without end.
 *
 * Knows nothing of HTTP: a task is a function and its argument. All
 * functions are thread-safe. */
#ifndef HYDRA_REQUESTS_H
#define HYDRA_REQUESTS_H

typedef struct requests requests_t;

typedef void (*requests_fn)(void *task);

/* Starts n_threads workers (>= 1) and a queue of at most capacity tasks.
 * NULL with err when a thread or the memory cannot be had. */
requests_t *requests_start(int n_threads, int capacity, char *err);

/* Queues work(task) for a worker. park(task), when not NULL, runs under the
 * queue's lock just before the task is queued, so no worker starts the
 * task before park has returned (the HTTP layer suspends the connection
 * there; the worker resumes it). Returns 0, or -1 when the queue is full
 * or stopping: then neither park nor work runs. */
int requests_submit(requests_t *r, requests_fn work, requests_fn park, void *task);

/* Tasks queued or running now. */
int requests_pending(requests_t *r);

/* Refuses new tasks (requests_submit answers -1), runs every queued one to
 * its end and joins the workers. NULL: nothing. */
void requests_stop(requests_t *r);

/* Frees a stopped r (NULL: nothing). */
void requests_free(requests_t *r);

#endif
