/* requests.h - the request workers: a small pool of threads that do a
 * request's work (parse a job, plan it, store it; tokenize) off
 * libmicrohttpd's thread, which only reads requests and writes answers.
 * Tasks wait in a bounded queue; a full queue refuses more (the HTTP layer
 * answers 503), so a burst of big requests cannot grow memory without end.
 *
 * Every task has an owner (the user it is done for), and each owner has a
 * share: its tasks run on every worker but one (on the only one, with one
 * worker), so that one user's slow tasks (a 1 MiB text to tokenize) always
 * leave a worker to the others; and it holds at most half of the queue
 * (queued and running), so that the others' tasks still find room. Within
 * the shares, tasks run oldest first.
 *
 * Knows nothing of HTTP: a task is a function and its argument. All
 * functions are thread-safe. */
#ifndef HYDRA_REQUESTS_H
#define HYDRA_REQUESTS_H

typedef struct requests requests_t;

typedef void (*requests_fn)(void *task);

/* Longest owner name + 1 (a longer one is cut: owners that differ only
 * past it share a share). */
#define REQUESTS_OWNER_LEN 128

/* Starts n_threads workers (>= 1) and a queue of at most capacity tasks
 * (>= 2). NULL with err when a thread or the memory cannot be had. */
requests_t *requests_start(int n_threads, int capacity, char *err);

/* requests_submit's refusals. */
#define REQUESTS_FULL (-1)       /* the queue is full, or stopping */
#define REQUESTS_OWNER_FULL (-2) /* owner holds half the queue already */

/* Queues work(task) for a worker, on owner's behalf (copied; NULL: no
 * owner, whose tasks no share limits, for a server of one user). park(task),
 * when not NULL, runs under the queue's lock just before the task is
 * queued, so no worker starts the task before park has returned (the HTTP
 * layer suspends the connection there; the worker resumes it). Returns 0,
 * or REQUESTS_FULL or REQUESTS_OWNER_FULL: then neither park nor work
 * runs. */
int requests_submit(requests_t *r, const char *owner, requests_fn work, requests_fn park,
                    void *task);

/* Tasks queued or running now. */
int requests_pending(requests_t *r);

/* Tasks one owner may have running at once, and queued and running. */
int requests_running_share(const requests_t *r);
int requests_owner_share(const requests_t *r);

/* Refuses new tasks (requests_submit answers REQUESTS_FULL), runs every
 * queued one to its end and joins the workers. NULL: nothing. */
void requests_stop(requests_t *r);

/* Frees a stopped r (NULL: nothing). */
void requests_free(requests_t *r);

#endif
