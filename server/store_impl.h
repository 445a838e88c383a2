/* store_impl.h - what a store implementation provides: to store.c a table
 * of operations and a table of transaction steps, to store_open.c its door.
 * store.c checks the arguments (ids, rows, names, states), names the
 * operation ("complete unit 3 of job ..."), takes the lock of the
 * connection the operation uses, and runs the job state machine's moves
 * itself, once for every store, from the driver's steps. A driver holds
 * its SQL and connections only: no lock, no state rule; its calls fill err
 * with "store NAME: WHAT: why". Not for the store's users. */
#ifndef HYDRA_STORE_IMPL_H
#define HYDRA_STORE_IMPL_H

#include <pthread.h>

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
  int (*rows_read)(store_t *s, const char *job_id, int64_t first_seq, size_t max_rows,
                   store_row_fn fn, void *ctx, size_t *n_read, store_state_t *state,
                   const char *what, char *err);
  int (*purge)(store_t *s, double older_than, size_t *n_purged, char *err);
  int (*claim_unit)(store_t *s, const char *job_id, const char *worker, double lease_s, int *unit,
                    const char *what, char *err);
  int (*renew_lease)(store_t *s, const char *job_id, int unit, const char *worker, double lease_s,
                     int *held, store_state_t *state, const char *what, char *err);
  int (*release_leases)(store_t *s, const char *worker, size_t *n_released, char *err);
  int (*user_usage)(store_t *s, const char *user, int64_t *jobs, int64_t *bytes, char *err);
} store_ops_t;

/* A job as the writer's transaction read it, its row locked until the
 * transaction ends. */
typedef struct {
  int64_t key; /* the driver's own key of the job */
  store_state_t state;
  int n_units, units_done;
  int64_t n_rows;
} store_job_row_t;

/* The steps of the job state machine's moves, each the driver's SQL on its
 * writer connection. store.c runs them in one transaction (begin, ...,
 * commit; rollback after any failure), under the write lock. Each returns
 * 0, or -1 with err. */
typedef struct store_tx_ops {
  int (*begin)(store_t *s, const char *what, char *err);
  int (*commit)(store_t *s, const char *what, char *err);
  void (*rollback)(store_t *s); /* nothing when no transaction is open */
  /* The job's row, locked: 0, STORE_NOT_FOUND (err names the job) or -1. */
  int (*job_lock)(store_t *s, const char *job_id, store_job_row_t *job, const char *what,
                  char *err);
  /* Rows numbered job->n_rows, job->n_rows + 1, ...; the job's bytes grow
   * by theirs. */
  int (*rows_insert)(store_t *s, const store_job_row_t *job, const char *const rows[],
                     size_t n_rows, const char *what, char *err);
  /* *done: whether the unit is stored; -1 when the job has no such unit. */
  int (*unit_done)(store_t *s, const store_job_row_t *job, int unit, int *done, const char *what,
                   char *err);
  /* The unit stored: done, its n_rows rows from job->n_rows on; the job's
   * units_done + 1, variants_done + variants, n_rows + n_rows, note cleared. */
  int (*unit_store)(store_t *s, const store_job_row_t *job, int unit, size_t n_rows,
                    int64_t variants, const char *what, char *err);
  /* The job in state, with error, its note cleared, its start time set at
   * running or done (once), its end time at a final state (else 0); its
   * n_rows + n_rows. */
  int (*job_move)(store_t *s, const store_job_row_t *job, store_state_t state, const char *error,
                  size_t n_rows, const char *what, char *err);
  /* The job's n_rows + n_rows. */
  int (*rows_count)(store_t *s, const store_job_row_t *job, size_t n_rows, const char *what,
                    char *err);
  /* The job's note. */
  int (*job_note)(store_t *s, const store_job_row_t *job, const char *note, const char *what,
                  char *err);
  /* A failed job back to work: running when it had started, else queued
   * (*state gets which), its error, note, end and summary claim cleared,
   * its pending units' leases freed. */
  int (*job_requeue)(store_t *s, const store_job_row_t *job, store_state_t *state, const char *what,
                     char *err);
} store_tx_ops_t;

/* The head of every store: implementations embed it first. */
struct store {
  const store_ops_t *ops;
  const store_tx_ops_t *tx;
  const char *name; /* for messages: the path, or the URL without its password */
  int readonly;     /* opened with STORE_READONLY: every write fails */
  int shared;       /* other processes write it too */
  /* store.c's: a driver's connection is used by one call at a time; the
   * writes, the reads, and (when lease_lock_own) the lease renewals and
   * releases each under their own lock, else those under the write lock */
  pthread_mutex_t write_lock, read_lock, lease_lock;
  int lease_lock_own;
  int locks_ready;
};

/* Makes the head's locks (the driver's open, once ops, tx and name are
 * set): 0, or -1 with err. */
int store_head_init(store_t *s, char *err);
/* Frees them (the driver's close; nothing when they were never made). */
void store_head_destroy(store_t *s);

/* The job state machine, once for every store: whether a job in state
 * `from`, with units_done of n_units stored, may move to `to`: queued ->
 * running; queued or running -> done (every unit stored), failed or
 * cancelled; failed -> queued (a retry: back to the queue, running again
 * when it had started). 0, or STORE_STATE with why (len bytes) saying what
 * forbids it. store.c checks it inside the transaction that moves the job. */
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
