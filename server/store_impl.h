/* store_impl.h - what a store implementation provides: to store.c a table
 * of operations, one per call of store.h, and to store_open.c its door.
 * store.c checks the arguments (ids, rows, names, states) and names the
 * operation ("complete unit 3 of job ..."); an operation gets them checked,
 * takes its own locks, and fills err with "store NAME: WHAT: why". Not for
 * the store's users. */
#ifndef HYDRA_STORE_IMPL_H
#define HYDRA_STORE_IMPL_H

#include "store.h"

typedef struct store_ops {
  void (*close)(store_t *s);
  int (*job_create)(store_t *s, const store_job_t *job, const char *spec, size_t spec_len,
                    const char *what, char *err);
  int (*job_get)(store_t *s, const char *job_id, store_job_t *job, const char *what, char *err);
  int (*job_spec)(store_t *s, const char *job_id, char **spec, size_t *len, const char *what,
                  char *err);
  int (*jobs_list)(store_t *s, const char *user, size_t limit, store_job_t **jobs, size_t *n,
                   char *err);
  int (*jobs_find)(store_t *s, const store_filter_t *f, size_t limit, store_job_t **jobs, size_t *n,
                   char *err);
  int (*jobs_resumable)(store_t *s, store_resume_t **jobs, size_t *n, char *err);
  int (*job_set_state)(store_t *s, const char *job_id, store_state_t state, const char *error,
                       const char *const rows[], size_t n_rows, const char *what, char *err);
  int (*unit_complete)(store_t *s, const char *job_id, int unit, const char *const rows[],
                       size_t n_rows, int64_t variants_done_delta, const char *what, char *err);
  int (*rows_append)(store_t *s, const char *job_id, const char *const rows[], size_t n_rows,
                     const char *what, char *err);
  int (*rows_read)(store_t *s, const char *job_id, int64_t first_seq, size_t max_rows,
                   store_row_fn fn, void *ctx, size_t *n_read, store_state_t *state,
                   const char *what, char *err);
  int (*purge)(store_t *s, double older_than, size_t *n_purged, char *err);
  int (*claim_unit)(store_t *s, const char *job_id, const char *worker, double lease_s, int *unit,
                    const char *what, char *err);
  int (*renew_lease)(store_t *s, const char *job_id, int unit, const char *worker, double lease_s,
                     int *held, store_state_t *state, const char *what, char *err);
  int (*release_leases)(store_t *s, const char *worker, size_t *n_released, char *err);
  int (*job_note)(store_t *s, const char *job_id, const char *note, const char *what, char *err);
  int (*user_usage)(store_t *s, const char *user, int64_t *jobs, int64_t *bytes, char *err);
  int (*job_retry)(store_t *s, const char *job_id, store_state_t *state, const char *what,
                   char *err);
} store_ops_t;

/* The head of every store: implementations embed it first. */
struct store {
  const store_ops_t *ops;
  const char *name; /* for messages: the path, or the URL without its password */
  int readonly;     /* opened with STORE_READONLY: every write fails */
  int shared;       /* other processes write it too */
};

/* The job state machine, once for every store: whether a job in state
 * `from`, with units_done of n_units stored, may move to `to`: queued ->
 * running; queued or running -> done (every unit stored), failed or
 * cancelled; failed -> queued (a retry: back to the queue, running again
 * when it had started). 0, or STORE_STATE with why (len bytes) saying what
 * forbids it. A driver checks it inside the transaction that moves the job. */
int store_move_allowed(store_state_t from, store_state_t to, int units_done, int n_units, char *why,
                       size_t len);

/* The state named text, or -1. */
int store_state_parse(const char *text, store_state_t *state);

/* Each store's own door, for the front door (store_open.c) alone. The
 * PostgreSQL one is in store_postgres.c when this build has libpq, else in
 * store_postgres_none.c. */
store_t *store_sqlite_open(const char *path, int flags, char *err);
store_t *store_postgres_open(const char *url, int flags, char *err);

#endif
